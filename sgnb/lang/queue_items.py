"""Internal items of a program state's queue: what the language enqueues besides user expressions.

They run on the state's worker in order with the expressions around them (a join waits for the forks only
when the parent reaches it, a `s["x"] = v` lands between the texts it was written between).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sgnb.lang.interpreter import StreamExecutor


@dataclass(eq=False)
class SetVar:
    """`s[name] = value`."""

    name: str
    value: Any


@dataclass(eq=False)
class CommitPrefix:
    """Commit the current text into the backend's prefix cache (before the children of a fork run)."""


@dataclass(eq=False)
class GatherVars:
    """`join("gather_variable")`: each variable the children created becomes a list in the parent."""

    children: list[StreamExecutor]


@dataclass(eq=False)
class ConcatAndAppend:
    """`join("concate_and_append")`: the children's own texts are appended to the parent."""

    children: list[StreamExecutor]


@dataclass(eq=False)
class Call:
    """Run `fn(executor)` on the worker, in order with the other items."""

    fn: Any


#: the worker exits when it takes this from the queue
END = object()


def is_internal(item: Any) -> bool:
    return isinstance(item, (SetVar, CommitPrefix, GatherVars, ConcatAndAppend, Call))


__all__ = ["SetVar", "CommitPrefix", "GatherVars", "ConcatAndAppend", "Call", "END", "is_internal"]
