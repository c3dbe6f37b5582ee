"""Reusable pieces for constrained-decoding tests: random regexes and FSM walkers.

`walk_fsm` drives a TokenFSM with a pluggable chooser: random allowed tokens for a number of
free steps, then steering to an accepting state along shortest token paths. The model-driven
tests swap the chooser for the sampler. `check_token_prefixes` verifies a walk with the
third-party `regex` module (partial matching), independent of the FSM compiler.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import regex as partial_re
from hypothesis import strategies as st

from sgnb.constrained import TokenFSM, TokenVocab

# chooser(state, allowed_ids, must_reduce_distance_ids) -> token id
Chooser = Callable[[int, np.ndarray, np.ndarray], int]


def distances_to_accept(fsm: TokenFSM) -> np.ndarray:
    """Token steps from each state to an accepting state (inf where impossible)."""
    dist = np.full(fsm.num_states, np.inf)
    reverse: list[list[int]] = [[] for _ in range(fsm.num_states)]
    for state in range(fsm.num_states):
        for nxt in np.unique(fsm.allowed_next_states(state)).tolist():
            reverse[nxt].append(state)
    frontier = [s for s in range(fsm.num_states) if fsm.is_accepting(s)]
    for s in frontier:
        dist[s] = 0
    while frontier:
        nxt_frontier = []
        for s in frontier:
            for p in reverse[s]:
                if dist[p] == np.inf:
                    dist[p] = dist[s] + 1
                    nxt_frontier.append(p)
        frontier = nxt_frontier
    return dist


@dataclass
class Walk:
    token_ids: list[int] = field(default_factory=list)
    states: list[int] = field(default_factory=list)  # state before each token, then the final state
    ended_with_eos: bool = False


def random_chooser(rng: random.Random) -> Chooser:
    def choose(state: int, allowed: np.ndarray, steering: np.ndarray) -> int:
        pool = steering if steering.size else allowed
        return int(pool[rng.randrange(pool.size)])

    return choose


def walk_fsm(fsm: TokenFSM, vocab: TokenVocab, rng: random.Random, *, free_steps: int = 30,
             max_steps: int = 400, chooser: Chooser | None = None,
             dist: np.ndarray | None = None) -> Walk:
    """Emit tokens until EOS: `free_steps` unrestricted choices, then only tokens that get
    closer to acceptance (EOS as soon as accepting)."""
    dist = distances_to_accept(fsm) if dist is None else dist
    eos = set(vocab.eos_token_ids)
    walk = Walk()
    state = fsm.initial_state
    for step in range(max_steps):
        allowed = fsm.allowed_token_ids(state)
        assert allowed.size, f"state {state} allows no token"
        steering = np.zeros(0, dtype=np.int32)
        if step >= free_steps:
            if fsm.is_accepting(state):
                steering = np.array(sorted(eos & set(allowed.tolist())), dtype=np.int32)
            else:
                nexts = fsm.allowed_next_states(state)
                steering = allowed[dist[nexts] < dist[state]]
        chooser = chooser or random_chooser(rng)
        token = chooser(state, allowed, steering)
        walk.states.append(state)
        if token in eos:
            walk.ended_with_eos = True
            assert fsm.is_accepting(state), "EOS was allowed in a non-accepting state"
            assert fsm.next_state(state, token) == state
            return walk
        nxt = fsm.next_state(state, token)
        assert nxt >= 0, f"allowed token {token} has no next state"
        walk.token_ids.append(token)
        state = nxt
    walk.states.append(state)
    return walk


def complete_text(data: bytes) -> str:
    """The longest prefix of data that decodes as UTF-8."""
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        try:
            return data[:cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    raise AssertionError(f"not UTF-8 even after dropping a partial character: {data[-8:]!r}")


def check_token_prefixes(pattern: str, vocab: TokenVocab, token_ids: list[int]) -> None:
    """Every token-level prefix is (after dropping a partial character) a prefix of a match."""
    compiled = partial_re.compile(pattern)
    data = b""
    for token in token_ids:
        data += vocab.token_bytes[token]
        text = complete_text(data)
        assert compiled.fullmatch(text, partial=True), f"{text!r} is not a prefix of a match of {pattern!r}"


def check_walk(pattern: str, vocab: TokenVocab, walk: Walk) -> str:
    """Asserts the walk's text fullmatches pattern (walk ended with EOS) and prefixes are valid."""
    check_token_prefixes(pattern, vocab, walk.token_ids)
    assert walk.ended_with_eos, "walk did not reach EOS"
    text = vocab.decode_bytes(walk.token_ids).decode("utf-8")
    assert re.fullmatch(pattern, text), f"{text!r} does not fullmatch {pattern!r}"
    return text


# --- random regexes from a grammar of regex features ---------------------------------------

_LITERALS = ["a", "b", "z", "0", "7", " ", "-", "_", "é", "日本", "ü", "\\.", "\\?", "\\(", "x", "Q"]
_CLASSES = ["[abc]", "[a-f0-9]", "[^\"]", "[^a-z]", "[^\\n]", "\\d", "\\w", "\\s", "\\D", "\\W", "\\S",
            ".", "[éè]", "[^é]", "[日月]", "[\\d_]", "[^\\d\\s]", "[A-Z]"]
_QUANTIFIERS = ["?", "*", "+", "{2}", "{1,3}", "{0,2}", "{2,}"]


def regexes(max_leaves: int = 6) -> st.SearchStrategy[str]:
    """Python regexes built from literals, classes, negated classes, alternation, groups,
    ?, *, +, {m,n}, and Unicode literals; always valid, never empty-language."""
    atoms = st.sampled_from(_LITERALS) | st.sampled_from(_CLASSES)

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.lists(children, min_size=2, max_size=3).map("".join),
            st.lists(children, min_size=2, max_size=3).map(lambda xs: "(?:" + "|".join(xs) + ")"),
            st.tuples(children, st.sampled_from(_QUANTIFIERS)).map(lambda t: f"(?:{t[0]}){t[1]}"),
            children.map(lambda x: f"({x})"),
        )

    return st.recursive(atoms, extend, max_leaves=max_leaves)
