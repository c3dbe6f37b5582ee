"""Running a program from a cell so that a kernel interrupt aborts exactly that cell's requests.

The program runs on its own threads (`run(stream=True)`, or `run_batch` on a helper thread); the kernel's main
thread only waits, never runs an event loop (no `asyncio.run`). A `KeyboardInterrupt` raised in that wait
cancels the run: every engine request it issued is aborted (so its KV slots are freed), later requests fail at
once, and the wait resumes until all of the run's states have finished. Then `CellInterrupted` is raised.

The interpreter runs `gen`s on worker threads, which an interrupt does not reach, so the requests are made
through a per-run engine proxy that names each request (`rid`) and can abort them. Backends other than the
in-process engine (HTTP endpoints) cannot be aborted from here: their calls finish in the background.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Iterator

from sgnb.lang.backends.engine_backend import EngineBackend
from sgnb.magics.errors import CellInterrupted

#: how long an interrupted run may take to wind down before the interrupt is reported anyway
DRAIN_TIMEOUT_S = 10.0
_POLL_S = 0.05


class CancelledError(RuntimeError):
    """A request was attempted after the cell was interrupted."""


class TrackedEngine:
    """Engine proxy for one run: gives every `generate` request a remembered rid, so `cancel()` can abort them.

    `score` requests (select, prefix commits) carry no rid in the engine API; they are single prefills that
    finish on their own. After `cancel()`, new requests raise `CancelledError`.
    """

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._rids: set[str] = set()
        self.is_cancelled = False
        self.num_aborted = 0

    def __getattr__(self, name: str) -> Any:  # tokenizer, config, model_path, flush_cache ...
        return getattr(self._engine, name)

    @property
    def num_in_flight(self) -> int:
        with self._lock:
            return len(self._rids)

    def _admit(self, count: int) -> list[str]:
        with self._lock:
            if self.is_cancelled:
                raise CancelledError("the cell was interrupted; no new requests are sent")
            rids = [f"sgl-cell-{uuid.uuid4().hex}" for _ in range(count)]
            self._rids.update(rids)
            return rids

    def _release(self, rids: list[str]) -> None:
        with self._lock:
            self._rids.difference_update(rids)

    def generate(self, prompt: Any = None, sampling_params: Any = None, input_ids: Any = None, *,
                 stream: bool = False, rid: Any = None, **kwargs: Any) -> Any:
        if rid is not None:
            raise ValueError("TrackedEngine assigns request ids itself")
        is_single = isinstance(prompt, str) or (
            input_ids is not None and len(input_ids) > 0 and isinstance(input_ids[0], int)
        )
        count = 1 if is_single else len(prompt if prompt is not None else input_ids)
        rids = self._admit(count)
        try:
            result = self._engine.generate(prompt=prompt, sampling_params=sampling_params, input_ids=input_ids,
                                           stream=stream, rid=rids[0] if is_single else rids, **kwargs)
        except BaseException:
            self._release(rids)
            raise
        if stream:
            return self._stream(result, rids)
        self._release(rids)
        return result

    def _stream(self, deltas: Iterator[dict], rids: list[str]) -> Iterator[dict]:
        try:
            yield from deltas
        finally:
            self._release(rids)

    def score(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self.is_cancelled:
                raise CancelledError("the cell was interrupted; no new requests are sent")
        return self._engine.score(*args, **kwargs)

    def cancel(self) -> int:
        """Refuse new requests and abort the running ones; returns how many were aborted."""
        with self._lock:
            self.is_cancelled = True
            rids = list(self._rids)
            self.num_aborted += len(rids)
        for rid in rids:
            self._engine.abort(rid, "interrupted")
        return len(rids)

    def abort_in_flight(self) -> None:
        """Abort again whatever is still registered (an abort that raced with a request's submission is
        dropped by the engine; repeating it is harmless)."""
        with self._lock:
            rids = list(self._rids)
        for rid in rids:
            self._engine.abort(rid, "interrupted")


class TrackedEngineBackend(EngineBackend):
    """An `EngineBackend` for one run, over a `TrackedEngine` wrapping `base`'s engine (same chat template)."""

    def __init__(self, base: EngineBackend) -> None:
        self.tracked = TrackedEngine(base.engine)
        super().__init__(engine=self.tracked)
        self._base = base

    def get_chat_template(self):
        return self._base.get_chat_template()

    def get_model_name(self) -> str:
        return self._base.get_model_name()


def track(backend: Any) -> tuple[Any, TrackedEngine | None]:
    """The backend to run with, and its tracker (None when the backend's requests cannot be aborted)."""
    if isinstance(backend, EngineBackend):
        tracked = TrackedEngineBackend(backend)
        return tracked, tracked.tracked
    return backend, None


def _wait(is_done: Callable[[float], bool]) -> None:
    """Block until `is_done(timeout)` says so, in short slices (the main thread stays interruptible)."""
    while not is_done(_POLL_S):
        pass


def _executors(states: list[Any]) -> list[Any]:
    out = []
    stack = [s.stream_executor for s in states if s is not None]
    while stack:
        executor = stack.pop()
        out.append(executor)
        stack.extend(list(executor.children))
    return out


def _all_finished(states: list[Any]) -> bool:
    return all(e.is_finished for e in _executors(states))


def drain(tracker: TrackedEngine | None, is_done: Callable[[], bool], timeout: float = DRAIN_TIMEOUT_S) -> bool:
    """Cancel the run's requests and wait (re-aborting) until `is_done()`; False if it timed out."""
    if tracker is None:
        return is_done()
    tracker.cancel()
    deadline = time.monotonic() + timeout
    while not is_done():
        if time.monotonic() > deadline:
            return False
        tracker.abort_in_flight()
        time.sleep(_POLL_S)
    return True


def _interrupted(tracker: TrackedEngine | None, finished: bool) -> CellInterrupted:
    if tracker is None:
        return CellInterrupted("cell interrupted; this backend's requests cannot be aborted from here and "
                               "finish in the background")
    message = f"cell interrupted; aborted {tracker.num_aborted} running request(s) and freed their KV cache"
    if not finished:
        message += f" (the program had not wound down after {DRAIN_TIMEOUT_S:.0f} s)"
    return CellInterrupted(message)


def run_interruptibly(function: Any, *, backend: Any, on_start: Callable[[Any], None] | None = None,
                      **run_kwargs: Any) -> Any:
    """`function.run(**run_kwargs)` on `backend`, abortable with Ctrl-C. Returns the finished state.

    `on_start(state)` is called as soon as the state exists (to attach a live view). A program error is
    raised after the run's remaining requests were cancelled; `state.error()` holds it too.
    """
    run_backend, tracker = track(backend)
    state = function.run(stream=True, backend=run_backend, **run_kwargs)
    try:
        if on_start is not None:
            on_start(state)
        _wait(state.stream_executor.wait_finished)
    except KeyboardInterrupt:
        finished = drain(tracker, lambda: _all_finished([state]))
        raise _interrupted(tracker, finished) from None
    if state.stream_executor.error_ is not None:
        # forks may still be generating after the error: stop them before reporting it
        drain(tracker, lambda: _all_finished([state]))
    return state


def run_batch_interruptibly(function: Any, batch: list[dict], *, backend: Any, **run_kwargs: Any) -> list[Any]:
    """`function.run_batch(batch, **run_kwargs)` on `backend`, abortable with Ctrl-C. Errors stay on the
    states (`states[i].error()`), as with `run_batch`."""
    run_backend, tracker = track(backend)
    result: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            result["states"] = function.run_batch(batch, backend=run_backend, **run_kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="sgnb-cell-batch", daemon=True).start()
    try:
        _wait(done.wait)
    except KeyboardInterrupt:
        finished = drain(tracker, done.is_set)
        raise _interrupted(tracker, finished) from None
    if "error" in result:
        raise result["error"]
    states = result["states"]
    if any(s.stream_executor.error_ is not None for s in states):
        drain(tracker, lambda: _all_finished(states))
    return states
