"""Regexes for SGLang's typed generation (`gen_int`, `gen_string`, `dtype=`) and `choices`."""

from __future__ import annotations

from collections.abc import Sequence

from sgnb.constrained.errors import ConstraintError
from sgnb.constrained.json_regex import INTEGER, NUMBER, STRING
from sgnb.constrained.regex_text import escape_literal

# int()/float()-parseable numbers; Python's bool spelling; a JSON string literal (json.loads-able).
INT_REGEX = INTEGER
FLOAT_REGEX = NUMBER
BOOL_REGEX = "(?:True|False)"
STR_REGEX = STRING

_BY_NAME = {
    "int": INT_REGEX, "integer": INT_REGEX,
    "float": FLOAT_REGEX, "number": FLOAT_REGEX,
    "bool": BOOL_REGEX, "boolean": BOOL_REGEX,
    "str": STR_REGEX, "string": STR_REGEX,
}


def type_to_regex(dtype: type | str) -> str:
    """Regex for dtype: int, float, bool, str (the types or their names)."""
    name = dtype.__name__ if isinstance(dtype, type) else dtype
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ConstraintError(f"unsupported dtype {dtype!r}: expected int, float, bool or str")
    return _BY_NAME[name]


def choices_to_regex(choices: Sequence[str]) -> str:
    """Regex matching exactly one of the given strings (escaped, order kept, duplicates dropped)."""
    if isinstance(choices, str) or not isinstance(choices, Sequence):
        raise ConstraintError(f"choices must be a list of strings, got {type(choices).__name__}")
    if not choices:
        raise ConstraintError("choices must not be empty")
    for choice in choices:
        if not isinstance(choice, str):
            raise ConstraintError(f"every choice must be a str, got {choice!r}")
    options = [escape_literal(c) for c in dict.fromkeys(choices)]
    return options[0] if len(options) == 1 else "(?:" + "|".join(options) + ")"
