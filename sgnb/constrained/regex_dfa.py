"""Regex -> character DFA (char_dfa.py) -> byte-level DFA.

Byte-level BPE tokens can end in the middle of a multi-byte UTF-8 character, so the token
index walks a DFA over bytes. Every character transition becomes a chain of UTF-8 bytes; a
class like `[^"]` (interegular's `anything_else`: every character the pattern does not name)
becomes every valid UTF-8 sequence of such characters, never an invalid one.

Construction per character state:
- its transitions form a piecewise-constant map from code points to target states
  (sorted disjoint "pieces" (lo, hi, target));
- each UTF-8 lead byte covers a code-point interval; a lead whose interval lies inside one
  piece gets a shared "uniform" continuation node (any valid continuation bytes, then target);
  a lead whose interval holds several pieces is split byte by byte (rare: only around
  characters the pattern names). Intermediate nodes are hash-consed, so equal ones are shared.

The result keeps only states reachable from the start that can reach an accepting state,
and compresses the 256 byte columns into equivalence classes.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
from sgnb.constrained.char_dfa import CharDFA, build_char_dfa
from sgnb.constrained.errors import ConstraintError
from sgnb.constrained.regex_parse import parse_regex

MAX_CODE_POINT = 0x10FFFF

# Lead-byte kinds: how many continuation bytes follow and which first continuation is valid.
_ASCII, _TWO, _THREE, _FOUR, _E0, _ED, _F0, _F4 = range(8)
_KIND_REMAINING = {_ASCII: 0, _TWO: 1, _THREE: 2, _FOUR: 3, _E0: 2, _ED: 2, _F0: 3, _F4: 3}
_KIND_FIRST_CONT = {_TWO: (0x80, 0xBF), _THREE: (0x80, 0xBF), _FOUR: (0x80, 0xBF),
                    _E0: (0xA0, 0xBF), _ED: (0x80, 0x9F), _F0: (0x90, 0xBF), _F4: (0x80, 0x8F)}


def _lead_table() -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """kind per byte (-1: not a lead) and per lead (kind, raw_base, valid_lo, valid_hi)."""
    kinds = np.full(256, -1, dtype=np.int64)
    info: list[tuple[int, int, int, int]] = [(-1, 0, 0, -1)] * 256
    for lead in range(256):
        if lead < 0x80:
            kind, base, lo, hi = _ASCII, lead, lead, lead
        elif 0xC2 <= lead <= 0xDF:
            base = (lead & 0x1F) << 6
            kind, lo, hi = _TWO, base, base + 0x3F
        elif 0xE0 <= lead <= 0xEF:
            base = (lead & 0x0F) << 12
            kind, lo, hi = _THREE, base, base + 0xFFF
            if lead == 0xE0:
                kind, lo = _E0, 0x800
            elif lead == 0xED:
                kind, hi = _ED, 0xD7FF
        elif 0xF0 <= lead <= 0xF4:
            base = (lead & 0x07) << 18
            kind, lo, hi = _FOUR, base, base + 0x3FFFF
            if lead == 0xF0:
                kind, lo = _F0, 0x10000
            elif lead == 0xF4:
                kind, hi = _F4, MAX_CODE_POINT
        else:
            continue
        kinds[lead] = kind
        info[lead] = (kind, base, lo, hi)
    return kinds, info


_LEAD_KINDS, _LEAD_INFO = _lead_table()


def _lead_of(code: int) -> int:
    if code < 0x80:
        return code
    if code < 0x800:
        return 0xC0 | (code >> 6)
    if code < 0x10000:
        return 0xE0 | (code >> 12)
    return 0xF0 | (code >> 18)


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


class _Builder:
    """Builds byte-level rows: character states first, then interned continuation nodes."""

    def __init__(self, num_char_states: int) -> None:
        self.rows: list[np.ndarray] = [None] * num_char_states  # type: ignore[list-item]
        self.interned: dict[object, int] = {}

    def _new(self, key: object, row: np.ndarray) -> int:
        node = self.interned.get(key)
        if node is None:
            node = len(self.rows)
            self.rows.append(row)
            self.interned[key] = node
        return node

    def uniform(self, remaining: int, target: int, first: tuple[int, int] = (0x80, 0xBF)) -> int:
        """Node accepting `remaining` valid continuation bytes, then going to `target`."""
        if remaining == 0:
            return target
        key = ("u", remaining, target, first)
        node = self.interned.get(key)
        if node is not None:
            return node
        row = np.full(256, -1, dtype=np.int32)
        row[first[0] : first[1] + 1] = self.uniform(remaining - 1, target)
        return self._new(key, row)

    def lead_target(self, lead: int, target: int) -> int:
        kind = _LEAD_KINDS[lead]
        remaining = _KIND_REMAINING[kind]
        if remaining == 0:
            return target
        return self.uniform(remaining, target, _KIND_FIRST_CONT[kind])

    def split(self, base: int, remaining: int, first: tuple[int, int], pieces: list) -> int:
        """Node for a byte prefix whose code points (base + suffix) hold several pieces."""
        row = np.full(256, -1, dtype=np.int32)
        shift = 6 * (remaining - 1)
        span = (1 << shift) - 1
        starts = [p[0] for p in pieces]
        for byte in range(first[0], first[1] + 1):
            lo = base + ((byte - 0x80) << shift)
            hi = lo + span
            k = max(bisect.bisect_right(starts, lo) - 1, 0)
            inside = []
            while k < len(pieces) and pieces[k][0] <= hi:
                if pieces[k][1] >= lo:
                    inside.append(pieces[k])
                k += 1
            if not inside:
                continue
            if len(inside) == 1 and inside[0][0] <= lo and inside[0][1] >= hi:
                row[byte] = self.uniform(remaining - 1, inside[0][2])
            else:
                row[byte] = self.split(lo, remaining - 1, (0x80, 0xBF), inside)
        return self._new(("s", row.tobytes()), row)

    def char_state_row(self, pieces: list) -> np.ndarray:
        """Byte row of a character state from its sorted, coalesced pieces."""
        row = np.full(256, -1, dtype=np.int32)
        mixed: set[int] = set()
        for lo, hi, target in pieces:
            if hi < 0x80:
                row[lo : hi + 1] = target
                continue
            first, last = _lead_of(lo), _lead_of(min(hi, MAX_CODE_POINT))
            for lead in (first, last):
                kind, _, valid_lo, valid_hi = _LEAD_INFO[lead]
                if kind >= 0 and not (lo <= valid_lo and valid_hi <= hi) and valid_lo <= valid_hi:
                    mixed.add(lead)
            inner_lo = first if first not in mixed else first + 1
            inner_hi = last if last not in mixed else last - 1
            if inner_lo > inner_hi:
                continue
            leads = np.arange(inner_lo, inner_hi + 1)
            leads = leads[_LEAD_KINDS[inner_lo : inner_hi + 1] >= 0]
            for lead in leads.tolist():
                if lead < 0x80:
                    row[lead] = target
                else:
                    row[lead] = self.lead_target(lead, target)
        for lead in mixed:
            kind, base, valid_lo, valid_hi = _LEAD_INFO[lead]
            inside = [p for p in pieces if p[0] <= valid_hi and p[1] >= valid_lo]
            inside = [(max(p[0], valid_lo), min(p[1], valid_hi), p[2]) for p in inside]
            if not inside:
                continue
            if len(inside) == 1 and inside[0][0] == valid_lo and inside[0][1] == valid_hi:
                row[lead] = self.lead_target(lead, inside[0][2])
            else:
                row[lead] = self.split(base, _KIND_REMAINING[kind], _KIND_FIRST_CONT[kind], inside)
        return row


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
    builder = _Builder(num_char_states)
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


def _refine(blocks: np.ndarray, transitions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One Moore step: new block ids from (block, successor blocks), hashed with `weights`.

    transitions == -1 indexes the appended sink entry (block -1) of `padded`."""
    padded = np.append(blocks, -1)
    successors = padded[transitions]  # [num_states, num_classes]
    with np.errstate(over="ignore"):
        signature = blocks * weights[0] + successors @ weights[1:]  # int64 arithmetic wraps
    return np.unique(signature, return_inverse=True)[1].reshape(-1)


def minimize(transitions: np.ndarray, accepting: np.ndarray, initial: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Merge equivalent states (Moore partition refinement, vectorized).

    Signatures are hashed into int64 with two random weight vectors; the final partition is
    verified exactly (every block's states must have identical successor blocks), and an
    exact row-unique refinement takes over if a hash collision ever slips through.
    States in transitions are all live, so -1 (no transition) is its own sink block.
    """
    num_states, num_classes = transitions.shape
    rng = np.random.default_rng(0x5EED)
    weights = [rng.integers(1, 1 << 62, size=num_classes + 1, dtype=np.int64) for _ in range(2)]
    blocks = np.unique(accepting, return_inverse=True)[1].reshape(-1).astype(np.int64)  # ids 0..k-1
    num_blocks = int(blocks.max()) + 1
    while True:
        first = _refine(blocks, transitions, weights[0])
        second = _refine(blocks, transitions, weights[1])
        combined = np.unique(first * (num_states + 1) + second, return_inverse=True)[1].reshape(-1)
        count = int(combined.max()) + 1
        if count == num_blocks:
            break
        blocks, num_blocks = combined, count
    exact = np.column_stack([blocks, np.append(blocks, -1)[transitions]])
    if len(np.unique(exact, axis=0)) != num_blocks:  # hash collision: refine exactly
        while True:
            rows = np.column_stack([blocks, np.append(blocks, -1)[transitions]])
            refined = np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1)
            if int(refined.max()) + 1 == num_blocks:
                break
            blocks, num_blocks = refined, int(refined.max()) + 1
    representative = np.zeros(num_blocks, dtype=np.int64)
    representative[blocks[::-1]] = np.arange(num_states)[::-1]  # lowest state id per block
    merged = transitions[representative]
    merged = np.where(merged >= 0, blocks[np.maximum(merged, 0)], -1).astype(np.int32)
    return merged, accepting[representative], int(blocks[initial])


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
