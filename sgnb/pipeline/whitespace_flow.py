"""The cell language's whitespace rules, resolved at export time.

A cell strips the literal text at the start and end of a role's content. Which literals that touches depends
on what can come before and after them, so two dataflow passes over the node tree decide it: a backward pass
finds, for each piece of literal text, whether a role switch can follow it before anything else is appended
(its trailing whitespace goes), a forward pass whether it can sit at the start of a role (its leading
whitespace goes). Where the answer differs between paths, `NotReadable` says so.
"""

from __future__ import annotations

from collections.abc import Callable

from sgnb.magics import nodes as n
from sgnb.pipeline.cell_tree import child_bodies, expr_source, parse_expr
from sgnb.pipeline.errors import NotReadable
from sgnb.pipeline.name_rewrite import Scope, classify

# trailing-whitespace fates (backward pass): what comes first after a piece of text on every path
BARRIER, BOUNDARY, MIXED = "barrier", "boundary", "mixed"  # something appended / a role switch or the end / both
# leading-whitespace states (forward pass): is the walk at the start of a role?
AT_START, NOT_AT_START = "at-start", "not-at-start"


def _join(*values: str) -> str:
    return values[0] if all(v == values[0] for v in values) else MIXED


def _dataflow(nodes: list[n.Node], state: str, step: Callable[[n.Node, str], str],
              fork: Callable[[str], tuple[str, str]], *, reverse: bool) -> str:
    """Carry a `_join`-lattice state through a cell body, forward or backward.

    step(node, state) -> state for a leaf node; fork(state) -> (state a fork's body starts with,
    state after the fork). `if` joins its branches; `for` iterates its body to a fixed point.
    """
    for node in reversed(nodes) if reverse else nodes:
        if isinstance(node, n.Fork):
            entry, state = fork(state)
            _dataflow(node.body, entry, step, fork, reverse=reverse)
        elif isinstance(node, n.If):
            outs = [_dataflow(b, state, step, fork, reverse=reverse) for _, b in node.branches]
            outs.append(_dataflow(node.orelse, state, step, fork, reverse=reverse)
                        if node.orelse is not None else state)
            state = _join(*outs)
        elif isinstance(node, n.For):
            entry = state
            while True:
                out = _dataflow(node.body, entry, step, fork, reverse=reverse)
                again = _join(state, out)
                if again == entry:
                    break
                entry = again
            state = _join(state, out)
        else:
            state = step(node, state)
    return state


def resolve_whitespace(template: n.CellTemplate, scope: Scope) -> dict[int, str]:
    """The text each `Text` node really appends (id(node) -> text), as `CellProgram` would strip it."""
    body = template.body
    tail: dict[int, str] = {}
    lead: dict[int, str] = {}

    def backward(node: n.Node, follow: str) -> str:
        if isinstance(node, n.Text):
            tail[id(node)] = follow
            return BARRIER if node.text.strip() else follow
        if isinstance(node, n.Expr):
            return BARRIER  # an expression flushes the pending text first, whatever its value
        if isinstance(node, n.Role):
            return BOUNDARY
        return follow

    def forward(node: n.Node, state: str) -> str:
        if isinstance(node, n.Text):
            lead[id(node)] = state
            return NOT_AT_START if node.text.strip() else state
        if isinstance(node, n.Expr):
            kind = classify(parse_expr(expr_source(node.expr)), scope, set())
            if kind == "primitive":
                return NOT_AT_START
            if kind != "subprogram":  # a value: an empty one leaves the walk at the start
                return NOT_AT_START if state == NOT_AT_START else MIXED
            return state
        if isinstance(node, n.Role):
            return AT_START
        return state

    # backward: a branch ends by flushing without stripping; forward: branches leave the parent's state
    _dataflow(body, BOUNDARY, backward, lambda _: (BARRIER, BARRIER), reverse=True)  # the end strips like a role
    _dataflow(body, AT_START, forward, lambda state: (state, state), reverse=False)
    texts: dict[int, str] = {}

    def resolve(nodes: list[n.Node]) -> None:
        for node in nodes:
            if isinstance(node, n.Text):
                try:
                    texts[id(node)] = _strip(node, lead[id(node)], tail[id(node)])
                except NotReadable as exc:
                    line = template.first_line + template.source.count("\n", 0, node.start)
                    raise NotReadable(f"cell line {line}: {exc}") from None
            for b in child_bodies(node):
                resolve(b)

    resolve(body)
    return texts


def _strip(node: n.Text, lead: str, tail: str) -> str:
    text = node.text
    where = f"literal text {text[:20]!r}"
    if not text.strip():
        if lead == AT_START or tail == BOUNDARY:
            return ""
        if lead == NOT_AT_START and tail == BARRIER:
            return text
        raise NotReadable(f"whether the whitespace {text!r} reaches the prompt depends on run time")
    if text[0].isspace():
        if lead == AT_START:
            text = text.lstrip()
        elif lead == MIXED:
            raise NotReadable(f"{where} may or may not start a role (its leading whitespace would be stripped "
                              "only then)")
    if text[-1].isspace():
        if tail == BOUNDARY:
            text = text.rstrip()
        elif tail == MIXED:
            raise NotReadable(f"{where} is followed by a role switch on some paths only (its trailing "
                              "whitespace would be stripped only then)")
    return text
