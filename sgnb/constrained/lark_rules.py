"""Which rules of a Lark grammar can finish: a grammar whose `start` never ends is refused at submission.

The grammar engine (llguidance) compiles a grammar like `start: a` / `a: "x" a` without complaint and then
lets the model write "xxxx..." forever, never reaching an accepting state. This module reads a grammar's
rules coarsely (definitions, alternatives, groups, optional parts, repetitions) and computes the rules that
can derive a finite string, by the usual fixed point. It reads the Lark syntax llguidance takes; what it
does not understand (an extension it does not know) makes it answer None rather than refuse a grammar.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+|\\\n) | (?P<comment>//[^\n]*|\#[^\n]*) | (?P<nl>\n)
  | (?P<string>"(?:\\.|[^"\\\n])*"i?) | (?P<regex>/(?:\\.|[^/\\\n])+/[imslux]*)
  | (?P<special><[^<>\s]*>) | (?P<json>%json\b) | (?P<directive>%\w+[^\n]*)
  | (?P<name>[?!]?[A-Za-z_][A-Za-z0-9_]*) | (?P<number>-?\d+) | (?P<range>\.\.) | (?P<arrow>->)
  | (?P<op>[:|()\[\]?*+~.,{}=])
""", re.VERBOSE)


class _Unknown(Exception):
    """Syntax this reader does not follow: no verdict."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _Unknown(text[pos:pos + 20])
        kind = m.lastgroup
        if kind == "json":          # %json {...}: a JSON schema inside the grammar, taken as finishable
            depth, end = 0, m.end()
            for end in range(m.end(), len(text)):
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                if depth == 0 and text[end] == "}":
                    break
            out.append(("atom", "%json"))
            pos = end + 1
            continue
        if kind not in ("ws", "comment", "directive"):
            out.append((kind, m.group()))
        pos = m.end()
    return out


def _definitions(tokens: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """name -> body tokens; a definition is a name (maybe `.priority` or `[attributes]`) then ':' at a line start."""
    rules: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "nl":
            j = i + 1
            if j < len(tokens) and tokens[j][0] == "name":
                k = j + 1
                if k + 1 < len(tokens) and tokens[k] == ("op", ".") and tokens[k + 1][0] == "number":
                    k += 2
                elif k < len(tokens) and tokens[k] == ("op", "["):
                    while k < len(tokens) and tokens[k] != ("op", "]"):
                        k += 1
                    k += 1
                if k < len(tokens) and tokens[k] == ("op", ":"):
                    current = rules.setdefault(tokens[j][1].lstrip("?!"), [])
                    if current:
                        current.append(("op", "|"))
                    i = k + 1
                    continue
            i += 1
            continue
        if current is None:
            raise _Unknown(value)
        current.append((kind, value))
        i += 1
    return rules


class _Body:
    """A recursive-descent reader of one rule body, evaluated against the rules known to finish."""

    def __init__(self, tokens: list[tuple[str, str]], finishing: set[str], names: set[str]) -> None:
        self.tokens, self.finishing, self.names, self.pos = tokens, finishing, names, 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def alternatives(self, closer: str | None) -> bool:
        result = self.sequence(closer)
        while self.peek() == ("op", "|"):
            self.pos += 1
            result = self.sequence(closer) or result
        return result

    def sequence(self, closer: str | None) -> bool:
        result = True
        while (token := self.peek()) is not None and token != ("op", "|") and token != ("op", closer):
            if token[0] == "arrow":         # `-> alias` ends an alternative
                self.pos += 2
                continue
            result = self.item() and result
        return result

    def item(self) -> bool:
        kind, value = self.tokens[self.pos]
        self.pos += 1
        if (kind, value) == ("op", "("):
            result = self.alternatives(")")
            self._expect(")")
        elif (kind, value) == ("op", "["):
            self.alternatives("]")
            self._expect("]")
            result = True
        elif kind == "name":
            name = value.lstrip("?!")
            result = name in self.finishing or name not in self.names   # undefined: the engine's error, not ours
        elif kind in ("string", "regex", "special", "atom"):
            result = True
            if self.peek() and self.peek()[0] == "range":      # "a".."z"
                self.pos += 2
        else:
            raise _Unknown(value)
        token = self.peek()
        if token in (("op", "?"), ("op", "*")):
            self.pos += 1
            return True
        if token == ("op", "+"):
            self.pos += 1
        elif token == ("op", "~"):
            low = self.tokens[self.pos + 1][1]
            self.pos += 2
            if self.peek() and self.peek()[0] == "range":
                self.pos += 2
            return result or low == "0"
        return result

    def _expect(self, closer: str) -> None:
        if self.peek() != ("op", closer):
            raise _Unknown(closer)
        self.pos += 1


def rules_that_cannot_finish(lark: str) -> list[str] | None:
    """The rules (and terminals) that derive no finite string, `start` first if it is one; [] when all can
    finish; None when the grammar uses syntax this reader does not follow (then nothing is claimed)."""
    try:
        rules = _definitions(_tokens("\n" + lark + "\n"))
        finishing: set[str] = set()
        changed = True
        while changed:
            changed = False
            for name, body in rules.items():
                if name not in finishing and _Body(body, finishing, set(rules)).alternatives(None):
                    finishing.add(name)
                    changed = True
    except (_Unknown, IndexError):
        return None
    stuck = sorted(set(rules) - finishing, key=lambda name: (name != "start", name))
    return stuck
