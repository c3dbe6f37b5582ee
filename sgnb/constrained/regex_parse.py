"""Parse a Python regex with interegular's parser, into a tree whose language stays inside Python's.

Only interegular's parser is used (char_dfa.py builds the automaton). Its reading differs
from Python's `re` in places that matter for constrained decoding; everything the FSM accepts
must satisfy `re.fullmatch(pattern, text)`, so this module:

- validates the pattern with `re.compile` first (a Python syntax error is a ConstraintError);
- pre-scans it (regex_rewrite.py) for `\\uXXXX`, `\\N{...}`, literal `]` / `{`, comments, possessives;
- gives every class escape a lower and an upper approximation of Python's Unicode set and
  builds classes with exact set algebra, keeping the lower one. Positive `\\d`, `\\w`, `\\s`
  mean their ASCII members (what people mean, and a subset of Python's); negated forms
  (`\\D`, `[^\\d]`, ...) exclude every character Python would count in the class;
- expands IGNORECASE into explicit case-closed classes exactly as `re` folds case;
- refuses lookaround, backreferences, anchors and conditionals with a clear error.
"""

from __future__ import annotations

import _sre
import functools
import re
import warnings
from collections.abc import Callable

from interegular.patterns import (
    _CHAR_GROUPS,
    InvalidSyntax,
    Pattern,
    REFlags,
    Unsupported,
    _CharGroup,
    _Concatenation,
    _NonCapturing,
    _ParsePattern,
    _Repeated,
)
from interegular.utils.simple_parser import NoMatch, nomatch

from sgnb.constrained.errors import ConstraintError
from sgnb.constrained.regex_rewrite import rewrite_python_escapes

try:  # extra case equivalences `re` applies under IGNORECASE (e.g. 's' ~ 'ſ', 'k' ~ Kelvin sign)
    from re._casefix import _EXTRA_CASES
except ImportError:  # pragma: no cover - older Pythons
    _EXTRA_CASES = {}

MAX_CODE_POINT = 0x10FFFF

# A character set as (chars, negated): negated means "every character except chars".
CharSet = tuple[frozenset, bool]

_ASCII = frozenset(map(chr, range(128)))
_ASCII_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_ASCII_DIGIT = frozenset("0123456789")
_ASCII_SPACE = frozenset(" \t\n\r\f\v")  # Python's \s also has \x1c-\x1f; nobody means those
# Every character for which str.isspace() holds, i.e. Python's Unicode `\s`
# (tests/constrained/test_regex_parse.py checks this against the whole code space).
UNICODE_SPACE = frozenset(
    "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


@functools.lru_cache(maxsize=1)
def _unicode_digits() -> frozenset:
    """Python's Unicode `\\d`: every character with str.isdecimal() (category Nd)."""
    return frozenset(c for c in map(chr, range(0x110000)) if c.isdecimal())


def _union(a: CharSet, b: CharSet) -> CharSet:
    (ac, an), (bc, bn) = a, b
    if not an and not bn:
        return ac | bc, False
    if an and bn:
        return ac & bc, True
    return (ac - bc, True) if an else (bc - ac, True)


def _complement(a: CharSet) -> CharSet:
    return a[0], not a[1]


# Class escapes get a lower and an upper approximation of Python's Unicode set; the upper
# one is only needed under negation (and for \d it costs a scan of the code space).
def _class_escape_lower(letter: str) -> CharSet:
    if letter.isupper():
        return _complement(_class_escape_upper(letter.lower()))
    return {"d": (_ASCII_DIGIT, False), "w": (_ASCII_WORD, False), "s": (_ASCII_SPACE, False)}[letter]


def _class_escape_upper(letter: str) -> CharSet:
    if letter.isupper():
        return _complement(_class_escape_lower(letter.lower()))
    if letter == "d":
        return _unicode_digits(), False
    if letter == "w":  # the ASCII word characters plus every non-ASCII character
        return _ASCII - _ASCII_WORD, True
    return UNICODE_SPACE, False


_ESCAPE_OF_GROUP = {id(_CHAR_GROUPS[letter]): letter for letter in "dDwWsS"}


class _ClassItem:
    """One item of a bracket class: a lower approximation and a lazily computed upper one."""

    __slots__ = ("lower", "_upper_fn")

    def __init__(self, lower: CharSet, upper_fn: Callable[[], CharSet] | None = None) -> None:
        self.lower, self._upper_fn = lower, upper_fn

    def upper(self) -> CharSet:
        return self._upper_fn() if self._upper_fn is not None else self.lower


def _item_of_group(group: _CharGroup) -> _ClassItem:
    letter = _ESCAPE_OF_GROUP.get(id(group))
    if letter is not None:
        return _ClassItem(_class_escape_lower(letter), functools.partial(_class_escape_upper, letter))
    return _ClassItem((group.chars, group.negated))


def _char_group(chars: CharSet) -> _CharGroup:
    return _CharGroup(frozenset(chars[0]), chars[1])


class _PythonSemanticsParser(_ParsePattern):
    """interegular's parser with Python's meaning of class escapes and bracket classes."""

    def escaped(self, inner: bool = False):
        group = super().escaped(inner)
        letter = _ESCAPE_OF_GROUP.get(id(group))
        if letter is not None and not inner:
            return _char_group(_class_escape_lower(letter))
        return group

    def chargroup(self):
        negate = self.static_b("^")
        items: list[_ClassItem] = []
        while True:
            try:
                items.append(self.chargroup_inner())
            except nomatch:
                break
        self.static("]")
        result: CharSet = (frozenset(), False)
        for item in items:  # the complement of the upper union is a subset of Python's set
            result = _union(result, item.upper() if negate else item.lower)
        return _char_group(_complement(result) if negate else result)

    def chargroup_inner(self):
        start = self.index
        if self.static_b("\\"):
            base = self.escaped(True)
        else:
            base = _CharGroup(frozenset(self.any_but(*self.SPECIAL_CHARS_INNER)), False)
        if not self.static_b("-"):
            return _item_of_group(base)
        if self.static_b("\\"):
            end = self.escaped(True)
        elif self.peek_static("]"):
            dash = (frozenset("-"), False)
            item = _item_of_group(base)
            return _ClassItem(_union(item.lower, dash), lambda: _union(item.upper(), dash))
        else:
            end = _CharGroup(frozenset(self.any_but(*self.SPECIAL_CHARS_INNER)), False)
        if base.negated or end.negated or len(base.chars) != 1 or len(end.chars) != 1:
            raise InvalidSyntax(f"invalid character range {self.data[start:self.index]!r}")
        low, high = ord(next(iter(base.chars))), ord(next(iter(end.chars)))
        if low > high:
            raise InvalidSyntax(f"invalid character range {self.data[start:self.index]!r}")
        if high - low + 1 > (MAX_CODE_POINT + 1) // 2:  # huge range: store its (smaller) complement
            outside = frozenset(map(chr, [*range(0, low), *range(high + 1, MAX_CODE_POINT + 1)]))
            return _ClassItem((outside, True))
        return _ClassItem((frozenset(map(chr, range(low, high + 1))), False))


@functools.lru_cache(maxsize=1)
def _lowercase_preimages() -> dict[int, tuple[int, ...]]:
    """For every code point x that is the simple lowercase of another one: all c with
    lower(c) == x (x itself included when it is its own lowercase), as `re` computes lower."""
    preimages: dict[int, list[int]] = {}
    for code in range(MAX_CODE_POINT + 1):
        low = _sre.unicode_tolower(code)
        if low != code:
            preimages.setdefault(low, []).append(code)
    return {low: tuple(([low] if _sre.unicode_tolower(low) == low else []) + codes)
            for low, codes in preimages.items()}


def _case_closure(chars: frozenset) -> frozenset:
    """Every character c such that `re` under IGNORECASE treats c as one of `chars`:
    lower(c) is the lowercase of one of chars or one of its extra case equivalents."""
    preimages = _lowercase_preimages()
    folded = set()
    for char in chars:
        low = _sre.unicode_tolower(ord(char))
        folded.add(low)
        folded.update(_EXTRA_CASES.get(low, ()))
    out = set(chars)
    for low in folded:
        out.update(map(chr, preimages.get(low, (low,) if _sre.unicode_tolower(low) == low else ())))
    return frozenset(out)


def _fold_case(node, ignore_case: bool):
    """Rewrite char groups under the IGNORECASE flag into explicit case-closed sets (exactly
    as Python matches them) and drop the flag, so interegular never folds case itself."""
    if isinstance(node, Pattern):
        active = (ignore_case or bool(node.added_flags & REFlags.I)) and not node.removed_flags & REFlags.I
        options = tuple(_fold_case(option, active) for option in node.options)
        return Pattern(options, node.added_flags & ~REFlags.I, node.removed_flags & ~REFlags.I)
    if isinstance(node, _Concatenation):
        return _Concatenation(tuple(_fold_case(part, ignore_case) for part in node.parts))
    if isinstance(node, _Repeated):
        return _Repeated(_fold_case(node.base, ignore_case), node.min, node.max)
    if isinstance(node, _CharGroup) and ignore_case:
        return _CharGroup(_case_closure(node.chars), node.negated)
    return node


def _check_supported(node, pattern: str) -> None:
    if node is None:
        raise ConstraintError(f"unsupported regex syntax in {pattern!r}")
    if isinstance(node, _NonCapturing):
        raise ConstraintError(
            f"unsupported regex feature in {pattern!r}: lookahead/lookbehind assertions are not supported"
        )
    if isinstance(node, Pattern):
        for option in node.options:
            _check_supported(option, pattern)
    elif isinstance(node, _Concatenation):
        for part in node.parts:
            _check_supported(part, pattern)
    elif isinstance(node, _Repeated):
        _check_supported(node.base, pattern)


@functools.lru_cache(maxsize=256)
def parse_regex(pattern: str) -> Pattern:
    """Parse `pattern` (Python `re` syntax, matched with fullmatch) into an interegular Pattern.

    Raises ConstraintError naming the pattern for invalid syntax and unsupported features.
    """
    if not isinstance(pattern, str):
        raise ConstraintError(f"regex must be a str, got {type(pattern).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(pattern)
    except re.error as exc:
        raise ConstraintError(f"invalid regex {pattern!r}: {exc}") from None
    rewritten = rewrite_python_escapes(pattern)
    try:
        parsed = _PythonSemanticsParser(rewritten).parse()
    except Unsupported as exc:
        raise ConstraintError(f"unsupported regex feature in {pattern!r}: {exc}") from None
    except (InvalidSyntax, NoMatch) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "cannot parse it"
        raise ConstraintError(f"unsupported regex syntax in {pattern!r}: {detail}") from None
    except ConstraintError:
        raise
    except (ValueError, KeyError, IndexError) as exc:
        raise ConstraintError(f"unsupported regex syntax in {pattern!r}: {exc}") from None
    _check_supported(parsed, pattern)
    return _fold_case(parsed, False)
