"""The plain-Python part of a notebook: code cells as top-level statements, and which of them a program needs.

A code cell is first stripped of IPython syntax (line magics `%...`, shell escapes `!...`, `x = !cmd`, help
`obj?`); a cell under another cell magic is kept only for `%%time`/`%%capture` (its body is Python), and
skipped otherwise. Each top-level statement records the names it defines, the names it reads (free names,
scope-aware for functions, lambdas, classes and comprehensions) and the names whose object it changes
(`rows.append(x)`, `table[k] = v`). `needed_statements` keeps only what the programs depend on, so an
exported pipeline does not create the notebook's engine or widgets at import time.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass

from sgnb.pipeline.notebook import CodeCell

#: cell magics whose body is plain Python
PYTHON_CELL_MAGICS = ("%%time", "%%capture", "%%timeit")
BUILTIN_NAMES = frozenset(dir(builtins))
_LINE_MAGIC = re.compile(r"^(\s*)(?:[%!]|[A-Za-z_][\w, ]*=\s*[%!])")
_HELP = re.compile(r"^(\s*)[\w.]+\?{1,2}\s*$")


@dataclass(slots=True, frozen=True)
class Statement:
    """One top-level statement of a code cell (statements sharing a line are kept together)."""

    cell: int
    source: str
    defines: frozenset[str]
    uses: frozenset[str]
    mutates: frozenset[str]


def python_source(cell: CodeCell) -> tuple[str | None, str | None]:
    """`(python, note)`: the cell as plain Python, or None and why it was skipped."""
    source = cell.source.replace("\r\n", "\n")
    first = source.lstrip("\n").split("\n", 1)[0].strip()
    if first.startswith("%%"):
        magic = first.split()[0]
        if magic not in PYTHON_CELL_MAGICS:
            return None, f"cell magic {magic} (not Python)"
        source = source.lstrip("\n").split("\n", 1)[1] if "\n" in source.lstrip("\n") else ""
    lines = []
    for line in source.split("\n"):
        m = _LINE_MAGIC.match(line) or _HELP.match(line)
        if m:  # keep the block structure: an indented magic becomes `pass`
            line = f"{m.group(1)}pass" if m.group(1) else ""
        lines.append(line)
    python = "\n".join(lines)
    try:
        ast.parse(python)
    except SyntaxError as exc:
        return None, f"not plain Python (line {exc.lineno}: {exc.msg})"
    return python, None


def cell_statements(cell: CodeCell) -> tuple[list[Statement], str | None]:
    """The top-level statements of a code cell, and a note when the cell had to be skipped."""
    python, note = python_source(cell)
    if python is None:
        return [], note
    tree = ast.parse(python)
    lines = python.split("\n")
    groups: list[list[ast.stmt]] = []
    spans: list[tuple[int, int]] = []
    for node in tree.body:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        last = node.end_lineno or node.lineno
        if spans and first <= spans[-1][1]:  # `a = 1; b = 2` on one line
            groups[-1].append(node)
            spans[-1] = (spans[-1][0], max(spans[-1][1], last))
        else:
            groups.append([node])
            spans.append((first, last))
    out = []
    for group, (first, last) in zip(groups, spans):
        defines: set[str] = set()
        uses: set[str] = set()
        mutates: set[str] = set()
        for node in group:
            defines |= bound_names(node)
            uses |= free_names(node)
            mutates |= mutated_names(node)
        text = "\n".join(lines[first - 1:last]).rstrip()
        # a statement's own bindings are not dependencies (every definition of a needed name is kept anyway)
        out.append(Statement(cell.number, text, frozenset(defines), frozenset(uses - defines - BUILTIN_NAMES),
                             frozenset(mutates)))
    return out, None


def needed_statements(statements: list[Statement], names: set[str]) -> list[Statement]:
    """The statements (in order) that define or change `names`, and, transitively, what those read."""
    needed: set[str] = set(names)
    chosen: set[int] = set()
    changed = True
    while changed:
        changed = False
        for i, st in enumerate(statements):
            if i in chosen:
                continue
            if st.defines & needed or st.mutates & needed or "*" in st.defines:
                chosen.add(i)
                needed |= st.uses
                changed = True
    return [st for i, st in enumerate(statements) if i in chosen]


# ------------------------------------------------------------------ name analysis
def bound_names(node: ast.AST) -> set[str]:
    """Names a top-level statement binds in the module namespace (not inside functions or classes)."""
    out: set[str] = set()

    def visit(n: ast.AST) -> None:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
            return
        if isinstance(n, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            for alias in n.names:
                out.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(n, ast.ExceptHandler) and n.name:
            out.add(n.name)
        elif isinstance(n, ast.NamedExpr):
            out.add(n.target.id)
        for child in ast.iter_child_nodes(n):
            visit(child)

    visit(node)
    return out


def mutated_names(node: ast.AST) -> set[str]:
    """Module names whose object a top-level statement changes in place: `x.append(...)`, `x[k] = v`,
    `x.attr = v`, `del x[k]`, `x += ...`."""
    out: set[str] = set()
    for n in ast.walk(node):
        targets: list[ast.AST] = []
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Attribute):
            targets = [n.value.func.value]
        elif isinstance(n, (ast.Assign, ast.Delete)):
            targets = [t for t in n.targets if isinstance(t, (ast.Subscript, ast.Attribute))]
            targets = [t.value for t in targets]
        elif isinstance(n, (ast.AugAssign, ast.AnnAssign)):
            targets = [n.target.value if isinstance(n.target, (ast.Subscript, ast.Attribute)) else n.target]
        for t in targets:
            while isinstance(t, (ast.Subscript, ast.Attribute)):
                t = t.value
            if isinstance(t, ast.Name):
                out.add(t.id)
    return out


def free_names(node: ast.AST) -> set[str]:
    """Names read by `node` that are not bound inside it (functions, lambdas, classes and comprehensions
    have their own scopes)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        args = node.args
        params = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg) if a}
        outer: set[str] = set()
        for d in (*args.defaults, *(d for d in args.kw_defaults if d is not None),
                  *getattr(node, "decorator_list", [])):
            outer |= free_names(d)
        for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if a is not None and a.annotation is not None:
                outer |= free_names(a.annotation)
        body = node.body if isinstance(node.body, list) else [node.body]
        inner: set[str] = set()
        local: set[str] = set(params)
        declared_global: set[str] = set()
        for stmt in body:
            inner |= free_names(stmt)
            local |= _local_bindings(stmt)
            for n in ast.walk(stmt):
                if isinstance(n, (ast.Global, ast.Nonlocal)):
                    declared_global |= set(n.names)
        return outer | (inner - (local - declared_global))
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
        bound: set[str] = set()
        used: set[str] = set()
        for i, gen in enumerate(node.generators):
            iter_names = free_names(gen.iter)
            used |= iter_names if i == 0 else iter_names - bound
            bound |= {n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
            for cond in gen.ifs:
                used |= free_names(cond) - bound
        parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        for part in parts:
            used |= free_names(part) - bound
        return used
    if isinstance(node, ast.ClassDef):
        out: set[str] = set()
        for part in (*node.bases, *(k.value for k in node.keywords), *node.decorator_list):
            out |= free_names(part)
        local: set[str] = set()
        for stmt in node.body:
            out |= free_names(stmt) - local
            local |= _local_bindings(stmt)
        return out
    if isinstance(node, ast.Name):
        return {node.id} if isinstance(node.ctx, ast.Load) else set()
    out = set()
    for child in ast.iter_child_nodes(node):
        out |= free_names(child)
    return out


def _local_bindings(stmt: ast.AST) -> set[str]:
    """Names a statement binds in the scope it runs in (function locals)."""
    return bound_names(stmt)
