"""Queries on a parsed `%%sgl` cell (`sgnb.magics.nodes`): its expressions, nested bodies and loop targets."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from sgnb.magics import nodes as n


def expressions(nodes: list[n.Node]) -> Iterator[n.PyExpr]:
    """Every Python expression of a node tree: `{...}` values, loop iterables, fork counts, conditions."""
    for node in nodes:
        if isinstance(node, n.Expr):
            yield node.expr
        elif isinstance(node, n.For):
            yield node.iterable
            yield from expressions(node.body)
        elif isinstance(node, n.Fork):
            yield node.iterable if node.iterable is not None else node.count
            yield from expressions(node.body)
        elif isinstance(node, n.If):
            for cond, body in node.branches:
                yield cond
                yield from expressions(body)
            if node.orelse is not None:
                yield from expressions(node.orelse)


def child_bodies(node: n.Node) -> list[list[n.Node]]:
    """The node lists nested in a `{for}`, `{fork}` or `{if}` block (every branch); none for other nodes."""
    if isinstance(node, (n.For, n.Fork)):
        return [node.body]
    if isinstance(node, n.If):
        return [b for _, b in node.branches] + ([node.orelse] if node.orelse is not None else [])
    return []


def target_names(target: n.PyTarget) -> set[str]:
    """The names a `{for}` / `{fork}` target binds (`k, v` -> {"k", "v"})."""
    loop = ast.parse(f"for {target.text}: pass").body[0]
    return {x.id for x in ast.walk(loop.target) if isinstance(x, ast.Name)}


def target_source(target: n.PyTarget) -> str:
    """The target's own source text (`k, v`)."""
    loop = ast.parse(f"for {target.text}: pass").body[0]
    return ast.get_source_segment(f"for {target.text}: pass", loop.target)


def expr_source(expr: n.PyExpr) -> str:
    """The expression's own source text (for-headers are stored as `for TARGET in ITERABLE: pass`)."""
    if expr.prefix_len == 0:
        return expr.text
    loop = ast.parse(expr.text).body[0]
    return ast.get_source_segment(expr.text, loop.iter)


def parse_expr(source: str) -> ast.Expression:
    """An expression's source (surrounding whitespace allowed) as an `eval`-mode tree."""
    return ast.parse(source.strip(), mode="eval")
