"""What a cell program appends, read through the language's tracer (no model)."""

from __future__ import annotations

from sgnb.lang.ir import Constant, Gen, RoleBegin, RoleEnd
from sgnb.lang.tracer import Placeholder
from sgnb.magics import CellFunction


def traced(function: CellFunction, **kwargs) -> list:
    return function.trace(**kwargs).nodes


def describe(nodes: list) -> list:
    out = []
    for node in nodes:
        if isinstance(node, Constant):
            out.append(node.value)
        elif isinstance(node, (RoleBegin, RoleEnd)):
            out.append(f"<{'' if isinstance(node, RoleBegin) else '/'}{node.role}>")
        elif isinstance(node, Gen):
            out.append(f"gen:{node.name}")
        elif isinstance(node, Placeholder):
            out.append(repr(node))
        else:
            out.append(type(node).__name__)
    return out
