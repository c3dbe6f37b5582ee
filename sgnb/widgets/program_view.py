"""`ProgramView`: a program's text streaming in live, every token marked, with the fork tree beside it.

    view = ProgramView()
    display(view)          # display first: browser messages wait until the cell ends, trait changes do not
    view.attach(state)     # polls state.snapshot() on a thread until the program (and its forks) finish
    ...
    view.detach()          # final update, then the static HTML of the output is refreshed

The synced ``program`` trait holds ``program_data(state.snapshot(), tokenizer)`` (see program_data.py).
"""

from __future__ import annotations

import threading
from typing import Any

import traitlets

from sgnb.widgets.base import STATIC, StaticFallbackWidget
from sgnb.widgets.poller import Poller
from sgnb.widgets.program_data import program_data
from sgnb.widgets.rich_text import render_program_rich
from sgnb.widgets.static_html import render_program_html

_EMPTY = {"root": "", "is_finished": False, "error": None, "totals": {}, "states": []}


class ProgramView(StaticFallbackWidget):
    """Live view of one program state (and its forks)."""

    _esm = STATIC / "program_view.js"

    program = traitlets.Dict(_EMPTY).tag(sync=True)
    selected_state = traitlets.Unicode("").tag(sync=True)  # the state whose text is shown ("" = the root)
    num_updates = traitlets.Int(0).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)

    def __init__(self, state: Any = None, *, tokenizer: Any = None, interval: float = 0.2, title: str = "",
                 **kwargs: Any) -> None:
        super().__init__(title=title, **kwargs)
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.interval = interval
        self._state: Any = None
        self._tokenizer: Any = None
        self._memo: dict = {}
        self._last_snapshot: dict | None = None
        self._poller: Poller | None = None
        self._lock = threading.Lock()  # one refresh at a time (poller thread vs. detach on the cell's thread)
        if state is not None:
            self.attach(state, tokenizer=tokenizer)

    # ---------------------------------------------------------------- attaching
    def attach(self, state: Any, tokenizer: Any = None) -> ProgramView:
        """Follow ``state`` (anything with ``snapshot()``); polls at most every ``interval`` seconds.

        ``tokenizer`` maps cached-token counts to characters; by default the state's backend's tokenizer.
        """
        if not callable(getattr(state, "snapshot", None)):
            raise ValueError(f"ProgramView.attach needs a program state with snapshot(), got {type(state).__name__}")
        self.detach(refresh=False)
        self._state = state
        self._tokenizer = tokenizer if tokenizer is not None else _backend_tokenizer(state)
        self._memo = {}
        self._last_snapshot = None
        if self.refresh():
            return self
        self._poller = Poller(self._tick, self.interval, name="sgnb-program-view").start()
        return self

    def detach(self, refresh: bool = True) -> None:
        """Stop following; with ``refresh``, take a last snapshot and refresh the static HTML of the output."""
        poller = getattr(self, "_poller", None)
        self._poller = None
        if poller is not None:
            poller.stop()
        if refresh and self._state is not None:
            self.refresh()
            self.refresh_static()

    def close(self) -> None:
        self.detach(refresh=False)
        super().close()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the followed program finished (the poller ends by itself); returns whether it did."""
        poller = self._poller
        return True if poller is None else poller.join(timeout)

    @property
    def is_live(self) -> bool:
        return self._poller is not None and self._poller.is_alive

    # ---------------------------------------------------------------- updating
    def refresh(self) -> bool:
        """Take a snapshot and update the ``program`` trait if it changed; returns whether the program finished."""
        with self._lock:
            if self._state is None:
                return True
            snap = self._state.snapshot()
            if snap != self._last_snapshot:
                data = program_data(snap, self._tokenizer, self._memo)
                self._last_snapshot = snap
                with self.hold_sync():
                    self.program = data
                    self.num_updates += 1
            return bool(self.program.get("is_finished")) or bool(self.program.get("error"))

    def _tick(self) -> bool:
        return not self.refresh()

    # ---------------------------------------------------------------- static views
    def static_version(self) -> int:
        return self.num_updates

    def static_html(self) -> str:
        if not self.program.get("states"):
            return '<div class="sgnb-program" data-status="empty">sgnb program view: no program attached yet</div>'
        return render_program_html(self.program)

    def __rich__(self) -> Any:
        if not self.program.get("states"):
            return "sgnb program view: no program attached yet"
        return render_program_rich(self.program)


def _backend_tokenizer(state: Any) -> Any:
    executor = getattr(state, "stream_executor", None)
    backend = getattr(executor, "backend", None)
    return getattr(backend, "tokenizer", None)
