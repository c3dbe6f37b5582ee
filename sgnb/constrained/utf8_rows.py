"""Character transitions -> UTF-8 byte transitions.

Every character transition of a DFA state becomes a chain of UTF-8 bytes; a class like `[^"]`
(every character the pattern does not name) becomes every valid UTF-8 sequence of such
characters, never an invalid one (no overlongs, surrogates, or code points past U+10FFFF).

Per character state, the transitions form a piecewise-constant map from code points to target
states: sorted disjoint pieces (lo, hi, target). Each UTF-8 lead byte covers a code-point
interval; a lead whose interval lies inside one piece gets a shared "uniform" continuation
node (any valid continuation bytes, then the target); a lead whose interval holds several
pieces is split byte by byte (rare: only around characters the pattern names).
Intermediate nodes are hash-consed, so equal ones are shared.
"""

from __future__ import annotations

import bisect

import numpy as np

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


class Utf8RowBuilder:
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
