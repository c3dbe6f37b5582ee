"""What a cell expression's names mean in the generated function, and the expression rewritten to match.

Variables the program generates (`{answer}`) read the state (`s["answer"]`), `s` is the current state (the
branch inside a fork), and the primitives become `sgnb.gen`/`sgnb.select`. Parameters and loop variables
keep their names.
"""

from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass, field

from sgnb.pipeline.errors import NotReadable

PRIMITIVE_NAMES = frozenset({"gen", "gen_int", "gen_string", "select", "image", "video"})


@dataclass(slots=True)
class Scope:
    """What names mean while generating one program."""

    params: frozenset[str]
    var_names: frozenset[str]
    module_names: frozenset[str]
    taken: set[str] = field(default_factory=set)  # identifiers the generated code must not reuse

    def fresh(self, base: str) -> str:
        """An identifier starting with `base` that nothing else in the program uses (and now taken)."""
        name, k = base, 2
        while name in self.taken or keyword.iskeyword(name):
            name, k = f"{base}{k}", k + 1
        self.taken.add(name)
        return name


def classify(tree: ast.Expression, scope: Scope, bound: set[str]) -> str:
    """primitive | subprogram | inline (a name safe inside an f-string) | value."""
    body = tree.body
    if isinstance(body, ast.Call):
        func = body.func
        if isinstance(func, ast.Name) and func.id in PRIMITIVE_NAMES and func.id not in scope.params | bound:
            return "primitive"
        if isinstance(func, ast.Attribute) and func.attr in PRIMITIVE_NAMES and isinstance(func.value, ast.Name) \
                and func.value.id in ("sgnb", "sgl"):
            return "primitive"
        if any(isinstance(a, ast.Name) and a.id == "s" for a in body.args):
            return "subprogram"
    if isinstance(body, ast.Name):
        if body.id in scope.params or body.id in bound:
            return "inline"
        if body.id in scope.var_names:
            return "inline"
    return "value"


class Rewrite:
    """Maps a cell expression's names onto the generated function's: state variables, `s`, primitives.

    `state` is the state the code appends to (`s`, or a fork's branch); `bound` the loop variables in scope.
    After a call, `reads_state` says whether the rewritten code reads the state.
    """

    def __init__(self, scope: Scope, state: str, bound: set[str]) -> None:
        self.scope = scope
        self.state = state
        self.bound = bound
        self.reads_state = False

    def __call__(self, source: str) -> str:
        source = source.strip()
        tree = ast.parse(source, mode="eval")
        inner = _inner_bindings(tree)
        local = self.scope.params | self.bound
        edits: list[tuple[int, int, str]] = []
        for node in ast.walk(tree):
            if not isinstance(node, ast.Name) or not isinstance(node.ctx, ast.Load) or node.id in local:
                continue
            new = None
            if node.id == "s":
                new, self.reads_state = self.state, True
            elif node.id in self.scope.var_names:
                new, self.reads_state = f"{self.state}[{node.id!r}]", True
            elif node.id in PRIMITIVE_NAMES and node.id not in self.scope.module_names:
                new = f"sgnb.{node.id}"
            if new is None:
                continue
            if node.id in inner:
                raise NotReadable(f"{node.id!r} is bound inside the expression {source!r} and also means a "
                                  "program name")
            edits.append((*_span(source, node), new))
        for start, end, new in sorted(edits, reverse=True):
            source = source[:start] + new + source[end:]
        return f"({source})" if "\n" in source else source


def _inner_bindings(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
    return out


def _span(source: str, node: ast.AST) -> tuple[int, int]:
    """Character offsets of `node` in `source` (ast columns count UTF-8 bytes)."""
    lines = source.split("\n")

    def offset(lineno: int, col: int) -> int:
        line = lines[lineno - 1]
        chars = len(line.encode()[:col].decode("utf-8", "ignore"))
        return sum(len(x) + 1 for x in lines[:lineno - 1]) + chars

    return offset(node.lineno, node.col_offset), offset(node.end_lineno, node.end_col_offset)
