"""Type shortcuts (gen_int / gen_string / dtype=) and choices."""

from __future__ import annotations

import json
import random
import re

import pytest

from sgnb.constrained import ConstraintError, choices_to_regex, compile_regex, type_to_regex
from tests.constrained.regex_strategies import check_walk, walk_fsm

PARSERS = {int: int, float: float, bool: {"True": True, "False": False}.__getitem__, str: json.loads}


@pytest.mark.parametrize("dtype", [int, float, bool, str])
def test_type_regexes_produce_parseable_values(dtype, vocab):
    pattern = type_to_regex(dtype)
    assert type_to_regex(dtype.__name__) == pattern
    fsm = compile_regex(pattern, vocab)
    for seed in range(6):
        text = check_walk(pattern, vocab, walk_fsm(fsm, vocab, random.Random(seed), free_steps=seed * 3))
        value = PARSERS[dtype](text)
        assert isinstance(value, dtype)


@pytest.mark.parametrize(
    "dtype, good, bad",
    [
        (int, ["0", "-12", "407"], ["01", "+1", "1.0", "", "-"]),
        (float, ["0", "-1.5", "2e10", "3.25E-2"], [".5", "1.", "e5", "--1"]),
        (bool, ["True", "False"], ["true", "1", "TRUE"]),
        (str, ['""', '"a b"', '"q\\"uote"', '"\\u00e9"'], ['"', '"a"b"', "'a'"]),
    ],
)
def test_type_regex_languages(dtype, good, bad):
    pattern = type_to_regex(dtype)
    assert all(re.fullmatch(pattern, g) for g in good)
    assert not any(re.fullmatch(pattern, b) for b in bad)


def test_choices_are_escaped_alternatives(vocab):
    choices = ["a.b", "(x|y)", "日本", "C++", "new\nline", "a.b"]
    pattern = choices_to_regex(choices)
    assert [c for c in ["a.b", "(x|y)", "日本", "C++", "new\nline", "aXb", "x", "C"] if re.fullmatch(pattern, c)] == \
        ["a.b", "(x|y)", "日本", "C++", "new\nline"]
    fsm = compile_regex(pattern, vocab)
    seen = set()
    for seed in range(20):
        seen.add(check_walk(pattern, vocab, walk_fsm(fsm, vocab, random.Random(seed), free_steps=2)))
    assert seen <= set(choices) and len(seen) >= 3


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: type_to_regex(list), "unsupported dtype"),
        (lambda: type_to_regex("decimal"), "unsupported dtype"),
        (lambda: choices_to_regex([]), "must not be empty"),
        (lambda: choices_to_regex("abc"), "must be a list of strings"),
        (lambda: choices_to_regex(["a", 1]), "every choice must be a str"),
    ],
)
def test_bad_types_and_choices_are_clear_errors(call, message):
    with pytest.raises(ConstraintError, match=message):
        call()
