"""Executing a program state's queue items: roles, variable scopes, images, `gen`, `select` (forks and joins
are in `fork_join`).

Each function runs on the state's worker thread (`execute` is the worker's dispatch), calls the backend
when it needs the model, and writes the result into the state under its lock (`record` for gen/select).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sgnb.lang import fork_join
from sgnb.lang.backends.base import SamplingSpec
from sgnb.lang.backends.errors import UnsupportedFeatureError
from sgnb.lang.image_part import ImagePart, content_parts, thumbnail
from sgnb.lang.ir import Constant, Expr, Gen, Image, RoleBegin, RoleEnd, Select, VarScopeBegin, VarScopeEnd, Video
from sgnb.lang.queue_items import Call, CommitPrefix, ConcatAndAppend, GatherVars, SetVar
from sgnb.lang.spans import record
from sgnb.lang.speculation import open_chat_turn, run_chat_turn, speculative_gen

if TYPE_CHECKING:
    from sgnb.lang.interpreter import StreamExecutor


# -------------------------------------------------------------------- dispatch
def execute(executor: StreamExecutor, item: Any) -> None:
    """Run one queue item (an expression or an internal item) on the state's worker."""
    if isinstance(item, Constant):
        executor.fill(item.value)
    elif isinstance(item, Gen):
        gen(executor, item)
    elif isinstance(item, Select):
        select(executor, item)
    elif isinstance(item, RoleBegin):
        role_begin(executor, item.role)
    elif isinstance(item, RoleEnd):
        role_end(executor, item.role)
    elif isinstance(item, VarScopeBegin):
        executor.data.var_scopes.append((item.name, len(executor.data.text)))
    elif isinstance(item, VarScopeEnd):
        var_scope_end(executor, item.name)
    elif isinstance(item, Image):
        image(executor, item)
    elif isinstance(item, Video):
        video(executor, item)
    elif isinstance(item, SetVar):
        with executor.cond:
            executor.data.variables[item.name] = item.value
    elif isinstance(item, CommitPrefix):
        fork_join.commit_prefix(executor)
    elif isinstance(item, GatherVars):
        fork_join.gather_vars(executor, item.children)
    elif isinstance(item, ConcatAndAppend):
        fork_join.concat_and_append(executor, item.children)
    elif isinstance(item, Call):
        item.fn(executor)
    elif isinstance(item, Expr):
        raise TypeError(f"the interpreter cannot execute {item!r}")
    else:
        raise TypeError(f"cannot append {type(item).__name__} to a program state")


# -------------------------------------------------------------------- roles and scopes
def role_begin(executor: StreamExecutor, role: str) -> None:
    if executor.data.cur_role is not None:
        raise ValueError(f"cannot open role {role!r} while role {executor.data.cur_role!r} is open; close it first")
    prefix, _ = executor.chat_template.get_prefix_and_suffix(role, executor.data.messages)
    executor.fill(prefix)
    with executor.cond:
        executor.data.cur_role = role
        executor.data.cur_role_begin_pos = len(executor.data.text)
    open_chat_turn(executor, role)


def role_end(executor: StreamExecutor, role: str) -> None:
    if executor.data.cur_role != role:
        raise ValueError(f"{role}_end() without a matching {role}_begin() (open role: {executor.data.cur_role!r})")
    if executor.spec_turn is not None:
        run_chat_turn(executor)
    with executor.cond:
        begin, end = executor.data.cur_role_begin_pos, len(executor.data.text)
        content = content_parts(executor.data.text, begin, executor.data.images)
        message = {"role": role, "content": content.lstrip() if isinstance(content, str) else content}
    _, suffix = executor.chat_template.get_prefix_and_suffix(role, executor.data.messages)
    executor.fill(suffix)
    with executor.cond:
        executor.data.messages.append(message)
        executor.data.role_spans.append({"role": role, "start": begin, "end": end})
        executor.data.cur_role = None


def var_scope_end(executor: StreamExecutor, name: str) -> None:
    if not executor.data.var_scopes or executor.data.var_scopes[-1][0] != name:
        raise ValueError(f"var_scope({name!r}) closed without being opened")
    _, start = executor.data.var_scopes.pop()
    with executor.cond:
        executor.data.variables[name] = executor.data.text[start:]
        executor.data.spans.append({"name": name, "kind": "var_scope", "start": start, "end": len(executor.data.text)})


def image(executor: StreamExecutor, item: Image) -> None:
    executor.reset_speculation()
    _append_image(executor, item.data)


def video(executor: StreamExecutor, item: Video) -> None:
    """The video's frames, sampled evenly, each appended as an image."""
    from sgnb.engine.multimodal.video import sample_frames

    executor.reset_speculation()
    for frame in sample_frames(item.path, item.num_frames):
        _append_image(executor, frame)


def _append_image(executor: StreamExecutor, data: Any) -> None:
    """The backend's image placeholder into the text, and the image (with where it sits) into the state."""
    placeholder = executor.chat_template.image_token
    small = thumbnail(data)
    with executor.cond:
        start = len(executor.data.text)
        executor.data.images.append(ImagePart(data, start, start + len(placeholder), small))
        executor.data.text += placeholder
        executor.changed()


# -------------------------------------------------------------------- gen / select
def _resolve(executor: StreamExecutor, expr: Gen) -> SamplingSpec:
    """The gen's sampling settings over the run's defaults, plus the chat template's stop strings."""
    params = expr.resolve(executor.default_sampling)
    extra = [s for s in executor.chat_template.stop_str if s not in params.stop]
    if extra:
        params = params.replace(stop=params.stop + extra)
    return params


def gen(executor: StreamExecutor, expr: Gen) -> None:
    params = _resolve(executor, expr)
    if speculative_gen(executor, expr, params):
        return
    name = expr.name
    backend = executor.backend
    if backend.is_chat_model:
        _check_chat_gen_position(executor)
    ctx = executor.context()
    start = len(executor.data.text)
    if executor.stream and params.n == 1:
        comp = ""
        meta: dict = {}
        if name is not None:
            with executor.cond:
                executor.data.partial_vars[name] = ""
        for delta, meta in backend.generate_stream(ctx, params):
            if not delta:
                continue
            comp += delta
            with executor.cond:
                executor.data.text += delta
                if name is not None:
                    executor.data.partial_vars[name] = comp
                executor.changed()
        executor.reset_speculation()
        record(executor, name, "gen", comp, meta, start, expr.sampling)
        return
    comp, meta = backend.generate(ctx, params)
    executor.reset_speculation()
    executor.append_text(comp[0] if isinstance(comp, list) else comp)
    record(executor, name, "gen", comp, meta, start, expr.sampling)


def _check_chat_gen_position(executor: StreamExecutor) -> None:
    if executor.data.cur_role == "assistant" and executor.backend.can_continue_final_message:
        return
    if executor.data.cur_role != "assistant" or executor.data.text[executor.data.cur_role_begin_pos :]:
        raise UnsupportedFeatureError(
            f"{executor.backend.get_model_name()} is a chat model: gen() must come right after assistant "
            "begins (e.g. `s += sgl.assistant(sgl.gen('answer'))`). To put several gens or text in one "
            "assistant turn, use @function(num_api_spec_tokens=...) for API speculative execution."
        )


def select(executor: StreamExecutor, expr: Select) -> None:
    if executor.spec_turn is not None:
        raise UnsupportedFeatureError("select inside an assistant turn under API speculative execution")
    ctx = executor.context()
    start = len(executor.data.text)
    result = executor.backend.select(ctx, list(expr.choices), expr.temperature, expr.choices_method)
    if result.decision not in expr.choices:
        raise RuntimeError(f"backend selected {result.decision!r}, which is not one of {expr.choices!r}")
    executor.reset_speculation()
    executor.append_text(result.decision)
    record(
        executor, expr.name, "select", result.decision, result.meta_info, start,
        {"choices": list(expr.choices), "choices_method": expr.choices_method.name},
    )


__all__ = ["execute", "role_begin", "role_end", "var_scope_end", "image", "video", "gen", "select"]
