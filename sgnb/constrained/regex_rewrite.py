"""Pre-scan of a Python regex: the syntax interegular's parser lacks or reads differently."""

from __future__ import annotations

import re
import unicodedata

from sgnb.constrained.errors import ConstraintError

_HEX = "0123456789abcdefABCDEF"
_REPEAT = re.compile(r"\{(?:[0-9]+(?:,[0-9]*)?|,[0-9]*)\}")


def _literal(char: str) -> str:
    """A regex atom matching exactly `char`, safe inside and outside bracket classes."""
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return char  # non-ASCII characters are never special


def rewrite_python_escapes(pattern: str) -> str:
    """Rewrite what interegular reads differently from Python; keep everything else as is.

    `\\uXXXX`, `\\UXXXXXXXX`, `\\N{NAME}` become literals; a leading `]` in a class and a `{`
    that starts no `{m,n}` become escaped literals; `(?#...)` comments go; possessive
    quantifiers (Python 3.11, they change the language) are a ConstraintError.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    after_quantifier = False  # the previous item was a quantifier (*, +, ?, {m,n})
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e == "u" and i + 6 <= n and all(h in _HEX for h in pattern[i + 2 : i + 6]):
                out.append(_literal(chr(int(pattern[i + 2 : i + 6], 16))))
                i += 6
                continue
            if e == "U" and i + 10 <= n and all(h in _HEX for h in pattern[i + 2 : i + 10]):
                out.append(_literal(chr(int(pattern[i + 2 : i + 10], 16))))
                i += 10
                continue
            if e == "N" and pattern.startswith("{", i + 2) and "}" in pattern[i + 3 :]:
                end = pattern.index("}", i + 3)
                out.append(_literal(unicodedata.lookup(pattern[i + 3 : end])))
                i = end + 1
                continue
            out.append(pattern[i : i + 2])
            i += 2
            after_quantifier = False
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            after_quantifier = False
            out.append(c)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":  # Python: a leading ']' is a literal
                out.append("\\]")
                i += 1
            continue
        if pattern.startswith("(?#", i):  # comment group
            i = pattern.index(")", i) + 1
            continue
        if c in "*+?" and after_quantifier and out[-1] != "(":
            if c == "+":  # Python 3.11 possessive quantifier: changes the language
                raise ConstraintError(f"unsupported regex feature in {pattern!r}: possessive quantifiers")
            after_quantifier = False  # lazy modifier: same language under fullmatch
            out.append(c)
            i += 1
            continue
        if c == "{":
            repeat = _REPEAT.match(pattern, i)
            if repeat is None:  # Python: a '{' that starts no {m,n} is a literal
                out.append("\\{")
                i += 1
                after_quantifier = False
                continue
            out.append(repeat.group())
            i = repeat.end()
            after_quantifier = True
            continue
        after_quantifier = c in "*+?" and not (out and out[-1] == "(")
        out.append(c)
        i += 1
    return "".join(out)
