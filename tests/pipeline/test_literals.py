"""Python literals written by the export code generator read back as the exact text."""

from __future__ import annotations

import pytest

from sgnb.pipeline.literals import MAX_INLINE, fstring, is_literal_positive_int, literal_len, py_string, string_lines

TEXTS = ['plain', 'say "hi"', "it's", "both ' and \"", "back\\slash", "tab\tnew\nline\rret", "bell\x07 del\x7f",
         "{braces}", "ünïcode ✓"]


@pytest.mark.parametrize("text", TEXTS)
def test_a_string_literal_evaluates_to_its_text(text):
    assert eval(py_string(text)) == text  # noqa: S307 - the literal under test
    assert eval("f" + py_string(text, is_fstring=True)) == text  # noqa: S307


def test_single_quotes_only_when_they_avoid_escapes():
    assert py_string('say "hi"') == "'say \"hi\"'"
    assert py_string("it's") == '"it\'s"'
    assert py_string("both ' and \"") == '"both \' and \\""'


def test_an_fstring_interpolates_inline_code_and_keeps_braces_literal():
    code = fstring([("text", 'Dear "{x}" '), ("inline", "name"), ("text", "!")])
    assert code.startswith("f")
    assert eval(code, {"name": "Ann"}) == 'Dear "{x}" Ann!'  # noqa: S307
    assert fstring([("text", "a"), ("text", "b")]) == '"ab"'  # no inline code: a plain literal


def test_long_text_becomes_one_literal_per_line():
    segments = [("text", "first line of a long prompt\n"), ("inline", "x"), ("text", " second line\n" * 5)]
    lines = string_lines(segments)
    assert len(lines) == 6
    expected = "first line of a long prompt\nX" + " second line\n" * 5
    assert eval("".join(lines), {"x": "X"}) == expected  # noqa: S307
    assert string_lines([("text", "short\ntext")]) == ['"short\\ntext"']
    assert len(string_lines([("text", "y" * (MAX_INLINE + 10))])) == 1  # one line of text is never split


def test_literal_sizes_are_read_only_from_literals():
    assert literal_len("['a', 'b', 'c']") == 3
    assert literal_len("('a',)") == 1
    assert literal_len("[*xs, 'a']") == 0
    assert literal_len("names") == 0
    assert literal_len("not python(") == 0
    assert is_literal_positive_int("3")
    assert not is_literal_positive_int("0")
    assert not is_literal_positive_int("True")
    assert not is_literal_positive_int("n")
