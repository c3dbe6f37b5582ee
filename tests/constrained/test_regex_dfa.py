"""The byte-level DFA: UTF-8 handling, anything_else, minimization, intersection."""

from __future__ import annotations

import random
import re

import pytest

from sgnb.constrained import ConstraintError
from sgnb.constrained.regex_dfa import dfas_intersect, regex_to_byte_dfa


def _accepts(dfa, data: bytes) -> bool:
    state = dfa.walk(dfa.initial, data)
    return state >= 0 and bool(dfa.accepting[state])


def test_negated_class_allows_every_other_valid_utf8_sequence():
    dfa = regex_to_byte_dfa(r'[^"]')
    for code in [*range(0x80), 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF]:
        assert _accepts(dfa, chr(code).encode()) == (chr(code) != '"')


@pytest.mark.parametrize(
    "data",
    [b"\x80", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf0\x80\x80\x80",
     b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\xc3", b"\xe6\x97"],
)
def test_invalid_or_incomplete_utf8_is_never_accepted(data):
    for pattern in (r"[^a]", r"(?s:.)", r"\S", r"[^\d\s]+"):
        assert not _accepts(regex_to_byte_dfa(pattern), data)


def test_multibyte_literals_become_byte_chains():
    dfa = regex_to_byte_dfa(r"(é|è)日本")
    assert _accepts(dfa, "é日本".encode()) and _accepts(dfa, "è日本".encode())
    middle = dfa.walk(dfa.initial, b"\xc3")  # é and è share their lead byte
    assert middle >= 0 and not dfa.accepting[middle]
    assert dfa.walk(middle, b"\xa9") >= 0 and dfa.walk(middle, b"\xa8") >= 0 and dfa.walk(middle, b"\xaa") < 0


def test_language_matches_python_on_random_strings():
    rng = random.Random(7)
    alphabet = ["a", "b", "c", "é", "日", "-", "0", " ", '"']
    for pattern in [r"(a|b)*c", r"[^a-c]+", r"(ab|a)(bc|c)*", r"[é日]{1,3}-?\d?", r'"[^"]*"', r"(?:a|é)+?b?"]:
        dfa = regex_to_byte_dfa(pattern)
        for _ in range(300):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
            assert _accepts(dfa, text.encode()) == bool(re.fullmatch(pattern, text)), (pattern, text)


@pytest.mark.parametrize(
    "pattern, num_states",
    [("(?:ab|ab)c", 4), ("(?:a|b)(?:a|b)", 3), ("(?:x[0-9]|y[0-9])z", 4), ('"[a-z]*"(?:,"[a-z]*")?', 6),
     # 6 character states + per string content state 7 UTF-8 continuation states
     # (after a 2-, 3-, 4-byte lead, the E0/ED/F0/F4 leads' restricted second bytes, and shared tails)
     ('"[^"]*"(?:,"[^"]*")?', 6 + 2 * 7)],
)
def test_equivalent_states_are_merged(pattern, num_states):
    assert regex_to_byte_dfa(pattern).num_states == num_states


def test_empty_language_is_an_error():
    with pytest.raises(ConstraintError, match="matches no string"):
        regex_to_byte_dfa(r"ab[^\s\S]")


def test_intersection_emptiness():
    assert dfas_intersect(regex_to_byte_dfa("[a-c]+"), regex_to_byte_dfa("c[0-9]?"))
    assert not dfas_intersect(regex_to_byte_dfa("[a-c]+"), regex_to_byte_dfa("[0-9]+"))
    assert dfas_intersect(regex_to_byte_dfa("é+"), regex_to_byte_dfa("[^a]{2}"))
    assert not dfas_intersect(regex_to_byte_dfa('"kind":"a".*'), regex_to_byte_dfa('"kind":"b".*'))
