"""Writing regex text: literal escaping, and embedding a user pattern inside a JSON string.

A JSON Schema `pattern` constrains the *decoded* string, but the model writes the JSON
encoding: `"` and `\\` and control characters must appear escaped. `json_string_body` parses
the pattern, and rewrites each character class so that the characters JSON must escape are
written as their escape sequences and all others raw. The result matches exactly the JSON
encodings (with json.dumps-style escapes) of the strings the pattern matches.
"""

from __future__ import annotations

from interegular.patterns import REFlags, Pattern, _CharGroup, _Concatenation, _Repeated

from sgnb.constrained.errors import ConstraintError
from sgnb.constrained.regex_parse import parse_regex

_REGEX_PUNCTUATION = frozenset("\\^$.|?*+()[]{}-#&~")  # special in Python re (or its classes)

# characters a JSON string must escape, with the escape json.dumps writes
_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_NOTHING = "[^\\s\\S]"  # the empty class, in Python and in the FSM compiler
JSON_SPECIAL = frozenset(['"', "\\"] + [chr(c) for c in range(0x20)])


def _escape_char(char: str) -> str:
    code = ord(char)
    if char.isascii() and (char.isalnum() or char in "_ "):
        return char
    if char in _REGEX_PUNCTUATION:
        return "\\" + char
    if code < 0x80:
        return f"\\x{code:02x}"
    return char  # non-ASCII: never special


def escape_literal(text: str) -> str:
    """Regex matching exactly `text` (valid for both Python `re` and the FSM compiler)."""
    if not isinstance(text, str):
        raise ConstraintError(f"expected a str to escape, got {type(text).__name__}")
    return "".join(map(_escape_char, text))


def _char_class(chars: frozenset, negated: bool) -> str:
    """A bracket class for a set of characters (or its complement)."""
    codes = sorted(ord(c) for c in chars if not 0xD800 <= ord(c) <= 0xDFFF)
    if not codes:
        return "(?s:.)" if negated else _NOTHING
    ranges: list[tuple[int, int]] = []
    for code in codes:
        if ranges and ranges[-1][1] + 1 == code:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))

    def one(code: int) -> str:
        return f"\\x{code:02x}" if code <= 0xFF else f"\\U{code:08x}"

    body = "".join(one(lo) if lo == hi else f"{one(lo)}-{one(hi)}" for lo, hi in ranges)
    return f"[{'^' if negated else ''}{body}]"


def _json_char_group(group: _CharGroup) -> str:
    """Alternation matching the JSON encoding of any character of `group`."""
    if group.negated:
        raw = _char_class(group.chars | JSON_SPECIAL, True)
        escaped = sorted(JSON_SPECIAL - group.chars)
    else:
        raw = _char_class(group.chars - JSON_SPECIAL, False) if group.chars - JSON_SPECIAL else ""
        escaped = sorted(group.chars & JSON_SPECIAL)
    options = ([raw] if raw else []) + [
        escape_literal(_JSON_ESCAPES.get(c, f"\\u{ord(c):04x}")) for c in escaped
    ]
    if not options:
        return _NOTHING
    return options[0] if len(options) == 1 else "(?:" + "|".join(options) + ")"


def _print_json(node, pattern: str) -> str:
    if isinstance(node, Pattern):
        if node.added_flags != REFlags(0) or node.removed_flags != REFlags(0):
            raise ConstraintError(f"regex flags are not supported in a JSON Schema pattern: {pattern!r}")
        return "(?:" + "|".join(_print_json(option, pattern) for option in node.options) + ")"
    if isinstance(node, _Concatenation):
        return "".join(_print_json(part, pattern) for part in node.parts)
    if isinstance(node, _Repeated):
        upper = "" if node.max is None else str(node.max)
        return f"(?:{_print_json(node.base, pattern)}){{{node.min},{upper}}}"
    if isinstance(node, _CharGroup):
        return _json_char_group(node)
    kind = type(node).__name__
    if kind.endswith("DotCls"):  # '.': any character but newline
        return _json_char_group(_CharGroup(frozenset("\n"), True))
    if kind.endswith("EmptyCls"):
        return ""
    raise ConstraintError(f"unsupported construct {kind} in JSON Schema pattern {pattern!r}")


def json_string_body(pattern: str) -> str:
    """Regex for the inside of a JSON string literal whose decoded value fullmatches `pattern`.

    A leading `^` and a trailing unescaped `$` are dropped (JSON Schema patterns are searched;
    generating a full match satisfies the search).
    """
    stripped = pattern[1:] if pattern.startswith("^") else pattern
    if stripped.endswith("$") and not stripped.endswith("\\$"):
        stripped = stripped[:-1]
    return _print_json(parse_regex(stripped), pattern)
