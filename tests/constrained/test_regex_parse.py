"""Python `re` semantics of the regex front end: what the DFA accepts, `re` accepts."""

from __future__ import annotations

import re

import pytest

from sgnb.constrained import ConstraintError
from sgnb.constrained.regex_dfa import regex_to_byte_dfa
from sgnb.constrained.regex_parse import UNICODE_SPACE

# ASCII, Latin-1 and Latin Extended-A/B, plus Unicode digits, spaces, letters with special
# case mappings (Kelvin sign, long s, dotted/dotless i, titlecase digraphs, sigma forms), CJK, emoji
PROBES = [chr(c) for c in range(0x250)] + list(
    "٣३\u2003\x85\u3000\u2028жЖ日本😀\u212a\u017f\u0130\u0131ǅǄǆ\ufb00ßẞΣσςΩω\u2126"
)


def _accepts(dfa, text: str) -> bool:
    state = dfa.walk(dfa.initial, text.encode())
    return state >= 0 and bool(dfa.accepting[state])


def test_unicode_space_is_exactly_pythons_whitespace():
    every = {chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and chr(c).isspace()}
    assert UNICODE_SPACE == every
    assert all(re.fullmatch(r"\s", c) for c in every)


@pytest.mark.parametrize(
    "pattern",
    [r"\D", r"\W", r"\S", r"[^\d]", r"[^\w]", r"[^\s]", r"[^\d\s]", r"[\D\S]", r"[^a-z\d]", ".", r"\d", r"\w",
     r"\s", r"[\w-]", r"[^\w-]", r"[^\d-]", r"(?i)[^k]", r"(?i)k", r"(?i)[^s]", r"(?i)[a-z]", r"(?i)ß",
     r"(?i)[^ß]", r"(?i:[^σ])", r"(?i)\w", r"(?i)[^i]", r"(?i)ǅ", r"(?s:.)", r"[^\u00e0-\u00ff]"],
)
def test_every_accepted_character_matches_in_python(pattern):
    dfa = regex_to_byte_dfa(pattern)
    unsound = [c for c in PROBES if _accepts(dfa, c) and not re.fullmatch(pattern, c)]
    assert not unsound


@pytest.mark.parametrize(
    "pattern",
    [r"\D", r"\S", r"[^\d]", r"[^\s]", r"(?i)[^k]", r"(?i)k", r"(?i)[^s]", r"(?i)[a-z]", r"(?i)ß", r"(?i)[^ß]",
     r"(?i:[^σ])", r"(?i)[^i]", ".", r"[^\u00e0-\u00ff]"],
)
def test_negated_and_case_insensitive_classes_are_exact(pattern):
    dfa = regex_to_byte_dfa(pattern)
    assert [c for c in PROBES if _accepts(dfa, c)] == [c for c in PROBES if re.fullmatch(pattern, c)]


@pytest.mark.parametrize("pattern", [r"\d", r"\w", r"\s", r"\W"])
def test_positive_class_escapes_mean_their_ascii_members(pattern):
    dfa = regex_to_byte_dfa(pattern)
    ascii_chars = [chr(c) for c in range(128) if c not in range(0x1C, 0x20)]  # \x1c-\x1f: see UNICODE_SPACE
    assert [c for c in ascii_chars if _accepts(dfa, c)] == [c for c in ascii_chars if re.fullmatch(pattern, c)]
    assert not _accepts(dfa, "٣") and not _accepts(dfa, "ж")
    assert _accepts(dfa, "\x1e") == (pattern == r"\W")


@pytest.mark.parametrize(
    "pattern, text, matches",
    [
        (r"[]a]+", "]a]", True),  # a leading ']' is a literal in Python
        (r"[^]a]", "b", True),
        (r"[^]a]", "]", False),
        (r"a{}", "a{}", True),  # '{' starting no {m,n} is literal
        (r"a{1", "a{1", True),
        (r"a{,2}", "aa", True),
        (r"\u00e9\U0001F600\N{SNOWMAN}", "é😀☃", True),
        (r"[\u0061-\u0063]+", "abc", True),
        (r"x(?#comment)y", "xy", True),
        (r"(?i)hello", "HeLLo", True),
        (r"a(?i:b)c", "aBc", True),
        (r"a(?i:b)c", "ABc", False),
        (r"a+?b", "aab", True),
        (r"[\x00-\U0010FFFF]x", "日x", True),
    ],
)
def test_python_syntax_corner_cases(pattern, text, matches):
    assert bool(re.fullmatch(pattern, text)) == matches
    assert _accepts(regex_to_byte_dfa(pattern), text) == matches


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("(", "invalid regex"),
        ("[a-", "invalid regex"),
        ("a**", "invalid regex"),
        ("(?P<x>a)(?P=x)", "Group references"),
        (r"(a)\1", "Group references"),
        ("(?=a)a", "lookahead/lookbehind"),
        ("(?!a)b", "lookahead/lookbehind"),
        ("(?<!a)b", "lookahead/lookbehind"),
        ("a$", "unsupported regex feature"),
        (r"\Aa", "unsupported regex feature"),
        ("a*+", "possessive"),
        ("(?>ab)", "unsupported regex syntax"),
        ("(?x)a b", "not implemented"),
        ("(a)?(?(1)b|c)", "Conditional"),
    ],
)
def test_unsupported_and_invalid_regexes_are_clear_errors(pattern, message):
    with pytest.raises(ConstraintError, match=re.escape(message)) as info:
        regex_to_byte_dfa(pattern)
    assert repr(pattern) in str(info.value)
