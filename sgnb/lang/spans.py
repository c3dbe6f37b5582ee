"""What a program state records about each primitive (variables, meta_info, spans) and its plain-data view.

A span is `{"name", "kind", "start", "end", "params", "meta_info"}` with `start`/`end` char offsets into the
state's text; `kind` is "gen", "select" or "var_scope". Images are `{"start", "end", "thumbnail"}` (their
placeholders' offsets). Snapshots are JSON-safe: widgets render them as is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sgnb.lang.backends.base import dtype_name

if TYPE_CHECKING:
    from sgnb.lang.interpreter import StreamExecutor


def record(
    executor: StreamExecutor, name: str | None, kind: str, value: Any, meta: dict, start: int, params: dict
) -> None:
    """Set variable `name` (when named) to `value` and add the span from `start` to the current text end."""
    with executor.cond:
        data = executor.data
        end = len(data.text)
        if name is not None:
            data.variables[name] = value
            data.meta_info[name] = meta
            data.partial_vars.pop(name, None)
        data.spans.append({
            "name": name, "kind": kind, "start": start, "end": end, "params": plain_params(params),
            "meta_info": plain_meta(meta),
        })
        executor.changed()


def snapshot(executor: StreamExecutor) -> dict:
    """Plain data for widgets: text, variables, spans (char offsets into `text`), roles, fork tree."""
    with executor.cond:
        data = executor.data
        error = executor.error
        snap = {
            "id": executor.sid,
            "parent_id": executor.parent.sid if executor.parent is not None else None,
            "fork_start": executor.fork_start_text_pos,
            "text": data.text,
            "messages": [dict(m) for m in data.messages],
            "variables": {k: plain_value(v) for k, v in data.variables.items()},
            "partial_variables": dict(data.partial_vars),
            "spans": [dict(s) for s in data.spans],
            "role_spans": [dict(r) for r in data.role_spans],
            # where each image's placeholder sits in `text`, with a small PNG data URL to draw there
            "images": [{"start": p.start, "end": p.end, "thumbnail": p.thumbnail} for p in data.images],
            "cur_role": data.cur_role,
            "num_cache_commits": executor.num_cache_commits,
            "num_pending": executor.num_pending,
            "is_finished": executor.is_finished,
            "error": None if error is None else f"{type(error).__name__}: {error}",
        }
        children = list(executor.children)
    snap["children"] = [snapshot(c) for c in children]
    return snap


def plain_value(value: Any) -> Any:
    """JSON-safe data: scalars as they are, lists/tuples and dicts recursively, anything else as str."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain_value(v) for k, v in value.items()}
    return str(value)


def plain_params(params: dict) -> dict:
    """gen() arguments as JSON-safe data (dtype=int becomes "int")."""
    out = dict(params)
    if "dtype" in out:
        out["dtype"] = dtype_name(out["dtype"])
    return plain_meta(out)


def plain_meta(meta: dict | None) -> dict:
    """JSON-safe copy of meta_info for snapshots (logprob tuples become lists)."""
    return plain_value(meta) if meta else {}


__all__ = ["record", "snapshot", "plain_value", "plain_params", "plain_meta"]
