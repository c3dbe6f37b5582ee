"""What the program view shows, as plain data: the fork tree flattened, each state with its marked text.

``program_data(state.snapshot(), tokenizer)`` turns the nested ``ProgramState.snapshot()`` into::

    {"root": "s0", "is_finished": bool, "error": str | None,
     "totals": {kind: num_tokens},                # over every state's own requests, each token once
     "states": [                                   # depth-first, parents before children
        {"id", "parent_id", "depth", "fork_start", "text", "is_finished", "error",
         "variables": {name: value}, "own_variables": {name: value}, "partial_variables": {name: text},
         "spans": [{"name", "kind", "start", "end", "prompt_tokens", "cached_tokens", "completion_tokens",
                    "finish_reason", "num_forced", "choices"}],
         "segments": [...],                        # see token_marks.mark_tokens
         "children": [child ids]}]}

Plain Python; the static HTML renderer, the rich renderer and the widget all read this.
"""

from __future__ import annotations

from typing import Any

from sgnb.widgets.token_marks import TOKEN_KINDS, count_marks, mark_tokens


def program_data(snapshot: dict, tokenizer: Any = None, memo: dict | None = None) -> dict:
    """The view model of a program state snapshot (``ProgramState.snapshot()``)."""
    if not isinstance(snapshot, dict) or "text" not in snapshot or "id" not in snapshot:
        raise ValueError("program_data needs a ProgramState.snapshot() dict (with 'id' and 'text')")
    states: list[dict] = []
    totals = {kind: 0 for kind in TOKEN_KINDS}

    def visit(snap: dict, depth: int, parent_vars: dict) -> None:
        segments = mark_tokens(snap, tokenizer, memo)
        fork_start = int(snap.get("fork_start") or 0)
        # a child's snapshot repeats its parent's text and spans; count only its own part
        for kind, n in count_marks(segments, since=fork_start if depth else 0).items():
            totals[kind] += n
        children = snap.get("children") or []
        states.append({
            "id": snap["id"],
            "parent_id": snap.get("parent_id"),
            "depth": depth,
            "fork_start": fork_start,
            "text": snap["text"],
            "is_finished": bool(snap.get("is_finished")),
            "error": snap.get("error"),
            "variables": dict(snap.get("variables") or {}),
            # a fork starts with its parent's variables; show what it produced itself
            "own_variables": {k: v for k, v in (snap.get("variables") or {}).items()
                              if k not in parent_vars or parent_vars[k] != v},
            "partial_variables": dict(snap.get("partial_variables") or {}),
            "spans": [_span_summary(s) for s in snap.get("spans") or []],
            "segments": segments,
            "children": [c["id"] for c in children],
        })
        for child in children:
            visit(child, depth + 1, snap.get("variables") or {})

    visit(snapshot, 0, {})
    errors = [s["error"] for s in states if s["error"]]
    return {
        "root": snapshot["id"],
        "is_finished": all(s["is_finished"] for s in states),
        "error": errors[0] if errors else None,
        "totals": totals,
        "states": states,
    }


def _span_summary(span: dict) -> dict:
    meta = span.get("meta_info") or {}
    trace = [step for step in meta.get("constraint_trace") or [] if isinstance(step, dict)]
    out = {
        "name": span.get("name"),
        "kind": span.get("kind"),
        "start": span.get("start"),
        "end": span.get("end"),
        "prompt_tokens": meta.get("prompt_tokens"),
        "cached_tokens": meta.get("cached_tokens"),
        "completion_tokens": meta.get("completion_tokens"),
        "finish_reason": meta.get("finish_reason"),
        "num_forced": sum(1 for step in trace if step.get("forced")),
        "has_constraint": bool(trace),
    }
    if span.get("kind") == "select":
        params = span.get("params") or {}
        scores = meta.get("normalized_prompt_logprobs") or []
        out["choices"] = [[c, scores[i] if i < len(scores) else None] for i, c in enumerate(params.get("choices", []))]
    return out


def find_state(data: dict, state_id: str) -> dict:
    for state in data["states"]:
        if state["id"] == state_id:
            return state
    raise ValueError(f"no program state {state_id!r}; states: {[s['id'] for s in data['states']]}")
