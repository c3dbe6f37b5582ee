"""Which rules of a Lark grammar can finish: the check behind refusing grammars no output satisfies."""

from __future__ import annotations

import pytest

from sgnb.constrained.lark_rules import rules_that_cannot_finish

ARITHMETIC = """
start: expr
expr: term (("+" | "-") term)*
term: factor (("*" | "/") factor)*
factor: NUMBER | "(" expr ")"
NUMBER: /[0-9]+/   // digits
%ignore " "
"""


@pytest.mark.parametrize("grammar", [
    ARITHMETIC,
    'start: list\nlist: "[" [item ("," item)*] "]"\nitem: list | /[0-9]+/',
    'start: a\na: "(" a ")" | ""',
    'start: a~0..3 "x"\na: "y" a',                      # a never finishes, but zero of it is allowed
    'start: "x" a? | "y"\na: "z" a',                     # an optional recursion
    'start: %json {"type": "object"}',
    '?start: "a"\n    | "b" start',                      # alternatives continued on the next line
])
def test_grammars_with_a_finite_expansion_of_start_pass(grammar):
    stuck = rules_that_cannot_finish(grammar)
    assert stuck is not None and "start" not in stuck


@pytest.mark.parametrize("grammar, expected", [
    ('start: foo\nfoo: "a" foo', ["start", "foo"]),
    ('start: a | b\na: "(" b ")"\nb: "[" a "]"', ["start", "a", "b"]),      # mutual recursion, no way out
    ('start: "x" a+\na: "y" a', ["start", "a"]),
    ('start: a~2\na: "(" a ")"', ["start", "a"]),
])
def test_a_start_that_never_finishes_is_named_first(grammar, expected):
    assert rules_that_cannot_finish(grammar) == expected


def test_unused_rules_that_never_finish_are_listed_without_start():
    assert rules_that_cannot_finish('start: "x" | a\na: "y" a') == ["a"]


def test_syntax_it_does_not_follow_gives_no_verdict():
    assert rules_that_cannot_finish('start: _sep{"a", ","}\n_sep{x, sep}: x (sep x)*') is None
