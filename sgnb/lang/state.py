"""`ProgramState` (the `s` of a program) and `ProgramStateGroup` (what `s.fork(n)` returns).

Both are thin, SGLang-compatible facades over `StreamExecutor`: `s += x` enqueues and returns at once,
`s["x"]` waits for the variable, `s.text()` waits for everything submitted so far. Ctrl-C in any of these waits
stops the program, aborts its requests and raises `ProgramInterrupted` (a `KeyboardInterrupt`).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterator

from sgnb.lang.errors import ProgramError
from sgnb.lang.interpreter import StreamExecutor
from sgnb.lang.ir import Expr
from sgnb.lang.queue_items import ConcatAndAppend, GatherVars
from sgnb.lang.state_appending import StateAppending

JOIN_MODES = ("gather_variable", "concate_and_append")


class ProgramState(StateAppending):
    """The state of one running program: its text, chat messages and variables. `s += x`, `s.user(...)`,
    `with s.var_scope(...)` come from `StateAppending`."""

    def __init__(self, stream_executor: StreamExecutor) -> None:
        self.stream_executor = stream_executor
        self.ret_value: Any = None  # what the program function returned

    # ------------------------------------------------------------ appending
    def _append(self, expr: Expr) -> None:
        self.stream_executor.submit(expr)

    # ------------------------------------------------------------ variables
    def __getitem__(self, name: str) -> Any:
        return self.stream_executor.get_var(name)

    def get_var(self, name: str) -> Any:
        return self.stream_executor.get_var(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self.stream_executor.set_var(name, value)

    def set_var(self, name: str, value: Any) -> None:
        self.stream_executor.set_var(name, value)

    def __contains__(self, name: str) -> bool:
        return self.stream_executor.has_var(name)

    def get_meta_info(self, name: str) -> dict | None:
        """meta_info of the gen/select that produced `name` (prompt/completion/cached tokens, logprobs...)."""
        return self.stream_executor.get_meta_info(name)

    # ------------------------------------------------------------ fork / copy
    def fork(self, size: int = 1, position_ids_offset: list[int] | None = None) -> ProgramStateGroup:
        """`size` states continuing from here; the shared prefix is committed to the cache first."""
        executors = self.stream_executor.fork(size)
        return ProgramStateGroup([ProgramState(e) for e in executors], self)

    def copy(self) -> ProgramState:
        return ProgramState(self.stream_executor.fork(1)[0])

    # ------------------------------------------------------------ reading
    def text(self) -> str:
        return self.stream_executor.text()

    def messages(self) -> list[dict]:
        return self.stream_executor.messages()

    def sync(self) -> None:
        self.stream_executor.sync()

    def error(self) -> BaseException | None:
        """The error that stopped this program, or None. Waits for submitted work first."""
        executor = self.stream_executor
        if executor.is_owner() or executor.is_ended:
            executor.sync()
        return executor.error

    def text_iter(self, var_name: str | None = None) -> Iterator[str]:
        """Pieces of the text (or of one variable) as they are generated (with `run(stream=True)`);
        without streaming, one piece once it is complete."""
        executor = self.stream_executor
        if not executor.stream:
            yield self.text() if var_name is None else str(self.get_var(var_name))
            return
        yield from executor.iter_changes(var_name)

    async def text_async_iter(
        self, var_name: str | None = None, return_meta_data: bool = False
    ) -> AsyncIterator[Any]:
        """Async form of `text_iter`; the waiting happens on a worker thread, never on the event loop.
        With `return_meta_data`, yields `(text, meta_info_or_None)` pairs (meta_info once the variable is done)."""
        loop = asyncio.get_running_loop()
        iterator = self.text_iter(var_name)
        sentinel = object()
        while True:
            piece = await loop.run_in_executor(None, next, iterator, sentinel)
            if piece is sentinel:
                break
            if return_meta_data:
                meta = None
                if var_name is not None and var_name in self.stream_executor.data.variables:
                    meta = self.stream_executor.data.meta_info.get(var_name)
                yield piece, meta
            else:
                yield piece

    def snapshot(self) -> dict:
        """Plain data (JSON-safe) describing text, variables, spans and the fork tree, for widgets."""
        return self.stream_executor.snapshot()

    def __repr__(self) -> str:
        executor = self.stream_executor
        status = "error" if executor.error is not None else ("done" if executor.is_finished else "running")
        return f"ProgramState({executor.sid}, {status}, text={executor.data.text!r})"

    def __del__(self) -> None:  # a dropped copy/fork frees its worker thread
        executor = getattr(self, "stream_executor", None)
        if executor is not None and executor.parent is not None and not executor.is_ended:
            try:
                executor.end()
            except Exception:  # noqa: BLE001
                pass


class ProgramStateGroup:
    """The states returned by `fork`. `forks += x` appends to each; `forks += lambda i: ...` appends the
    i-th result to the i-th state; `join()` brings the results back into the parent."""

    def __init__(self, states: list[ProgramState], src_state: ProgramState) -> None:
        self.states = states
        self.src_state = src_state

    def __getitem__(self, index: int) -> ProgramState:
        return self.states[index]

    def __setitem__(self, index: int, state: ProgramState) -> None:
        # `forks[i] += x` assigns the (same) state back
        if state is not self.states[index]:
            raise ValueError("a fork's slot can only hold the state that fork created")

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self) -> Iterator[ProgramState]:
        return iter(self.states)

    def __iadd__(self, other: Any) -> ProgramStateGroup:
        if callable(other) and not isinstance(other, str) and not hasattr(other, "flatten"):
            for i, state in enumerate(self.states):
                state += other(i)
        else:
            for state in self.states:
                state += other
        return self

    def join(self, mode: str = "gather_variable") -> None:
        """`gather_variable`: each variable created in the forks becomes a list in the parent (in fork order).
        `concate_and_append`: the forks' own texts are appended to the parent, one after another."""
        if mode not in JOIN_MODES:
            raise ValueError(f"unknown join mode {mode!r}; expected one of {JOIN_MODES}")
        executors = [s.stream_executor for s in self.states]
        if mode == "gather_variable":
            self.src_state.stream_executor.submit(GatherVars(executors))
        else:
            self.src_state.stream_executor.submit(ConcatAndAppend(executors))

    def __repr__(self) -> str:
        return f"ProgramStateGroup({len(self.states)} states)"


__all__ = ["ProgramState", "ProgramStateGroup", "ProgramError", "JOIN_MODES"]

