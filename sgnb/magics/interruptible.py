"""Running a program from a cell so that a kernel interrupt aborts exactly that cell's requests.

The kernel's main thread only waits, never runs an event loop (no `asyncio.run`). The language itself turns a
`KeyboardInterrupt` in that wait into a stopped program (`sgnb.lang.interrupt`): every backend request of the
run is aborted (so its KV slots are freed), nothing new starts, and its in-flight calls have ended when it
raises `ProgramInterrupted`. Here that becomes `CellInterrupted`, once the run's states have wound down, so the
partial state stays consistent for inspection. Backends that cannot abort (HTTP endpoints) finish their calls in
the background.
"""

from __future__ import annotations

from typing import Any, Callable

from sgnb.lang.errors import ProgramError, ProgramInterrupted
from sgnb.lang.interrupt import DRAIN_TIMEOUT_S, abort_on_interrupt, stop_programs
from sgnb.magics.errors import CellInterrupted


def _interrupted(interrupt: ProgramInterrupted, states: list[Any]) -> CellInterrupted:
    if interrupt.num_aborted is None:
        return CellInterrupted("cell interrupted; this backend's requests cannot be aborted from here and "
                               "finish in the background")
    is_finished = interrupt.is_drained and _wait_finished(states)
    message = f"cell interrupted; aborted {interrupt.num_aborted} running request(s) and freed their KV cache"
    if not is_finished:
        message += f" (the program had not wound down after {DRAIN_TIMEOUT_S:.0f} s)"
    return CellInterrupted(message)


def _wait_finished(states: list[Any]) -> bool:
    """Wait (bounded) until every state of the runs, forks included, has finished."""
    return all(s.stream_executor.wait_tree_finished(DRAIN_TIMEOUT_S) for s in states if s is not None)


def _stop_failed(states: list[Any]) -> None:
    """A failed program's forks may still be generating: stop them before the error is reported."""
    roots = [s.stream_executor for s in states if s.stream_executor.error is not None]
    if roots:
        stop_programs(roots, ProgramError("stopped: the program failed"))


def run_interruptibly(function: Any, *, backend: Any, on_start: Callable[[Any], None] | None = None,
                      **run_kwargs: Any) -> Any:
    """`function.run(**run_kwargs)` on `backend`, abortable with Ctrl-C. Returns the finished state.

    `on_start(state)` is called as soon as the state exists (to attach a live view). A program error is
    raised after the run's remaining requests were cancelled; `state.error()` holds it too.
    """
    state = function.run(stream=True, backend=backend, **run_kwargs)
    executor = state.stream_executor
    try:
        with abort_on_interrupt(executor):
            if on_start is not None:
                on_start(state)
            executor.wait_finished()
    except ProgramInterrupted as interrupt:
        raise _interrupted(interrupt, [state]) from None
    _stop_failed([state])
    return state


def run_batch_interruptibly(function: Any, batch: list[dict], *, backend: Any, **run_kwargs: Any) -> list[Any]:
    """`function.run_batch(batch, **run_kwargs)` on `backend`, abortable with Ctrl-C. Errors stay on the
    states (`states[i].error()`), as with `run_batch`."""
    try:
        states = function.run_batch(batch, backend=backend, **run_kwargs)
    except ProgramInterrupted as interrupt:
        raise _interrupted(interrupt, []) from None
    _stop_failed(states)
    return states
