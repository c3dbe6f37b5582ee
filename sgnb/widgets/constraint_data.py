"""What the constraint path shows, as plain data, from a constrained gen's ``constraint_trace``.

Each trace step is one output token: ``{"state", "num_allowed", "token_id", "token", "forced", "masked_top"}``
(``masked_top``: the model's best tokens that the mask removed, as ``[token, logprob]`` pairs). ``state`` is where
the constraint stood before the token: an FSM state (an int) for regex and JSON, or for a grammar a short string of
its position (the end of the text it has matched, ``▸``, and `` ✓`` where it could end there).
``meta_info["constraint"]["kind"]`` says which (a bare trace is a grammar's when its states are strings), and
``["source"]`` a grammar's language. A grammar's positions are not a finite set of states, so for a grammar
``num_states`` is None and the views count the steps where one token was allowed instead.
``constraint_data(meta_info_or_trace)`` ->::

    {"steps": [{"index", "state", "num_allowed", "token_id", "token", "forced", "masked_top", "segment"}],
     "segments": [{"forced": bool, "text": str, "num_tokens": int, "first_step": int}],  # runs of forced/sampled
     "text": str, "num_steps": int, "num_forced": int, "num_single_choice": int,   # steps with one allowed token
     "kind": "fsm" | "grammar", "num_states": int | None,   # distinct FSM states visited (None for a grammar)
     "state_label": str, "summary": str}   # the views' name of a step's state, and their one-line summary
"""

from __future__ import annotations

from typing import Any

_STEP_KEYS = ("state", "num_allowed", "token_id", "token", "forced")
_STATE_LABELS = {"fsm": "FSM state", "grammar": "grammar position"}   # constraint kind -> a step's state, in the views


def constraint_data(source: Any) -> dict:
    """The view model of a constraint trace; ``source`` is a meta_info dict or the trace list itself."""
    trace = _trace_of(source)
    kind, grammar_source = _kind_of(source, trace)
    steps: list[dict] = []
    segments: list[dict] = []
    for i, step in enumerate(trace):
        if not isinstance(step, dict):
            raise ValueError(f"constraint trace step {i} must be a dict, got {type(step).__name__}")
        missing = [k for k in _STEP_KEYS if k not in step]
        if missing:
            raise ValueError(f"constraint trace step {i} lacks {missing}")
        forced = bool(step["forced"])
        token = step["token"] if isinstance(step["token"], str) else str(step["token"])
        if not segments or segments[-1]["forced"] != forced:
            segments.append({"forced": forced, "text": "", "num_tokens": 0, "first_step": i})
        seg = segments[-1]
        seg["text"] += token
        seg["num_tokens"] += 1
        masked = [[str(t), float(lp)] for t, lp in (step.get("masked_top") or [])]
        steps.append({"index": i, "state": step["state"], "num_allowed": int(step["num_allowed"]),
                      "token_id": step["token_id"], "token": token, "forced": forced, "masked_top": masked,
                      "segment": len(segments) - 1})
    num_single_choice = sum(1 for s in steps if s["num_allowed"] == 1)
    num_states = len({s["state"] for s in steps}) if kind == "fsm" else None
    summary = (f"{num_states} FSM states" if kind == "fsm"
               else f"{grammar_source + ' ' if grammar_source else ''}grammar, {num_single_choice} single-choice steps")
    return {
        "steps": steps,
        "segments": segments,
        "text": "".join(s["token"] for s in steps),
        "num_steps": len(steps),
        "num_forced": sum(1 for s in steps if s["forced"]),
        "num_single_choice": num_single_choice,
        "kind": kind,
        "num_states": num_states,
        "state_label": _STATE_LABELS[kind],
        "summary": summary,
    }


def _kind_of(source: Any, trace: list) -> tuple[str, str | None]:
    """The constraint's kind ("fsm" | "grammar") and, for a grammar, its language ("ebnf", "lark", "json_schema")."""
    summary = (source.get("constraint") or {}) if isinstance(source, dict) else {}
    kind = summary.get("kind")
    if kind is None:
        is_grammar = any(isinstance(step.get("state"), str) for step in trace if isinstance(step, dict))
        kind = "grammar" if is_grammar else "fsm"
    if kind not in _STATE_LABELS:
        raise ValueError(f"meta_info['constraint']['kind'] must be one of {', '.join(_STATE_LABELS)}, got {kind!r}")
    return kind, summary.get("source")


def _trace_of(source: Any) -> list:
    if isinstance(source, dict):
        if "constraint_trace" not in source:
            raise ValueError("this meta_info has no 'constraint_trace': the gen was not constrained "
                             "(pass regex=..., json_schema=..., ebnf=... or lark=...)")
        source = source["constraint_trace"]
    if not isinstance(source, (list, tuple)):
        raise ValueError(f"expected a constraint trace (list of steps) or a meta_info dict, got {type(source).__name__}")
    return list(source)
