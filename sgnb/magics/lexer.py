"""Lexer of the `%%sgl` cell language: cell text -> tokens (text, role, expr, block, comment).

Lexical rules:
- `@system`, `@user`, `@assistant` at a line start, followed by a space or the line end, switch the role.
  `@Name` lines that look like a misspelt role are errors; any other `@` is text.
- `{expr}` is a Python expression (it may span lines; strings and brackets inside it are skipped when looking
  for the closing `}`). `{{` and `}}` are literal braces, a lone `}` is an error, `{# ... #}` is a comment.
- `{fork ...}`, `{for ...}`, `{if ...}`, `{elif ...}`, `{else}`, `{end}`, `{join}` are block tags (the keyword
  must be followed by a space or `}`: `{end_time}` and `{format(x)}` are expressions).
- A line holding only block tags and comments (and spaces) disappears entirely, newline included.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from sgnb.magics.errors import SglSyntaxError

ROLES = ("system", "user", "assistant")
BLOCK_KEYWORDS = ("fork", "for", "if", "elif", "else", "end", "join")

_ROLE_LINE = re.compile(r"@(system|user|assistant)(?=[ \t\n]|\Z)[ \t]*")
_AT_WORD = re.compile(r"@([A-Za-z_]\w*)")
_SPECIAL = re.compile(r"[{}\n]")
_BLOCK = re.compile(r"\s*(" + "|".join(BLOCK_KEYWORDS) + r")(?=\s|\Z)(.*)\Z", re.S)


@dataclass(slots=True)
class Token:
    """One lexical unit. Offsets are into the (normalized) cell source."""

    kind: str  # text | role | expr | block | comment
    value: str  # text: the literal text; role: the role; expr: the inside of {}; block: the keyword
    start: int
    end: int
    rest: str = ""  # block: what follows the keyword, stripped
    rest_start: int = 0


def tokenize_cell(src: str, first_line: int = 1) -> list[Token]:
    """Tokens of `src` (newlines already normalized to `\\n`), standalone tag lines removed."""
    lexer = _Lexer(src, first_line)
    return lexer.trim_standalone(lexer.tokenize())


class _Lexer:
    def __init__(self, src: str, first_line: int) -> None:
        self.src = src
        self.first_line = first_line

    def error(self, message: str, offset: int, end_offset: int | None = None) -> SglSyntaxError:
        return SglSyntaxError(message, self.src, offset, end_offset, self.first_line)

    def tokenize(self) -> list[Token]:
        src, n = self.src, len(self.src)
        toks: list[Token] = []
        buf: list[str] = []
        buf_start = 0
        i = 0
        at_line_start = True

        def flush(end: int) -> None:
            if buf:
                toks.append(Token("text", "".join(buf), buf_start, end))
                buf.clear()

        def add_text(piece: str, start: int) -> None:
            nonlocal buf_start
            if not buf:
                buf_start = start
            buf.append(piece)

        while i < n:
            if at_line_start:
                at_line_start = False
                m = _ROLE_LINE.match(src, i)
                if m:
                    flush(i)
                    toks.append(Token("role", m.group(1), i, m.end()))
                    i = m.end()
                    continue
                self._check_role_typo(i)
            m = _SPECIAL.search(src, i)
            j = m.start() if m else n
            if j > i:
                add_text(src[i:j], i)
                i = j
                continue
            c = src[i]
            if c == "\n":
                add_text("\n", i)
                i += 1
                at_line_start = True
            elif c == "}":
                if not src.startswith("}}", i):
                    raise self.error("single '}' in text: write '}}' for a literal brace", i)
                add_text("}", i)
                i += 2
            elif src.startswith("{{", i):
                add_text("{", i)
                i += 2
            elif src.startswith("{#", i):
                close = src.find("#}", i + 2)
                if close == -1:
                    raise self.error("unclosed comment: '{#' needs a matching '#}'", i, i + 2)
                flush(i)
                toks.append(Token("comment", "", i, close + 2))
                i = close + 2
            else:
                close = self._find_close(i + 1)
                flush(i)
                toks.append(self._brace_token(i, close))
                i = close + 1
        flush(n)
        return toks

    def _check_role_typo(self, i: int) -> None:
        m = _AT_WORD.match(self.src, i)
        if not m:
            return
        word = m.group(1)
        close = difflib.get_close_matches(word.lower(), ROLES, n=1, cutoff=0.75)
        if close:
            if word == close[0]:
                problem = f"'@{word}' must be followed by a space or the end of the line to open a role"
            else:
                problem = f"unknown role '@{word}'; did you mean '@{close[0]}'?"
            raise self.error(f"{problem} (write {{'@'}} for a literal '@')", i, m.end())

    def _find_close(self, start: int) -> int:
        """Index of the `}` closing the expression that starts at `start` (just after `{`)."""
        src, n = self.src, len(self.src)
        depth = 0
        k = start
        while k < n:
            c = src[k]
            if c in "'\"":
                k = self._skip_string(k)
                continue
            if c in "([{":
                depth += 1
            elif c in ")]}":
                if depth == 0:
                    if c == "}":
                        return k
                else:
                    depth -= 1
            k += 1
        raise self.error("unclosed '{': add '}', or write '{{' for a literal brace", start - 1)

    def _skip_string(self, k: int) -> int:
        src = self.src
        quote = src[k]
        delim = quote * 3 if src.startswith(quote * 3, k) else quote
        j = k + len(delim)
        while j < len(src):
            if src[j] == "\\":
                j += 2
                continue
            if src.startswith(delim, j):
                return j + len(delim)
            if src[j] == "\n" and len(delim) == 1:
                break
            j += 1
        raise self.error("unterminated string inside '{...}'", k)

    def _brace_token(self, open_at: int, close_at: int) -> Token:
        inner = self.src[open_at + 1 : close_at]
        if not inner.strip():
            raise self.error("empty '{}': put an expression inside, or write '{{}}' for literal braces",
                             open_at, close_at + 1)
        m = _BLOCK.match(inner)
        if m:
            rest = m.group(2)
            lead = len(rest) - len(rest.lstrip())
            rest_start = open_at + 1 + m.start(2) + lead
            return Token("block", m.group(1), open_at, close_at + 1, rest.strip(), rest_start)
        return Token("expr", inner, open_at, close_at + 1)

    def trim_standalone(self, toks: list[Token]) -> list[Token]:
        """Drop lines that hold only block tags / comments (their indentation and newline go too)."""
        src = self.src
        dropped: set[int] = set()
        i = 0
        while i < len(toks):
            if toks[i].kind not in ("block", "comment"):
                i += 1
                continue
            a = b = i
            k = i + 1
            while k < len(toks):
                t = toks[k]
                if t.kind in ("block", "comment"):
                    b = k
                elif not (t.kind == "text" and _is_blank_inline(src[t.start : t.end])):
                    break
                k += 1
            line_start = src.rfind("\n", 0, toks[a].start) + 1
            newline = src.find("\n", toks[b].end)
            line_end = len(src) if newline == -1 else newline
            before = src[line_start : toks[a].start]
            after = src[toks[b].end : line_end]
            if _is_blank_inline(before) and _is_blank_inline(after):
                if before and a > 0 and toks[a - 1].kind == "text":
                    prev = toks[a - 1]
                    prev.value = prev.value[: len(prev.value) - len(before)]
                    prev.end -= len(before)
                dropped.update(j for j in range(a + 1, b) if toks[j].kind == "text")
                if b + 1 < len(toks) and toks[b + 1].kind == "text" and toks[b + 1].start == toks[b].end:
                    nxt = toks[b + 1]
                    cut = len(after) + (1 if newline != -1 else 0)
                    nxt.value = nxt.value[cut:]
                    nxt.start += cut
            i = b + 1
        return [t for j, t in enumerate(toks) if j not in dropped and not (t.kind == "text" and not t.value)]


def _is_blank_inline(text: str) -> bool:
    return not text.strip(" \t")
