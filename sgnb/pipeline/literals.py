"""Python literals in generated code: strings and f-strings written for a reader, literal sizes read back."""

from __future__ import annotations

import ast

MAX_INLINE = 72  # longest string literal kept on one line (longer text: one literal per line of text)


def py_string(text: str, is_fstring: bool = False, quote: str | None = None) -> str:
    """A Python literal for `text`: double quotes unless only single ones avoid escapes (braces doubled in an
    f-string body)."""
    if quote is None:
        quote = "'" if '"' in text and "'" not in text else '"'
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == quote:
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        elif is_fstring and ch in "{}":
            out.append(ch * 2)
        else:
            out.append(ch)
    return quote + "".join(out) + quote


def fstring(segments: list[tuple[str, str]]) -> str:
    """`segments`: ("text", str) or ("inline", code); inline code holds no double quote and no backslash.
    A plain string literal when there is no inline code."""
    if all(kind == "text" for kind, _ in segments):
        return py_string("".join(value for _, value in segments))
    text = "".join(value for kind, value in segments if kind == "text")
    has_single = any("'" in value for kind, value in segments if kind == "inline")
    quote = "'" if '"' in text and "'" not in text and not has_single else '"'
    body = [py_string(value, True, quote)[1:-1] if kind == "text" else "{" + value + "}" for kind, value in segments]
    return "f" + quote + "".join(body) + quote


def string_lines(segments: list[tuple[str, str]]) -> list[str]:
    """A string group as literals, one per line of text (joined by Python's implicit concatenation); one
    literal when it fits in `MAX_INLINE` characters."""
    chunks: list[list[tuple[str, str]]] = [[]]
    for kind, value in segments:
        if kind != "text":
            chunks[-1].append((kind, value))
            continue
        parts = value.split("\n")
        for i, part in enumerate(parts):
            piece = part + ("\n" if i < len(parts) - 1 else "")
            if piece:
                chunks[-1].append(("text", piece))
            if i < len(parts) - 1:
                chunks.append([])
    whole = fstring(segments)
    if len(whole) <= MAX_INLINE or len(chunks) == 1:
        return [whole]
    return [fstring(chunk) for chunk in chunks if chunk]


def literal_len(code: str) -> int:
    """len() of a literal list/tuple without starred items, else 0."""
    try:
        tree = ast.parse(code, mode="eval").body
    except SyntaxError:
        return 0
    if isinstance(tree, (ast.List, ast.Tuple)) and not any(isinstance(e, ast.Starred) for e in tree.elts):
        return len(tree.elts)
    return 0


def is_literal_positive_int(code: str) -> bool:
    """Whether `code` is an int literal above 0 (a fork count that needs no run-time check)."""
    try:
        value = ast.literal_eval(code)
    except (ValueError, SyntaxError):
        return False
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
