"""The parsed form of a `%%sgl` cell: a tree of nodes, each remembering where it came from in the cell.

`parser.parse_cell` builds it; `cell_program.CellProgram` executes it on a program state. Offsets are character
offsets into `CellTemplate.source` (the cell body with `\\r\\n` normalized to `\\n`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import CodeType
from typing import Union


@dataclass(slots=True, eq=False)
class PyExpr:
    """A compiled Python expression of the cell.

    `text` is what was compiled: `prefix_len` synthetic characters (e.g. `"for "`), then the cell's own characters
    starting at cell offset `start`. `code` is an eval-mode code object; `has_nested_scope` is True when it holds
    a lambda or comprehension (those look names up as globals, so evaluation must merge the scopes for them).
    """

    text: str
    code: CodeType
    start: int
    end: int
    prefix_len: int = 0
    has_nested_scope: bool = False

    def cell_offset(self, lineno: int, col: int, col_is_bytes: bool) -> int:
        """Cell offset of position (`lineno` 1-based, `col` 0-based) in `text`; `col` in UTF-8 bytes when
        `col_is_bytes` (code positions, ast offsets) or in characters (SyntaxError offsets)."""
        lines = self.text.split("\n")
        lineno = max(1, min(lineno, len(lines)))
        line = lines[lineno - 1]
        if col_is_bytes:
            col = len(line.encode()[:max(col, 0)].decode("utf-8", "ignore"))
        col = max(0, min(col, len(line)))
        pos = sum(len(x) + 1 for x in lines[: lineno - 1]) + col
        return self.start + max(0, pos - self.prefix_len)


@dataclass(slots=True, eq=False)
class PyTarget:
    """A loop target (`x`, `k, v`, `(a, *rest)`): exec-mode code assigning `__sgl_item__` to it."""

    text: str
    code: CodeType
    start: int
    end: int


@dataclass(slots=True, eq=False)
class Text:
    """Literal template text (escapes already resolved)."""

    text: str
    start: int
    end: int


@dataclass(slots=True, eq=False)
class Expr:
    """`{expr}`: a primitive is appended; None appends nothing; anything else appends its `str()`."""

    expr: PyExpr
    start: int
    end: int


@dataclass(slots=True, eq=False)
class Role:
    """`@system` / `@user` / `@assistant` at a line start: closes the open role (if any) and opens this one."""

    role: str
    start: int
    end: int


@dataclass(slots=True, eq=False)
class For:
    """`{for TARGET in ITERABLE}` ... `{end}`."""

    target: PyTarget
    iterable: PyExpr
    body: list[Node] = field(default_factory=list)
    start: int = 0
    end: int = 0


@dataclass(slots=True, eq=False)
class Fork:
    """`{fork TARGET in ITERABLE}` or `{fork COUNT}` ... `{join}` / `{join concat}`.

    One child state per item; the body runs in each child with the target bound. `join_mode` is
    `"gather_variable"` (children's variables become lists in the parent) or `"concate_and_append"`.
    """

    target: PyTarget | None
    iterable: PyExpr | None
    count: PyExpr | None
    body: list[Node] = field(default_factory=list)
    join_mode: str = "gather_variable"
    start: int = 0
    end: int = 0


@dataclass(slots=True, eq=False)
class If:
    """`{if C}` ... `{elif C}` ... `{else}` ... `{end}`: `branches` are (condition, body) in order."""

    branches: list[tuple[PyExpr, list[Node]]] = field(default_factory=list)
    orelse: list[Node] | None = None
    start: int = 0
    end: int = 0


Node = Union[Text, Expr, Role, For, Fork, If]


@dataclass(slots=True, eq=False)
class CellTemplate:
    """A parsed cell. `var_names`: names the program generates with a literal name (`gen("x")`,
    `select("y", ...)`); expressions can read them back as plain names (`{if y == "yes"}`)."""

    source: str
    body: list[Node]
    first_line: int = 1
    var_names: frozenset[str] = frozenset()


@dataclass(slots=True, eq=False)
class ProgramHeader:
    """`NAME` or `NAME(params)` of a defining cell. `signature_code` (exec-mode) defines a stub function
    `__sgl_signature__(s, params...)`; executing it in the notebook namespace evaluates the defaults."""

    name: str
    params: str | None
    signature_code: CodeType
