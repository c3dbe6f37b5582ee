"""Parsed regex -> character-level DFA (Glushkov position automaton + subset construction).

interegular parses the pattern (regex_parse.py); this module builds the automaton itself,
because interegular's FSM operations look states up in a list (quadratic time) and grow
large JSON-schema regexes slowly.

Positions: every character-class occurrence in the pattern, after expanding counted
repetitions (`X{2,4}` = X X (X (X)?)?, nested so the copies never overlap). The standard
nullable/first/last/follow sets give an epsilon-free NFA; subset construction over
"atoms" (the code-point sets no class distinguishes) gives the DFA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from interegular.patterns import Pattern, REFlags, _CharGroup, _Concatenation, _Repeated

from sgnb.constrained.errors import ConstraintError

MAX_CODE_POINT = 0x10FFFF
MAX_POSITIONS = 200_000
MAX_STATES = 200_000


@dataclass(frozen=True, slots=True)
class CharDFA:
    """A DFA whose symbols are atoms: disjoint code-point sets, each a list of [lo, hi]."""

    atoms: list[list[tuple[int, int]]]
    transitions: list[dict[int, int]]  # per state: atom -> next state
    accepting: list[bool]
    initial: int = 0


class _Glushkov:
    def __init__(self, pattern_text: str) -> None:
        self.pattern_text = pattern_text
        self.position_charset: list[int] = []  # charset id of each position
        self.follow: list[set[int]] = []
        self.charset_ids: dict[tuple[frozenset, bool], int] = {}

    def _position(self, chars: frozenset, negated: bool) -> int:
        key = (chars, negated)
        charset = self.charset_ids.setdefault(key, len(self.charset_ids))
        if len(self.position_charset) >= MAX_POSITIONS:
            raise ConstraintError(f"regex {self.pattern_text!r} is too large (over {MAX_POSITIONS} positions "
                                  "after expanding repetitions)")
        self.position_charset.append(charset)
        self.follow.append(set())
        return len(self.position_charset) - 1

    def _concat(self, a: tuple, b: tuple) -> tuple:
        a_null, a_first, a_last = a
        b_null, b_first, b_last = b
        for p in a_last:
            self.follow[p] |= b_first
        first = a_first | b_first if a_null else a_first
        last = b_last | a_last if b_null else b_last
        return a_null and b_null, first, last

    def build(self, node, dotall: bool) -> tuple[bool, set[int], set[int]]:
        """(nullable, first, last) of node; fills follow sets."""
        if isinstance(node, Pattern):
            active = (dotall or bool(node.added_flags & REFlags.S)) and not node.removed_flags & REFlags.S
            nullable, first, last = False, set(), set()
            for option in node.options:
                n, f, l = self.build(option, active)
                nullable, first, last = nullable or n, first | f, last | l
            return nullable, first, last
        if isinstance(node, _Concatenation):
            result: tuple = (True, set(), set())
            for part in node.parts:
                result = self._concat(result, self.build(part, dotall))
            return result
        if isinstance(node, _Repeated):
            return self._repeat(node, dotall)
        if isinstance(node, _CharGroup):
            p = self._position(frozenset(node.chars), bool(node.negated))
            return False, {p}, {p}
        kind = type(node).__name__
        if kind.endswith("DotCls"):
            p = self._position(frozenset() if dotall else frozenset("\n"), True)
            return False, {p}, {p}
        if kind.endswith("EmptyCls"):
            return True, set(), set()
        raise ConstraintError(f"unsupported construct {kind} in regex {self.pattern_text!r}")

    def _repeat(self, node: _Repeated, dotall: bool) -> tuple:
        low, high = node.min, node.max
        result: tuple = (True, set(), set())
        mandatory = low - 1 if high is None and low > 0 else low
        for _ in range(mandatory):
            result = self._concat(result, self.build(node.base, dotall))
        if high is None:  # one more copy that loops: X+ if low > 0 else X*
            n, f, l = self.build(node.base, dotall)
            for p in l:
                self.follow[p] |= f
            return self._concat(result, (n or low == 0, f, l))
        tail: tuple = (True, set(), set())
        for _ in range(high - low):  # optional copies, nested: (X (X (X)?)?)?
            n, f, l = self._concat(self.build(node.base, dotall), tail)
            tail = (True, f, l)
        return self._concat(result, tail)


def _charset_intervals(chars: frozenset, negated: bool) -> list[tuple[int, int]]:
    codes = sorted(map(ord, chars))
    intervals: list[tuple[int, int]] = []
    for code in codes:
        if intervals and intervals[-1][1] + 1 == code:
            intervals[-1] = (intervals[-1][0], code)
        else:
            intervals.append((code, code))
    if not negated:
        return intervals
    complement, cursor = [], 0
    for lo, hi in intervals:
        if lo > cursor:
            complement.append((cursor, lo - 1))
        cursor = hi + 1
    if cursor <= MAX_CODE_POINT:
        complement.append((cursor, MAX_CODE_POINT))
    return complement


def _atoms(charsets: list[tuple[frozenset, bool]]) -> tuple[list[list[tuple[int, int]]], list[list[int]]]:
    """Partition code points by which charsets contain them. Returns atom intervals and,
    per charset, the atoms it contains; code points in no charset belong to no atom."""
    per_charset = [_charset_intervals(chars, negated) for chars, negated in charsets]
    cuts = {0, MAX_CODE_POINT + 1}
    for intervals in per_charset:
        for lo, hi in intervals:
            cuts.add(lo)
            cuts.add(hi + 1)
    bounds = np.array(sorted(cuts), dtype=np.int64)  # elementary interval k = [bounds[k], bounds[k+1])
    num_elementary = bounds.size - 1
    member = np.zeros((len(charsets), num_elementary), dtype=bool)  # [num_charsets, num_elementary]
    for c, intervals in enumerate(per_charset):
        if not intervals:
            continue
        delta = np.zeros(num_elementary + 1, dtype=np.int64)
        starts = np.searchsorted(bounds, [lo for lo, _ in intervals])
        ends = np.searchsorted(bounds, [hi + 1 for _, hi in intervals])
        np.add.at(delta, starts, 1)
        np.add.at(delta, ends, -1)
        member[c] = np.cumsum(delta[:-1]) > 0
    signatures, atom_of = np.unique(member.T, axis=0, return_inverse=True)
    atom_of = atom_of.reshape(-1)
    used = signatures.any(axis=1)  # the all-false signature (in no charset) is no atom
    renumber = np.cumsum(used) - 1
    atoms: list[list[tuple[int, int]]] = [[] for _ in range(int(used.sum()))]
    for k in range(num_elementary):
        sig = atom_of[k]
        if not used[sig]:
            continue
        lo, hi = int(bounds[k]), int(bounds[k + 1]) - 1
        intervals = atoms[renumber[sig]]
        if intervals and intervals[-1][1] + 1 == lo:
            intervals[-1] = (intervals[-1][0], hi)
        else:
            intervals.append((lo, hi))
    atoms_of_charset = [renumber[np.flatnonzero(used & signatures[:, c])].tolist() for c in range(len(charsets))]
    return atoms, atoms_of_charset


def build_char_dfa(parsed: Pattern, pattern_text: str) -> CharDFA:
    """Subset construction over Glushkov positions; state 0 is the start."""
    glushkov = _Glushkov(pattern_text)
    nullable, first, last = glushkov.build(parsed, False)
    charsets = list(glushkov.charset_ids)
    atoms, atoms_of_charset = _atoms(charsets)
    position_charset = glushkov.position_charset
    follow = [frozenset(f) for f in glushkov.follow]
    last = frozenset(last)

    start = frozenset(first)
    index: dict[frozenset, int] = {}
    transitions: list[dict[int, int]] = [{}]
    accepting = [nullable]
    queue: list[frozenset] = [start]  # queue[i]: the positions state i may continue into
    state = 0
    while state < len(queue):
        nexts = queue[state]
        by_charset: dict[int, list[int]] = {}
        for q in nexts:
            by_charset.setdefault(position_charset[q], []).append(q)
        targets: dict[int, list[int]] = {}
        for charset, positions in by_charset.items():
            for atom in atoms_of_charset[charset]:
                bucket = targets.get(atom)
                if bucket is None:
                    targets[atom] = list(positions)
                else:
                    bucket.extend(positions)
        row: dict[int, int] = {}
        for atom, positions in targets.items():
            reached = frozenset(positions)
            target = index.get(reached)
            if target is None:
                if len(queue) >= MAX_STATES:
                    raise ConstraintError(f"regex {pattern_text!r} is too large (over {MAX_STATES} DFA states)")
                target = len(queue)
                index[reached] = target
                follow_set: set[int] = set()
                for p in reached:
                    follow_set |= follow[p]
                queue.append(frozenset(follow_set))
                transitions.append({})
                accepting.append(not reached.isdisjoint(last))
            row[atom] = target
        transitions[state] = row
        state += 1
    return CharDFA(atoms=atoms, transitions=transitions, accepting=accepting, initial=0)
