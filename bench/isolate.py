"""Run a measurement on a fresh thread, so that only one OpenMP worker pool is alive while it runs.

libgomp keeps a worker pool per thread that has run a parallel region. When the pools of two
threads are alive at once on a small machine (more managed threads than cores), it throttles
spin-waiting and every small GEMM pays a futex wake-up; on 2 cores a 576x576 GEMV goes from
13 us to 74 us. The engine runs all its torch work on its own thread, so a baseline that ran on
the main thread (or a model kept alive on it) would slow both systems. Each baseline therefore
runs here, on a thread that exits (freeing its pool) before the next measurement starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_alone(fn: Callable[[], T]) -> T:
    """fn() on a new thread that exits afterwards; its result or its exception comes back here."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:          # re-raised on the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="bench-alone")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]                     # type: ignore[misc]
    return box["result"]                       # type: ignore[return-value]
