"""The interpreter: one `StreamExecutor` (a worker thread and a queue) per program state.

The program's thread only enqueues expressions (`s += ...` returns at once). The worker executes them in order
against the backend. Reads (`s["x"]`, `text()`) wait on one condition variable that the worker notifies after
every change. An error raised by an item is stored on the executor; later items are skipped and every waiter
is released with it.

Thread model and invariants:
- `text_`, `variables`, `messages_`, `meta_info`, `spans` are written only by the worker (or before the worker
  has items, in `fork`), always under `_cond`; readers take `_cond` too.
- `num_pending` counts submitted-but-unfinished items; `sync()` waits for it to reach 0.
- The owner thread is the thread running the program body. When it reads a variable that is absent while
  nothing is pending, the variable can never appear: that is an `UnknownVariableError`, not a hang.
"""

from __future__ import annotations

import base64
import itertools
import os
import queue
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from sgnb.lang.backends.api_speculative import ChatSpecTurn, CompletionSpeculator
from sgnb.lang.backends.base import GenContext, SamplingSpec, UnsupportedFeatureError, dtype_name
from sgnb.lang.ir import (
    Constant,
    Expr,
    Gen,
    Image,
    RoleBegin,
    RoleEnd,
    Select,
    VarScopeBegin,
    VarScopeEnd,
    Video,
    to_expr,
)

if TYPE_CHECKING:
    from sgnb.lang.backends.base import Backend
    from sgnb.lang.chat_template import ChatTemplate

_state_ids = itertools.count()


class ProgramError(RuntimeError):
    """A program state failed; raised to readers of its variables. `__cause__` is the original error."""


class UnknownVariableError(KeyError):
    """A variable that the program never produced (and never will)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


# Internal queue items (not user-facing expressions).
@dataclass(eq=False)
class _SetVar:
    name: str
    value: Any


@dataclass(eq=False)
class _CommitPrefix:
    """Commit the current text into the backend's prefix cache (before the children of a fork run)."""


@dataclass(eq=False)
class _GatherVars:
    children: list[StreamExecutor]


@dataclass(eq=False)
class _ConcatAndAppend:
    children: list[StreamExecutor]


@dataclass(eq=False)
class _Call:
    """Run `fn(executor)` on the worker, in order with the other items."""

    fn: Any


_END = object()


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

        self._cond = threading.Condition()
        self.text_ = ""
        self.messages_: list[dict] = []
        self.cur_role: str | None = None
        self.cur_role_begin_pos = 0
        self.cur_images: list[Any] = []
        self.images_: list[Any] = []
        self.videos_: list[tuple[Any, int]] = []
        self.variables: dict[str, Any] = {}
        self.partial_vars: dict[str, str] = {}  # streaming gens in progress
        self.meta_info: dict[str, dict] = {}
        self.spans: list[dict] = []  # per-variable spans, see snapshot()
        self.role_spans: list[dict] = []
        self.num_cache_commits = 0
        self.var_scopes: list[tuple[str, int]] = []
        self.error_: BaseException | None = None
        self.num_pending = 0
        self.is_ended = False  # no more submissions accepted
        self.is_finished = False  # ended and every item executed
        self.version = 0  # bumped on every change; streaming readers compare it
        # API speculative execution (sgnb.lang.backends.api_speculative): completion models keep text
        # generated ahead; chat models collect one assistant turn and serve it with one call at its end
        self.speculator: CompletionSpeculator | None = None
        if num_api_spec_tokens is not None and not backend.is_chat_model:
            self.speculator = CompletionSpeculator(num_api_spec_tokens)
        self.spec_turn: ChatSpecTurn | None = None
        self._num_spec_unnamed = 0

        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._run, name=f"sgnb-{self.sid}", daemon=True)
        self._worker.start()
        self.backend.begin_program(self.sid)

    # ---------------------------------------------------------------- submission / waiting
    def submit(self, item: Any) -> None:
        """Enqueue an expression (flattened) or an internal item; returns at once."""
        items = to_expr(item).flatten() if not _is_internal(item) else [item]
        with self._cond:
            if self.is_ended:
                raise RuntimeError(f"program state {self.sid} has ended; it accepts no more text")
            self.num_pending += len(items)
            for it in items:
                self._queue.put(it)

    def sync(self) -> None:
        """Wait until every submitted item has executed (or was skipped after an error)."""
        with self._cond:
            self._cond.wait_for(lambda: self.num_pending == 0)

    def end(self) -> None:
        """No more submissions; the worker exits after the pending items. Ends the children too."""
        with self._cond:
            if self.is_ended:
                return
            self.is_ended = True
            self._queue.put(_END)
        for child in list(self.children):
            child.end()

    def wait_finished(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.is_finished, timeout)

    def wait_tree_finished(self) -> None:
        """Wait for this state and every fork below it (forks nobody joined may still be generating)."""
        self.wait_finished()
        for child in list(self.children):
            child.wait_tree_finished()

    def set_error(self, error: BaseException) -> None:
        """Record the first error; release every waiter."""
        with self._cond:
            if self.error_ is None:
                self.error_ = error
            self.version += 1
            self._cond.notify_all()

    def _is_owner(self) -> bool:
        return threading.get_ident() in self.owner_threads

    def _can_never_change(self) -> bool:
        # called under _cond
        idle = self.num_pending == 0
        return self.is_finished or (idle and (self.is_ended or self._is_owner()))

    def get_var(self, name: str) -> Any:
        """The value of `name`, waiting until it is produced; raises if it never will be."""
        with self._cond:
            while True:
                if name in self.variables:
                    return self.variables[name]
                if self.error_ is not None:
                    raise ProgramError(
                        f"variable {name!r} is unavailable: program state {self.sid} failed with "
                        f"{type(self.error_).__name__}: {self.error_}"
                    ) from self.error_
                if self._can_never_change():
                    known = ", ".join(repr(k) for k in self.variables) or "none"
                    raise UnknownVariableError(
                        f"unknown variable {name!r}: the program did not produce it (known variables: {known})"
                    )
                self._cond.wait()

    def has_var(self, name: str) -> bool:
        if self._is_owner():
            self.sync()
        with self._cond:
            return name in self.variables

    def get_meta_info(self, name: str) -> dict | None:
        self.get_var(name)
        with self._cond:
            return self.meta_info.get(name)

    def set_var(self, name: str, value: Any) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"variable name must be a non-empty string, got {name!r}")
        self.submit(_SetVar(name, value))

    def text(self) -> str:
        self.sync()
        with self._cond:
            return self.text_

    def messages(self) -> list[dict]:
        self.sync()
        with self._cond:
            return list(self.messages_)

    # ---------------------------------------------------------------- streaming reads
    def iter_changes(self, var_name: str | None) -> Iterator[str]:
        """Yield new text of the state (or of `var_name`) as the worker produces it, until it is final."""
        prev = 0
        seen_version = -1
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self.version != seen_version or self._can_never_change())
                seen_version = self.version
                if var_name is None:
                    current = self.text_
                    done = self._can_never_change() or self.error_ is not None
                else:
                    if var_name in self.variables:
                        value = self.variables[var_name]
                        current = value if isinstance(value, str) else str(value)
                        done = True
                    else:
                        current = self.partial_vars.get(var_name, "")
                        done = self._can_never_change() or self.error_ is not None
                        if done and self.error_ is None and var_name not in self.partial_vars:
                            known = ", ".join(repr(k) for k in self.variables) or "none"
                            raise UnknownVariableError(
                                f"unknown variable {var_name!r}: the program did not produce it "
                                f"(known variables: {known})"
                            )
            if len(current) > prev:
                yield current[prev:]
                prev = len(current)
            if done:
                if self.error_ is not None and var_name is not None and var_name not in self.variables:
                    raise ProgramError(f"program state {self.sid} failed: {self.error_}") from self.error_
                return

    # ---------------------------------------------------------------- fork
    def fork(self, size: int) -> list[StreamExecutor]:
        """`size` children that continue from this state's current text. With size > 1 the shared prefix
        is committed into the backend's cache first, so every child extends from cached KV."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"fork size must be a positive integer, got {size!r}")
        if self.spec_turn is not None:
            raise UnsupportedFeatureError("cannot fork inside an assistant turn under API speculative execution")
        if size > 1:
            self.submit(_CommitPrefix())
        self.sync()
        if self.error_ is not None:
            raise ProgramError(f"cannot fork program state {self.sid}: it failed with {self.error_}") from self.error_
        children = []
        with self._cond:
            for _ in range(size):
                child = StreamExecutor(
                    self.backend, self.arguments, self.default_sampling, self.chat_template, self.stream,
                    self.num_api_spec_tokens, parent=self,
                )
                child.owner_threads = set(self.owner_threads) | {threading.get_ident()}
                child.text_ = self.text_
                child.messages_ = list(self.messages_)
                child.cur_role = self.cur_role
                child.cur_role_begin_pos = self.cur_role_begin_pos
                child.cur_images = list(self.cur_images)
                child.images_ = list(self.images_)
                child.videos_ = list(self.videos_)
                child.variables = dict(self.variables)
                child.meta_info = dict(self.meta_info)
                child.spans = list(self.spans)
                child.role_spans = list(self.role_spans)
                child.var_scopes = list(self.var_scopes)
                child.fork_start_text_pos = len(self.text_)
                children.append(child)
            self.children.extend(children)
            self.version += 1
            self._cond.notify_all()
        return children

    # ---------------------------------------------------------------- worker
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                break
            try:
                if self.error_ is None:
                    self._execute(item)
            except BaseException as e:  # noqa: BLE001 - stored, re-raised to readers
                self.set_error(e)
            finally:
                with self._cond:
                    self.num_pending -= 1
                    self.version += 1
                    self._cond.notify_all()
        try:
            self.backend.end_program(self.sid)
        except Exception:  # noqa: BLE001
            pass
        with self._cond:
            self.is_finished = True
            self.version += 1
            self._cond.notify_all()

    def _execute(self, item: Any) -> None:
        if isinstance(item, Constant):
            self._fill(item.value)
        elif isinstance(item, Gen):
            self._gen(item)
        elif isinstance(item, Select):
            self._select(item)
        elif isinstance(item, RoleBegin):
            self._role_begin(item.role)
        elif isinstance(item, RoleEnd):
            self._role_end(item.role)
        elif isinstance(item, VarScopeBegin):
            self.var_scopes.append((item.name, len(self.text_)))
        elif isinstance(item, VarScopeEnd):
            self._var_scope_end(item.name)
        elif isinstance(item, Image):
            self._image(item)
        elif isinstance(item, Video):
            self._video(item)
        elif isinstance(item, _SetVar):
            with self._cond:
                self.variables[item.name] = item.value
        elif isinstance(item, _CommitPrefix):
            if self.text_:
                self.backend.cache_prefix(self.text_)
                self.num_cache_commits += 1
        elif isinstance(item, _GatherVars):
            self._gather_vars(item.children)
        elif isinstance(item, _ConcatAndAppend):
            self._concat_and_append(item.children)
        elif isinstance(item, _Call):
            item.fn(self)
        elif isinstance(item, Expr):
            raise TypeError(f"the interpreter cannot execute {item!r}")
        else:
            raise TypeError(f"cannot append {type(item).__name__} to a program state")

    # ---------------------------------------------------------------- text
    def _append_text(self, value: str) -> None:
        if not value:
            return
        with self._cond:
            self.text_ += value
            self.version += 1
            self._cond.notify_all()

    def _fill(self, value: str) -> None:
        if self.spec_turn is not None:
            self.spec_turn.add_text(value)
            return
        if self.speculator is not None:
            self.speculator.fill(value)
        self._append_text(value)

    def _reset_speculation(self) -> None:
        if self.speculator is not None:
            self.speculator.reset()

    def _context(self) -> GenContext:
        with self._cond:
            messages = list(self.messages_)
            if self.cur_role is not None:
                partial = self.text_[self.cur_role_begin_pos :]
                if partial:
                    messages.append({"role": self.cur_role, "content": partial})
            return GenContext(
                text=self.text_, messages=messages, images=list(self.images_), videos=list(self.videos_),
                state_id=self.sid, cur_role=self.cur_role,
            )

    # ---------------------------------------------------------------- roles and scopes
    def _role_begin(self, role: str) -> None:
        if self.cur_role is not None:
            raise ValueError(f"cannot open role {role!r} while role {self.cur_role!r} is open; close it first")
        prefix, _ = self.chat_template.get_prefix_and_suffix(role, self.messages_)
        self._fill(prefix)
        with self._cond:
            self.cur_role = role
            self.cur_role_begin_pos = len(self.text_)
        if role == "assistant" and self.num_api_spec_tokens is not None and self.backend.is_chat_model:
            self.spec_turn = ChatSpecTurn(self.num_api_spec_tokens)

    def _role_end(self, role: str) -> None:
        if self.cur_role != role:
            raise ValueError(f"{role}_end() without a matching {role}_begin() (open role: {self.cur_role!r})")
        if self.spec_turn is not None:
            self._run_spec_chat_turn()
        with self._cond:
            begin = self.cur_role_begin_pos
            content = self.text_[begin:]
        _, suffix = self.chat_template.get_prefix_and_suffix(role, self.messages_)
        self._fill(suffix)
        message: dict[str, Any] = {"role": role, "content": content.lstrip()}
        if self.cur_images:
            parts: list[dict] = [{"type": "image_url", "image_url": {"url": _image_url(x)}} for x in self.cur_images]
            parts.append({"type": "text", "text": message["content"]})
            message["content"] = parts
        with self._cond:
            self.messages_.append(message)
            self.role_spans.append({"role": role, "start": begin, "end": begin + len(content)})
            self.cur_role = None
            self.cur_images = []

    def _var_scope_end(self, name: str) -> None:
        if not self.var_scopes or self.var_scopes[-1][0] != name:
            raise ValueError(f"var_scope({name!r}) closed without being opened")
        _, start = self.var_scopes.pop()
        with self._cond:
            value = self.text_[start:]
            self.variables[name] = value
            self.spans.append({"name": name, "kind": "var_scope", "start": start, "end": len(self.text_)})

    def _image(self, item: Image) -> None:
        self._reset_speculation()
        with self._cond:
            self.images_.append(item.data)
            self.cur_images.append(item.data)
        self._append_text(self.chat_template.image_token)

    def _video(self, item: Video) -> None:
        self._reset_speculation()
        with self._cond:
            self.videos_.append((item.path, item.num_frames))
        self._append_text(self.chat_template.image_token)

    # ---------------------------------------------------------------- gen / select
    def _resolve(self, expr: Gen) -> SamplingSpec:
        params = expr.resolve(self.default_sampling)
        extra = [s for s in self.chat_template.stop_str if s not in params.stop]
        if extra:
            params = params.replace(stop=params.stop + extra)
        return params

    def _record(self, name: str | None, kind: str, value: Any, meta: dict, start: int, params: dict) -> None:
        with self._cond:
            end = len(self.text_)
            if name is not None:
                self.variables[name] = value
                self.meta_info[name] = meta
                self.partial_vars.pop(name, None)
            self.spans.append({
                "name": name, "kind": kind, "start": start, "end": end, "params": _plain_params(params),
                "meta_info": _plain_meta(meta),
            })
            self.version += 1
            self._cond.notify_all()

    def _gen(self, expr: Gen) -> None:
        params = self._resolve(expr)
        name = expr.name
        if self.spec_turn is not None:
            if name is None:
                self._num_spec_unnamed += 1
                name = f"_unnamed_gen_{self._num_spec_unnamed}"
            self.spec_turn.add_gen(name, params)
            return
        if self.speculator is not None and params.n == 1:
            ctx = self._context()
            start = len(self.text_)
            comp, meta = self.speculator.gen(self.backend, ctx, params)
            self._append_text(comp)
            self._record(name, "gen", comp, meta, start, expr.sampling)
            return
        if self.backend.is_chat_model:
            self._check_chat_gen_position()
        ctx = self._context()
        start = len(self.text_)
        if self.stream and params.n == 1:
            comp = ""
            meta: dict = {}
            if name is not None:
                with self._cond:
                    self.partial_vars[name] = ""
            for delta, meta in self.backend.generate_stream(ctx, params):
                if not delta:
                    continue
                comp += delta
                with self._cond:
                    self.text_ += delta
                    if name is not None:
                        self.partial_vars[name] = comp
                    self.version += 1
                    self._cond.notify_all()
            self._reset_speculation()
            self._record(name, "gen", comp, meta, start, expr.sampling)
            return
        comp, meta = self.backend.generate(ctx, params)
        self._reset_speculation()
        self._append_text(comp[0] if isinstance(comp, list) else comp)
        self._record(name, "gen", comp, meta, start, expr.sampling)

    def _check_chat_gen_position(self) -> None:
        if self.cur_role == "assistant" and self.backend.can_continue_final_message:
            return
        if self.cur_role != "assistant" or self.text_[self.cur_role_begin_pos :]:
            raise UnsupportedFeatureError(
                f"{self.backend.get_model_name()} is a chat model: gen() must come right after assistant "
                "begins (e.g. `s += sgl.assistant(sgl.gen('answer'))`). To put several gens or text in one "
                "assistant turn, use @function(num_api_spec_tokens=...) for API speculative execution."
            )

    def _select(self, expr: Select) -> None:
        if self.spec_turn is not None:
            raise UnsupportedFeatureError("select inside an assistant turn under API speculative execution")
        ctx = self._context()
        start = len(self.text_)
        result = self.backend.select(ctx, list(expr.choices), expr.temperature, expr.choices_method)
        if result.decision not in expr.choices:
            raise RuntimeError(f"backend selected {result.decision!r}, which is not one of {expr.choices!r}")
        self._reset_speculation()
        self._append_text(result.decision)
        self._record(
            expr.name, "select", result.decision, result.meta_info, start,
            {"choices": list(expr.choices), "choices_method": expr.choices_method.name},
        )

    # ---------------------------------------------------------------- API speculative execution
    def _run_spec_chat_turn(self) -> None:
        """Chat models: serve the gens of the assistant turn that is ending with one call (then split)."""
        turn, self.spec_turn = self.spec_turn, None
        pieces = turn.run(self.backend, self._context())
        for name, text in pieces:
            if name is None:
                self._append_text(text)
                continue
            start = len(self.text_)
            self._append_text(text)
            is_named = not name.startswith("_unnamed_gen_")
            self._record(name if is_named else None, "gen", text, {"speculative": True,
                         "num_turn_calls": turn.num_calls}, start, {})

    # ---------------------------------------------------------------- join
    def _gather_vars(self, children: list[StreamExecutor]) -> None:
        for child in children:
            child.sync()
            if child.error_ is not None:
                raise ProgramError(f"forked state {child.sid} failed: {child.error_}") from child.error_
        with self._cond:
            base = set(self.variables)
            for child in children:
                for key, value in child.variables.items():
                    if key in base:
                        continue
                    self.variables.setdefault(key, []).append(value)

    def _concat_and_append(self, children: list[StreamExecutor]) -> None:
        pieces = []
        for child in children:
            child.sync()
            if child.error_ is not None:
                raise ProgramError(f"forked state {child.sid} failed: {child.error_}") from child.error_
            pieces.append(child.text_[child.fork_start_text_pos :])
        self._fill("".join(pieces))

    # ---------------------------------------------------------------- snapshot
    def snapshot(self) -> dict:
        """Plain data for widgets: text, variables, spans (char offsets into `text`), roles, fork tree."""
        with self._cond:
            snap = {
                "id": self.sid,
                "parent_id": self.parent.sid if self.parent is not None else None,
                "fork_start": self.fork_start_text_pos,
                "text": self.text_,
                "messages": [dict(m) for m in self.messages_],
                "variables": {k: _plain_value(v) for k, v in self.variables.items()},
                "partial_variables": dict(self.partial_vars),
                "spans": [dict(s) for s in self.spans],
                "role_spans": [dict(r) for r in self.role_spans],
                "cur_role": self.cur_role,
                "num_cache_commits": self.num_cache_commits,
                "num_pending": self.num_pending,
                "is_finished": self.is_finished,
                "error": None if self.error_ is None else f"{type(self.error_).__name__}: {self.error_}",
            }
            children = list(self.children)
        snap["children"] = [c.snapshot() for c in children]
        return snap


# -------------------------------------------------------------------- helpers
def _is_internal(item: Any) -> bool:
    return isinstance(item, (_SetVar, _CommitPrefix, _GatherVars, _ConcatAndAppend, _Call))


def _plain_value(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    return str(value)


def _plain_params(params: dict) -> dict:
    """gen() arguments as JSON-safe data (dtype=int becomes "int")."""
    out = dict(params)
    if "dtype" in out:
        out["dtype"] = dtype_name(out["dtype"])
    return _plain_meta(out)


def _plain_meta(meta: dict | None) -> dict:
    """JSON-safe copy of meta_info for snapshots (logprob tuples become lists)."""
    if not meta:
        return {}
    out = {}
    for k, v in meta.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, dict):
            out[k] = _plain_meta(v)
        elif isinstance(v, (list, tuple)):
            out[k] = _plain_value(v)
        else:
            out[k] = str(v)
    return out


def _image_url(data: Any) -> str:
    """An image as a URL for chat APIs: http(s)/data URLs pass through; files, bytes and PIL images are
    base64 data URLs."""
    if isinstance(data, str):
        if data.startswith(("http://", "https://", "data:")):
            return data
        if os.path.exists(data):
            ext = os.path.splitext(data)[1].lower().lstrip(".") or "png"
            with open(data, "rb") as f:
                raw = f.read()
            return f"data:image/{'jpeg' if ext == 'jpg' else ext};base64," + base64.b64encode(raw).decode()
        return "data:image/png;base64," + data  # already base64
    if isinstance(data, (bytes, bytearray)):
        return "data:image/png;base64," + base64.b64encode(bytes(data)).decode()
    if "PIL" in sys.modules and hasattr(data, "save"):
        import io

        buf = io.BytesIO()
        data.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    raise ValueError(f"unsupported image input {type(data).__name__}; use a path, URL, bytes or PIL image")


__all__ = ["StreamExecutor", "ProgramError", "UnknownVariableError"]
