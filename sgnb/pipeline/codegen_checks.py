"""Structure checks before a cell is written as plain Python: each raises `NotReadable` with the reason when the
cell's meaning depends on run time in a way plain statements cannot express."""

from __future__ import annotations

from sgnb.magics import nodes as n
from sgnb.pipeline.cell_tree import child_bodies, expr_source, parse_expr, target_names
from sgnb.pipeline.code_cells import BUILTIN_NAMES, free_names
from sgnb.pipeline.errors import NotReadable
from sgnb.pipeline.name_rewrite import PRIMITIVE_NAMES


def check_generated_names(template: n.CellTemplate, params: set[str], module_names: frozenset[str] | set[str],
                          read_names: set[str]) -> None:
    """A generated variable the cell reads (`read_names`) must not also be a notebook, builtin or primitive
    name: the cell looks it up at run time, the generated code could not."""
    for var in template.var_names:
        if var in params:
            continue
        clash = var in module_names or var in BUILTIN_NAMES or var in PRIMITIVE_NAMES
        if clash and var in read_names:
            raise NotReadable(f"the generated variable {var!r} is also a notebook, builtin or primitive name, "
                              "so what `{" + var + "}` means depends on run time")


def check_loops(template: n.CellTemplate, params: set[str]) -> None:
    """Loop and fork variables must be unique, not parameters, and unused outside their block (Python's loop
    variables outlive the loop; the cell's do not)."""
    seen: set[str] = set()
    reads: list[tuple[n.PyExpr, set[str]]] = []  # each expression, with the loop variables bound where it is

    def visit(nodes: list[n.Node], bound: set[str]) -> None:
        for node in nodes:
            if isinstance(node, (n.For, n.Fork)):
                reads.append((node.iterable if node.iterable is not None else node.count, bound))
                names = target_names(node.target) if node.target is not None else set()
                reused = names & (seen | params | {"s"})
                if reused:
                    raise NotReadable(f"loop variable {sorted(reused)[0]!r} is also a parameter or another "
                                      "loop's variable")
                seen.update(names)
                visit(node.body, bound | names)
            elif isinstance(node, n.If):
                for cond, body in node.branches:
                    reads.append((cond, bound))
                    visit(body, bound)
                if node.orelse is not None:
                    visit(node.orelse, bound)
            elif isinstance(node, n.Expr):
                reads.append((node.expr, bound))

    visit(template.body, set())
    for expr, bound in reads:
        used = free_names(parse_expr(expr_source(expr)))  # a comprehension's own `for i in ...` is not a use
        outside = (used & seen) - bound
        if outside:
            raise NotReadable(f"loop variable {sorted(outside)[0]!r} is also used outside its loop")


def check_roles(nodes: list[n.Node], depth: int = 0) -> None:
    """Role lines only at the top level: inside a block they would switch roles at run time."""
    for node in nodes:
        if isinstance(node, n.Role) and depth:
            raise NotReadable("a role line inside a {for}, {if} or {fork} block switches roles at run time")
        for body in child_bodies(node):
            check_roles(body, depth + 1)
