"""Ctrl-C while a caller waits on a program: stop the program and abort its backend requests.

A program's `gen`s run on the worker threads of its states, which a `KeyboardInterrupt` never reaches (Python
delivers signals to the main thread only). So every wait of the language (`run()`, `run_batch()`, `s["x"]`,
`sync()`, `text_iter`) catches it and stops the whole program (the fork tree of the state it waited on):
1. each unfinished state records a `ProgramInterrupted` as its error (unless it failed already), parents
   before children: its worker starts no new item, and `fork()` creates no new child;
2. `backend.abort(state_ids)` aborts the states' in-flight requests and refuses new ones (the in-process engine
   does; HTTP backends cannot, and their calls finish in the background);
3. it waits until no worker is inside a backend call, aborting again meanwhile (an abort that raced with a
   request's submission is dropped by the engine), at most `DRAIN_TIMEOUT_S`;
4. the `ProgramInterrupted` (a `KeyboardInterrupt`) is raised in place of the interrupt.
A second Ctrl-C during step 3 stops the waiting and propagates as a plain `KeyboardInterrupt`.
"""

from __future__ import annotations

import functools
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

from sgnb.lang.errors import ProgramInterrupted

if TYPE_CHECKING:
    from sgnb.lang.interpreter import StreamExecutor

#: how long stopping a program may wait for its in-flight backend calls to end
DRAIN_TIMEOUT_S = 10.0
_POLL_S = 0.02
_T = TypeVar("_T")


def stop_programs(
    roots: list[StreamExecutor], error: BaseException, timeout: float = DRAIN_TIMEOUT_S
) -> tuple[int | None, bool]:
    """Stop every state of the programs rooted at `roots` with `error` (kept where a state already failed),
    abort their requests and wait for their in-flight calls to end.

    Returns `(num_aborted, is_drained)`: requests aborted (None when no backend involved can abort) and whether
    every abortable call had ended within `timeout`.
    """
    executors = _stop_trees(roots, error)
    by_backend: dict[int, tuple[Any, list[StreamExecutor]]] = {}
    for executor in executors:
        by_backend.setdefault(id(executor.backend), (executor.backend, []))[1].append(executor)
    num_aborted: int | None = None
    abortable: list[tuple[Any, list[str]]] = []
    draining: list[StreamExecutor] = []
    for backend, group in by_backend.values():
        state_ids = [e.sid for e in group if not e.is_finished]
        count = backend.abort(state_ids)
        if count is not None:
            num_aborted = (num_aborted or 0) + count
            abortable.append((backend, state_ids))
            draining += group
    if num_aborted is None:
        return None, False
    deadline = time.monotonic() + timeout
    while any(e.is_executing for e in draining):
        if time.monotonic() > deadline:
            return num_aborted, False
        time.sleep(_POLL_S)
        for backend, state_ids in abortable:  # catches a request submitted while the first abort ran
            backend.abort(state_ids)
    return num_aborted, True


def _stop_trees(roots: list[StreamExecutor], error: BaseException) -> list[StreamExecutor]:
    """Record `error` on every unfinished state below `roots` (a finished one keeps its result), each before
    its children are read (a fork racing with this either sees the error or has its children listed)."""
    stopped = []
    stack = list(roots)
    while stack:
        executor = stack.pop()
        with executor.cond:
            if not executor.is_finished:
                executor.set_error(error)
        stopped.append(executor)
        with executor.cond:
            stack.extend(executor.children)
    return stopped


def interrupt_programs(
    roots: list[StreamExecutor], error: ProgramInterrupted | None = None, timeout: float = DRAIN_TIMEOUT_S
) -> ProgramInterrupted:
    """Stop the programs rooted at `roots` because of Ctrl-C; returns the `ProgramInterrupted` to raise
    (`error`, when given, filled in)."""
    error = error if error is not None else ProgramInterrupted()
    error.num_aborted, error.is_drained = stop_programs(roots, error, timeout)
    return error


@contextmanager
def abort_on_interrupt(executor: StreamExecutor) -> Iterator[None]:
    """A `KeyboardInterrupt` inside the block stops the program `executor` belongs to (its whole fork tree)
    and becomes a `ProgramInterrupted`."""
    try:
        yield
    except ProgramInterrupted:
        raise
    except KeyboardInterrupt:
        raise interrupt_programs([executor.root()]) from None


def interruptible(method: Callable[..., _T]) -> Callable[..., _T]:
    """Decorator for a `StreamExecutor` method that waits: Ctrl-C inside it stops the program."""

    @functools.wraps(method)
    def wrapper(executor: StreamExecutor, *args: Any, **kwargs: Any) -> _T:
        with abort_on_interrupt(executor):
            return method(executor, *args, **kwargs)

    return wrapper


class ProgramGroup:
    """The programs of one `run_batch`: Ctrl-C in the caller stops those running and those not started yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._roots: list[StreamExecutor] = []
        self.error: ProgramInterrupted | None = None

    def add(self, root: StreamExecutor) -> ProgramInterrupted | None:
        """Register a program's root state before its body runs. Returns the group's interruption when the
        group was already interrupted: then the program must not run."""
        with self._lock:
            if self.error is None:
                self._roots.append(root)
            return self.error

    def interrupt(self, timeout: float = DRAIN_TIMEOUT_S) -> ProgramInterrupted:
        """Stop every program of the group; returns the `ProgramInterrupted` to raise."""
        with self._lock:
            is_first = self.error is None
            if is_first:
                self.error = ProgramInterrupted()
            error, roots = self.error, list(self._roots)
        return interrupt_programs(roots, error, timeout) if is_first else error

    @contextmanager
    def abort_on_interrupt(self, pool: Any = None) -> Iterator[None]:
        """A `KeyboardInterrupt` inside the block cancels `pool`'s queued work (a ThreadPoolExecutor), stops the
        group's programs and becomes a `ProgramInterrupted`."""
        try:
            yield
        except KeyboardInterrupt:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            raise self.interrupt() from None


__all__ = [
    "DRAIN_TIMEOUT_S", "stop_programs", "interrupt_programs", "abort_on_interrupt", "interruptible", "ProgramGroup",
]
