"""What the constraint path shows, as plain data, from a constrained gen's ``constraint_trace``.

Each trace step is one output token: ``{"state", "num_allowed", "token_id", "token", "forced", "masked_top"}``
(``masked_top``: the model's best tokens that the FSM mask removed, as ``[token, logprob]`` pairs).
``constraint_data(meta_info_or_trace)`` ->::

    {"steps": [{"index", "state", "num_allowed", "token_id", "token", "forced", "masked_top", "segment"}],
     "segments": [{"forced": bool, "text": str, "num_tokens": int, "first_step": int}],  # runs of forced/sampled
     "text": str, "num_steps": int, "num_forced": int, "num_states": int}
"""

from __future__ import annotations

from typing import Any

_STEP_KEYS = ("state", "num_allowed", "token_id", "token", "forced")


def constraint_data(source: Any) -> dict:
    """The view model of a constraint trace; ``source`` is a meta_info dict or the trace list itself."""
    trace = _trace_of(source)
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
    return {
        "steps": steps,
        "segments": segments,
        "text": "".join(s["token"] for s in steps),
        "num_steps": len(steps),
        "num_forced": sum(1 for s in steps if s["forced"]),
        "num_states": len({s["state"] for s in steps}),
    }


def _trace_of(source: Any) -> list:
    if isinstance(source, dict):
        if "constraint_trace" not in source:
            raise ValueError("this meta_info has no 'constraint_trace': the gen was not constrained "
                             "(pass regex=... or json_schema=...)")
        source = source["constraint_trace"]
    if not isinstance(source, (list, tuple)):
        raise ValueError(f"expected a constraint trace (list of steps) or a meta_info dict, got {type(source).__name__}")
    return list(source)
