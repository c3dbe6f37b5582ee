"""Tracing: run a program body on placeholders to see its structure without a model.

`run_batch` and `compile` use the trace's constant prefix (the text every call starts with, before the first
argument or generated value) as a prefix hint: it is committed into the backend's cache once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from sgnb.lang.ir import (
    Constant,
    Expr,
    Gen,
    Image,
    RoleBegin,
    RoleEnd,
    Select,
    VarScopeBegin,
    VarScopeEnd,
    Video,
)
from sgnb.lang.errors import StopTracing
from sgnb.lang.state_appending import StateAppending

if TYPE_CHECKING:
    from sgnb.lang.chat_template import ChatTemplate

_MARK = "\x00"


class Placeholder(Expr):
    """Stands for an argument or a variable value during tracing. Turning it into text yields a marker that
    ends the constant prefix; anything else (comparisons, iteration, methods) stops the trace."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def __str__(self) -> str:
        return f"{_MARK}{self._name}{_MARK}"

    def __format__(self, spec: str) -> str:
        return str(self)

    def __repr__(self) -> str:
        return f"Placeholder({self._name})"

    def __getattr__(self, attr: str) -> Any:
        raise StopTracing(f"{self._name}.{attr}")

    def _stop(self, *args: Any, **kwargs: Any) -> Any:
        raise StopTracing(self._name)

    __bool__ = __len__ = __iter__ = __eq__ = __ne__ = __lt__ = __gt__ = __int__ = __float__ = _stop
    __hash__ = object.__hash__


@dataclass(eq=False)
class TracedProgram:
    """What a program appended before tracing stopped."""

    nodes: list[Expr] = field(default_factory=list)
    stopped_by: str | None = None

    def prefix(self, chat_template: ChatTemplate) -> str:
        """The constant text every run starts with (roles rendered with `chat_template`)."""
        out: list[str] = []
        messages: list[dict] = []
        cur_role: str | None = None
        for node in self.nodes:
            if isinstance(node, Constant):
                if _MARK in node.value:
                    out.append(node.value.split(_MARK, 1)[0])
                    break
                out.append(node.value)
            elif isinstance(node, RoleBegin):
                if cur_role is not None:
                    break
                out.append(chat_template.get_prefix_and_suffix(node.role, messages)[0])
                cur_role = node.role
            elif isinstance(node, RoleEnd):
                out.append(chat_template.get_prefix_and_suffix(node.role, messages)[1])
                messages.append({"role": node.role, "content": "?"})
                cur_role = None
            elif isinstance(node, (VarScopeBegin, VarScopeEnd)):
                continue
            else:  # gen, select, image, video, placeholder: the constant part ends
                break
        return "".join(out)


class TracerState(StateAppending):
    """Duck-types `ProgramState` while tracing: records appended expressions."""

    def __init__(self, traced: TracedProgram) -> None:
        self._traced = traced

    def _append(self, expr: Expr) -> None:
        self._traced.nodes.extend(expr.flatten())

    def __getitem__(self, name: str) -> Placeholder:
        return Placeholder(f"var:{name}")

    def __setitem__(self, name: str, value: Any) -> None:
        pass

    def __contains__(self, name: str) -> bool:
        raise StopTracing(f"'{name}' in s")

    def fork(self, *args: Any, **kwargs: Any) -> Any:
        raise StopTracing("fork")

    def copy(self) -> Any:
        raise StopTracing("copy")

    def __getattr__(self, attr: str) -> Any:  # text(), messages(), get_meta_info(), ...: runtime values
        raise StopTracing(f"s.{attr}")


def trace_program(func: Callable, arg_names: list[str], args: tuple, kwargs: dict) -> TracedProgram:
    """Run `func` on a `TracerState`; arguments not given become placeholders. Never raises for the
    program's own errors: the trace just ends there."""
    traced = TracedProgram()
    call_kwargs = dict(kwargs)
    for name in arg_names[len(args):]:
        call_kwargs.setdefault(name, Placeholder(f"arg:{name}"))
    try:
        func(TracerState(traced), *args, **call_kwargs)
    except StopTracing as stop:
        traced.stopped_by = str(stop)
    except Exception as exc:  # noqa: BLE001 - any runtime dependence ends the trace
        traced.stopped_by = f"{type(exc).__name__}: {exc}"
    return traced


def is_constant_node(node: Expr) -> bool:
    return not isinstance(node, (Gen, Select, Image, Video, Placeholder))
