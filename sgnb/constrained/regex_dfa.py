"""Regex -> character DFA (char_dfa.py) -> byte-level DFA (utf8_rows.py), trimmed and minimized.

Byte-level BPE tokens can end in the middle of a multi-byte UTF-8 character, so the token
index walks a DFA over bytes. The result keeps only states reachable from the start that can
reach an accepting state, merges equivalent states, and compresses the 256 byte columns into
equivalence classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgnb.constrained.char_dfa import CharDFA, build_char_dfa
from sgnb.constrained.dfa_minimize import minimize
from sgnb.constrained.errors import ConstraintError
from sgnb.constrained.regex_parse import parse_regex
from sgnb.constrained.utf8_rows import Utf8RowBuilder


@dataclass(frozen=True, slots=True)
class ByteDFA:
    """A DFA over bytes; every state is reachable and can reach an accepting state.

    transitions: [num_states, num_classes] int32, -1 = no transition.
    byte_classes: [256] int32, the column of `transitions` for each byte.
    accepting: [num_states] bool.
    """

    transitions: np.ndarray
    byte_classes: np.ndarray
    accepting: np.ndarray
    initial: int

    @property
    def num_states(self) -> int:
        return int(self.transitions.shape[0])

    def step(self, state: int, byte: int) -> int:
        return int(self.transitions[state, self.byte_classes[byte]])

    def walk(self, state: int, data: bytes) -> int:
        """State after `data` from `state`, or -1 if some byte is not allowed."""
        transitions, classes = self.transitions, self.byte_classes
        for byte in data:
            state = int(transitions[state, classes[byte]])
            if state < 0:
                return -1
        return state


def reach(src: np.ndarray, dst: np.ndarray, num_states: int, seeds: np.ndarray) -> np.ndarray:
    """Mask of states reachable from `seeds` along the edges src -> dst (frontier BFS)."""
    order = np.argsort(src, kind="stable")
    ptr = np.zeros(num_states + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=num_states), out=ptr[1:])
    targets = dst[order]
    seen = np.zeros(num_states, dtype=bool)
    frontier = np.unique(seeds)
    seen[frontier] = True
    while frontier.size:
        counts = ptr[frontier + 1] - ptr[frontier]
        total = int(counts.sum())
        if total == 0:
            break
        offsets = np.repeat(ptr[frontier] - (np.cumsum(counts) - counts), counts) + np.arange(total)
        nxt = np.unique(targets[offsets])
        frontier = nxt[~seen[nxt]]
        seen[frontier] = True
    return seen


def char_dfa_to_byte_dfa(char_dfa: CharDFA, pattern: str) -> ByteDFA:
    """Convert a character DFA into a trimmed, minimized, class-compressed ByteDFA."""
    num_char_states = len(char_dfa.transitions)
    builder = Utf8RowBuilder(num_char_states)
    atoms = char_dfa.atoms
    for state, row in enumerate(char_dfa.transitions):
        pieces = sorted((lo, hi, target) for atom, target in row.items() for lo, hi in atoms[atom])
        merged: list[tuple[int, int, int]] = []
        for lo, hi, target in pieces:
            if merged and merged[-1][1] + 1 == lo and merged[-1][2] == target:
                merged[-1] = (merged[-1][0], hi, target)
            else:
                merged.append((lo, hi, target))
        builder.rows[state] = builder.char_state_row(merged)

    table = np.stack(builder.rows)  # [num_states, 256]
    num_states = table.shape[0]
    accepting = np.zeros(num_states, dtype=bool)
    accepting[:num_char_states] = char_dfa.accepting
    initial = char_dfa.initial

    has_edge = table >= 0
    src = np.nonzero(has_edge)[0]
    dst = table[has_edge]
    pairs = np.unique(src.astype(np.int64) * num_states + dst)
    pair_src, pair_dst = pairs // num_states, pairs % num_states
    keep = reach(pair_src, pair_dst, num_states, np.array([initial]))
    keep &= reach(pair_dst, pair_src, num_states, np.flatnonzero(accepting))  # can still accept
    if not keep[initial]:
        raise ConstraintError(f"regex {pattern!r} matches no string (its language is empty)")

    new_id = np.cumsum(keep) - 1
    table = table[keep]
    valid = table >= 0
    valid[valid] = keep[table[valid]]
    table = np.where(valid, new_id[np.maximum(table, 0)], -1).astype(np.int32)

    columns, byte_classes = np.unique(table.T, axis=0, return_inverse=True)
    transitions, accepting, initial = minimize(np.ascontiguousarray(columns.T), accepting[keep], int(new_id[initial]))
    columns, merged = np.unique(transitions.T, axis=0, return_inverse=True)
    return ByteDFA(
        transitions=np.ascontiguousarray(columns.T, dtype=np.int32),
        byte_classes=merged.reshape(-1)[byte_classes.reshape(-1)].astype(np.int32),
        accepting=accepting,
        initial=initial,
    )


def regex_to_byte_dfa(pattern: str) -> ByteDFA:
    """Compile a Python regex (fullmatch semantics) into a ByteDFA; ConstraintError if bad."""
    return char_dfa_to_byte_dfa(build_char_dfa(parse_regex(pattern), pattern), pattern)


def dfas_intersect(a: ByteDFA, b: ByteDFA) -> bool:
    """Whether some byte string is accepted by both DFAs (product BFS over state pairs)."""
    num_b = b.num_states
    byte_range = np.arange(256)
    a_cols, b_cols = a.byte_classes[byte_range], b.byte_classes[byte_range]
    seen = {a.initial * num_b + b.initial}
    frontier = np.array([a.initial * num_b + b.initial], dtype=np.int64)
    while frontier.size:
        sa, sb = frontier // num_b, frontier % num_b
        if (a.accepting[sa] & b.accepting[sb]).any():
            return True
        na = a.transitions[sa][:, a_cols]  # [frontier, 256]
        nb = b.transitions[sb][:, b_cols]
        ok = (na >= 0) & (nb >= 0)
        pairs = np.unique(na[ok].astype(np.int64) * num_b + nb[ok])
        fresh = [p for p in pairs.tolist() if p not in seen]
        seen.update(fresh)
        frontier = np.array(fresh, dtype=np.int64)
    return False
