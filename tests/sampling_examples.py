"""One valid, non-default value per engine sampling field: each surface's test sends them and checks they arrive.

A new field in `SamplingParams` without a value here fails tests/engine/test_sampling_params.py, so every
surface test covers it from the start.
"""

from __future__ import annotations

EXAMPLE_VALUES = {
    "max_new_tokens": 3,
    "min_new_tokens": 1,
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 20,
    "min_p": 0.05,
    "frequency_penalty": 0.5,
    "presence_penalty": 0.25,
    "repetition_penalty": 1.3,
    "stop": ["\n\n"],
    "stop_token_ids": [13],
    "ignore_eos": True,
    "sampling_seed": 7,
    "regex": "[a-z ]+",
    "json_schema": '{"type": "integer"}',
    "ebnf": 'root ::= "red" | "blue"',
    "lark": 'start: "red" | "green"',
    "json_whitespace": "flexible",
    "jump_forward": False,
    "skip_special_tokens": False,
    "no_stop_trim": True,
}


def without(*names: str) -> dict:
    """The example values less `names`."""
    return {k: v for k, v in EXAMPLE_VALUES.items() if k not in names}


def with_constraint(name: str) -> dict:
    """The example values with one constraint field, `name` (the constraint fields exclude each other)."""
    from sgnb.engine.sampling_params import CONSTRAINT_FIELDS

    return without(*(other for other in CONSTRAINT_FIELDS if other != name))
