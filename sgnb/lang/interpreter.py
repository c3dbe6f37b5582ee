"""The interpreter: one `StreamExecutor` (a worker thread and a queue) per program state.

The program's thread only enqueues expressions (`s += ...` returns at once). The worker executes them in order
against the backend (`primitives`, `fork_join`, `speculation`). Reads (`s["x"]`, `text()`) wait on one condition
variable that the worker notifies after every change. An error raised by an item is stored on the executor;
later items are skipped and every waiter is released with it. Ctrl-C in any of these waits stops the program
and aborts its requests (`sgnb.lang.interrupt`).

Thread model and invariants:
- `data` (a `ProgramData`: text, messages, roles, variables, meta_info, spans...) is written only by the worker
  (or before the worker has items, in `fork`), always under `cond`; readers take `cond` too. The one exception:
  once the state has ended and every item ran, `set_var` writes a variable from the caller's thread (under `cond`).
- `num_pending` counts submitted-but-unfinished items; `sync()` waits for it to reach 0.
- `is_executing` is True exactly while the worker runs an item (it may be inside a backend call); the worker
  decides to run an item and sets it under `cond`, so once `error` is set no new item starts.
- The owner thread is the thread running the program body. When it reads a variable that is absent while
  nothing is pending, the variable can never appear: that is an `UnknownVariableError`, not a hang.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator

from sgnb.lang import fork_join, primitives, spans, text_stream
from sgnb.lang.backends.base import GenContext, SamplingSpec
from sgnb.lang.errors import ProgramError, ProgramInterrupted, UnknownVariableError
from sgnb.lang.image_part import content_parts
from sgnb.lang.interrupt import interruptible
from sgnb.lang.ir import to_expr
from sgnb.lang.program_data import ProgramData
from sgnb.lang.queue_items import END, SetVar, is_internal
from sgnb.lang.speculation import make_speculator

if TYPE_CHECKING:
    from sgnb.lang.backends.api_speculative import ChatSpecTurn
    from sgnb.lang.backends.base import Backend
    from sgnb.lang.chat_template import ChatTemplate

_state_ids = itertools.count()


class StreamExecutor:
    """Executes one program state's expressions in order on a worker thread."""

    def __init__(
        self,
        backend: Backend,
        arguments: dict[str, Any],
        default_sampling: SamplingSpec,
        chat_template: ChatTemplate | None = None,
        stream: bool = False,
        num_api_spec_tokens: int | None = None,
        parent: StreamExecutor | None = None,
    ) -> None:
        if num_api_spec_tokens is not None and num_api_spec_tokens < 1:
            raise ValueError(f"num_api_spec_tokens must be >= 1, got {num_api_spec_tokens}")
        self.sid = f"s{next(_state_ids)}"
        self.backend = backend
        self.arguments = arguments
        self.default_sampling = default_sampling
        self.chat_template = chat_template if chat_template is not None else backend.get_chat_template()
        self.stream = stream
        self.num_api_spec_tokens = num_api_spec_tokens
        self.parent = parent
        self.children: list[StreamExecutor] = []
        self.fork_start_text_pos = 0  # where this state's own text starts (after the parent's prefix)
        self.owner_threads: set[int] = {threading.get_ident()}

        self.cond = threading.Condition()
        self.data = ProgramData()
        self.num_cache_commits = 0
        self.error: BaseException | None = None
        self.num_pending = 0
        self.is_executing = False
        self.is_ended = False  # no more submissions accepted
        self.is_finished = False  # ended and every item executed
        self.version = 0  # bumped on every change; streaming readers compare it
        # API speculative execution (sgnb.lang.speculation): completion models keep text generated ahead;
        # chat models collect one assistant turn and serve it with one call at its end
        self.speculator = make_speculator(self)
        self.spec_turn: ChatSpecTurn | None = None
        self.num_spec_unnamed = 0

        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._run, name=f"sgnb-{self.sid}", daemon=True)
        self._worker.start()
        self.backend.begin_program(self.sid)

    def root(self) -> StreamExecutor:
        """The state the program started with (the top of the fork tree)."""
        executor = self
        while executor.parent is not None:
            executor = executor.parent
        return executor

    def changed(self) -> None:
        """Wake every reader after a change. Call under `cond`."""
        self.version += 1
        self.cond.notify_all()

    # ---------------------------------------------------------------- submission / waiting
    def submit(self, item: Any) -> None:
        """Enqueue an expression (flattened) or an internal item; returns at once."""
        items = to_expr(item).flatten() if not is_internal(item) else [item]
        with self.cond:
            if self.is_ended:
                raise RuntimeError(f"program state {self.sid} has ended; it accepts no more text")
            self.num_pending += len(items)
            for it in items:
                self._queue.put(it)

    @interruptible
    def sync(self) -> None:
        """Wait until every submitted item has executed (or was skipped after an error)."""
        with self.cond:
            self.cond.wait_for(lambda: self.num_pending == 0)

    def end(self) -> None:
        """No more submissions; the worker exits after the pending items. Ends the children too."""
        with self.cond:
            if self.is_ended:
                return
            self.is_ended = True
            self._queue.put(END)
        for child in list(self.children):
            child.end()

    @interruptible
    def wait_finished(self, timeout: float | None = None) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.is_finished, timeout)

    @interruptible
    def wait_tree_finished(self, timeout: float | None = None) -> bool:
        """Wait for this state and every fork below it (forks nobody joined may still be generating).
        False when `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if not self.wait_finished(remaining()):
            return False
        return all(child.wait_tree_finished(remaining()) for child in list(self.children))

    def set_error(self, error: BaseException) -> None:
        """Record the first error; release every waiter."""
        with self.cond:
            if self.error is None:
                self.error = error
            self.changed()

    def is_owner(self) -> bool:
        return threading.get_ident() in self.owner_threads

    def can_never_change(self) -> bool:
        # called under cond
        idle = self.num_pending == 0
        return self.is_finished or (idle and (self.is_ended or self.is_owner()))

    def unknown_variable(self, name: str) -> UnknownVariableError:
        known = ", ".join(repr(k) for k in self.data.variables) or "none"
        return UnknownVariableError(
            f"unknown variable {name!r}: the program did not produce it (known variables: {known})"
        )

    @interruptible
    def get_var(self, name: str) -> Any:
        """The value of `name`, waiting until it is produced; raises if it never will be."""
        with self.cond:
            while True:
                if name in self.data.variables:
                    return self.data.variables[name]
                if self.error is not None:
                    raise ProgramError(
                        f"variable {name!r} is unavailable: program state {self.sid} failed with "
                        f"{type(self.error).__name__}: {self.error}"
                    ) from self.error
                if self.can_never_change():
                    raise self.unknown_variable(name)
                self.cond.wait()

    def has_var(self, name: str) -> bool:
        if self.is_owner():
            self.sync()
        with self.cond:
            return name in self.data.variables

    def get_meta_info(self, name: str) -> dict | None:
        self.get_var(name)
        with self.cond:
            return self.data.meta_info.get(name)

    def set_var(self, name: str, value: Any) -> None:
        """Set variable `name`. While the program runs, in order with the text around it; on an ended state
        (post-processing, `state["n"] = int(state["n"])`) once its pending items ran. The text stays as it is."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"variable name must be a non-empty string, got {name!r}")
        with self.cond:
            is_ended = self.is_ended
            if not is_ended:
                self.submit(SetVar(name, value))
        if is_ended:  # nothing can be submitted any more: wait for what was, then set it here
            self.sync()
            with self.cond:
                self.data.variables[name] = value
                self.changed()

    def text(self) -> str:
        self.sync()
        with self.cond:
            return self.data.text

    def messages(self) -> list[dict]:
        self.sync()
        with self.cond:
            return list(self.data.messages)

    def iter_changes(self, var_name: str | None) -> Iterator[str]:
        """New text of the state (or of `var_name`) as the worker produces it (see `sgnb.lang.text_stream`)."""
        return text_stream.iter_changes(self, var_name)

    # ---------------------------------------------------------------- fork / snapshot
    def fork(self, size: int) -> list[StreamExecutor]:
        """`size` children continuing from this state's current text (see `sgnb.lang.fork_join`)."""
        return fork_join.fork(self, size)

    def snapshot(self) -> dict:
        """Plain data for widgets: text, variables, spans, roles, fork tree (see `sgnb.lang.spans`)."""
        return spans.snapshot(self)

    # ---------------------------------------------------------------- worker
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is END:
                break
            with self.cond:  # decided under the lock: once error is set, nothing new starts
                self.is_executing = self.error is None
            try:
                if self.is_executing:
                    primitives.execute(self, item)
            except BaseException as e:  # noqa: BLE001 - stored, re-raised to readers
                self.set_error(e)
            finally:
                with self.cond:
                    self.is_executing = False
                    self.num_pending -= 1
                    self.changed()
        try:
            self.backend.end_program(self.sid)
        except Exception:  # noqa: BLE001
            pass
        with self.cond:
            self.is_finished = True
            self.changed()

    # ---------------------------------------------------------------- text (worker side)
    def append_text(self, value: str) -> None:
        if not value:
            return
        with self.cond:
            self.data.text += value
            self.changed()

    def fill(self, value: str) -> None:
        """Append constant text (through the speculator, which may already hold it)."""
        if self.spec_turn is not None:
            self.spec_turn.add_text(value)
            return
        if self.speculator is not None:
            self.speculator.fill(value)
        self.append_text(value)

    def reset_speculation(self) -> None:
        """The text changed in a way speculation did not foresee: drop what was generated ahead."""
        if self.speculator is not None:
            self.speculator.reset()

    def context(self) -> GenContext:
        """The prompt for a backend call, as of now."""
        with self.cond:
            data = self.data
            messages = list(data.messages)
            if data.cur_role is not None and data.text[data.cur_role_begin_pos :]:
                messages.append({"role": data.cur_role,
                                 "content": content_parts(data.text, data.cur_role_begin_pos, data.images)})
            return GenContext(
                text=data.text, messages=messages, images=[p.data for p in data.images], state_id=self.sid,
                cur_role=data.cur_role,
            )


__all__ = ["StreamExecutor", "ProgramError", "UnknownVariableError", "ProgramInterrupted"]
