"""A throttled background poller: the thread that keeps a live widget in sync while a cell runs.

Trait changes made from a worker thread reach the browser while the cell is still running, so
the widgets poll their plain-data source here and set traits only when the data changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Poller:
    """Calls ``tick()`` on a daemon thread every ``interval`` seconds until it returns False or ``stop()``.

    ``tick`` returns whether to keep polling. The wait after a tick is at least ``interval`` and at least
    ``cost_factor`` times what the tick took, so a slow snapshot never eats more than 1/cost_factor of a core.
    An exception in ``tick`` ends the thread; it is kept in ``error``.
    """

    def __init__(self, tick: Callable[[], bool], interval: float, name: str, cost_factor: float = 5.0) -> None:
        if not interval > 0:
            raise ValueError(f"poll interval must be > 0 seconds, got {interval!r}")
        self._tick = tick
        self.interval = float(interval)
        self.cost_factor = cost_factor
        self.error: BaseException | None = None
        self.num_ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                keep_going = self._tick()
            except BaseException as exc:  # noqa: BLE001 - kept for the owner to inspect
                self.error = exc
                return
            self.num_ticks += 1
            if not keep_going:
                return
            cost = time.monotonic() - began
            self._stop.wait(max(self.interval, self.cost_factor * cost))

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the thread to end and wait for it (not when called from the thread itself)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end by itself; returns whether it has ended."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive()
