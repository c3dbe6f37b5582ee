"""`StateAppending`: how a program body appends to its state (`s += x`, `s.user(...)`, `with s.assistant():`,
`with s.var_scope(name):`), written once for every kind of state.

A state class supplies `_append(expr)`; `ProgramState` submits to its interpreter, `TracerState` records the
nodes of a trace.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from typing import Any, Iterator, TypeVar

from sgnb.lang.ir import Concat, Expr, RoleBegin, RoleEnd, VarScopeBegin, VarScopeEnd, to_expr

_S = TypeVar("_S", bound="StateAppending")


class StateAppending:
    """`+=`, role and var_scope methods over one abstract `_append`."""

    __slots__ = ()

    def _append(self, expr: Expr) -> None:
        """Append `expr` (already an `Expr`) to the state."""
        raise NotImplementedError

    def __iadd__(self: _S, other: Any) -> _S:
        self._append(to_expr(other))
        return self

    def _role(self, role: str, expr: Any = None) -> AbstractContextManager[None] | None:
        if expr is not None:
            self._append(Concat([RoleBegin(role), to_expr(expr), RoleEnd(role)]))
            return None
        return self._role_scope(role)

    @contextmanager
    def _role_scope(self, role: str) -> Iterator[None]:
        self._append(RoleBegin(role))
        yield
        self._append(RoleEnd(role))

    def system(self, expr: Any = None) -> AbstractContextManager[None] | None:
        """`s.system("...")` appends a system message; `with s.system():` scopes one."""
        return self._role("system", expr)

    def user(self, expr: Any = None) -> AbstractContextManager[None] | None:
        return self._role("user", expr)

    def assistant(self, expr: Any = None) -> AbstractContextManager[None] | None:
        return self._role("assistant", expr)

    @contextmanager
    def var_scope(self, name: str) -> Iterator[None]:
        """Everything appended inside the block becomes the text of variable `name`."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"var_scope name must be a non-empty string, got {name!r}")
        self._append(VarScopeBegin(name))
        yield
        self._append(VarScopeEnd(name))


__all__ = ["StateAppending"]
