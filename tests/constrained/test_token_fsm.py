"""TokenFSM on the real SmolLM2 vocabulary: random token walks satisfy the regex."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgnb.constrained import ConstraintError, compile_regex
from tests.constrained.regex_strategies import check_walk, distances_to_accept, regexes, walk_fsm

PATTERNS = [
    r"\d{3}-\d{3}-\d{4}",
    r"((25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)",
    r"[A-Z][a-z]+ [A-Z][a-z]+",
    r"(yes|no|maybe)",
    r"-?\d+(\.\d+)?",
    r"[a-z0-9._]+@[a-z]+\.(com|org)",
    r"(é|è|ê)+x",
    r"日本語|中文|한국어",
    r'"[^"\\]{0,12}"',
    r".{1,6}",
    r"\S+ \S+",
    r"[\u4e00-\u9fff]{1,3}",
    r"\w+( \w+)*\.",
    r"(?i)hello world",
    r"[^a-z\s]{2,5}",
    r"\D\W?",
    r"(ab|a)(bc|c)*",
    r"\N{SNOWMAN}+\U0001F600?",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_random_walks_fullmatch_and_every_prefix_is_valid(pattern, vocab):
    fsm = compile_regex(pattern, vocab)
    dist = distances_to_accept(fsm)
    for seed in range(6):
        walk = walk_fsm(fsm, vocab, random.Random(seed), free_steps=seed * 4, dist=dist)
        check_walk(pattern, vocab, walk)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regexes(), seed=st.integers(0, 2**16), free_steps=st.integers(0, 25))
def test_random_regexes_random_walks_fullmatch(pattern, seed, free_steps, vocab):
    fsm = compile_regex(pattern, vocab)
    walk = walk_fsm(fsm, vocab, random.Random(seed), free_steps=free_steps)
    check_walk(pattern, vocab, walk)


def test_allowed_token_ids_sorted_int32_with_eos_only_when_accepting(vocab):
    fsm = compile_regex(r"ab?", vocab)
    eos = vocab.eos_token_ids[0]
    for state in range(fsm.num_states):
        ids = fsm.allowed_token_ids(state)
        assert ids.dtype == np.int32
        assert np.all(np.diff(ids) > 0)
        assert (eos in ids.tolist()) == fsm.is_accepting(state)
        assert not ids.flags.writeable
    start = fsm.initial_state
    assert not fsm.is_accepting(start)
    a_state = fsm.advance_bytes(start, b"a")
    assert fsm.is_accepting(a_state) and not fsm.is_finished(a_state)
    ab_state = fsm.advance_bytes(start, b"ab")
    assert fsm.is_finished(ab_state)
    assert fsm.allowed_token_ids(ab_state).tolist() == [eos]


def test_next_state_matches_token_bytes_and_rejects_others(vocab, tokenizer):
    fsm = compile_regex(r"[0-9]+(px|em)", vocab)
    start = fsm.initial_state
    twelve = tokenizer.convert_tokens_to_ids("1")
    state = fsm.next_state(start, twelve)
    assert state == fsm.advance_bytes(start, b"1") >= 0
    letter = tokenizer.convert_tokens_to_ids("px")
    assert fsm.next_state(start, letter) == -1
    assert fsm.is_accepting(fsm.next_state(state, letter))
    assert fsm.next_state(start, vocab.eos_token_ids[0]) == -1
    assert fsm.advance_bytes(start, b"12p") >= 0 and fsm.advance_bytes(start, b"12q") == -1
    assert fsm.advance_tokens(start, [twelve, letter]) == fsm.advance_bytes(start, b"1px")
    mask = fsm.allowed_mask(start)
    assert mask.shape == (vocab.vocab_size,) and mask.sum() == fsm.num_allowed(start)
    assert np.array_equal(np.flatnonzero(mask), fsm.allowed_token_ids(start))


def test_special_tokens_are_never_allowed(vocab, tokenizer):
    fsm = compile_regex(r"(?s:.){0,3}", vocab)
    specials = set(vocab.special_token_ids) - set(vocab.eos_token_ids)
    assert specials, "SmolLM2 has special tokens besides EOS"
    for state in range(fsm.num_states):
        assert not specials & set(fsm.allowed_token_ids(state).tolist())


def test_invalid_state_is_a_clear_error(vocab):
    fsm = compile_regex("abc", vocab)
    with pytest.raises(ValueError, match="invalid FSM state 99"):
        fsm.allowed_token_ids(99)
    with pytest.raises(ValueError, match="invalid FSM state -1"):
        fsm.next_state(-1, 5)


def test_stats_describe_the_compiled_fsm(vocab):
    fsm = compile_regex(r"[a-c]{2}", vocab, use_disk_cache=False)
    assert fsm.stats["num_states"] == fsm.num_states
    assert fsm.stats["num_edges"] == sum(fsm.num_allowed(s) for s in range(fsm.num_states))
    assert fsm.stats["compile_seconds"] > 0


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("a(b", "invalid regex"),
        ("a{3,1}", "invalid regex"),
        ("(?<=a)b", "lookahead/lookbehind"),
        ("a(?=b)b", "lookahead/lookbehind"),
        (r"(a)\1", "Group references"),
        ("^abc$", "unsupported regex feature"),
        (r"\bword", "unsupported regex feature"),
        ("a++", "possessive"),
        (r"a{0}b[^\s\S]", "matches no string"),
        (r"[^\x00-\U0010FFFF]", "matches no string"),
    ],
)
def test_bad_regexes_raise_constraint_error_naming_the_pattern(pattern, message, vocab):
    with pytest.raises(ConstraintError, match=re.escape(message)) as info:
        compile_regex(pattern, vocab)
    assert repr(pattern) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_non_string_pattern_is_rejected(vocab):
    with pytest.raises(ConstraintError, match="must be a str"):
        compile_regex(123, vocab)  # type: ignore[arg-type]
