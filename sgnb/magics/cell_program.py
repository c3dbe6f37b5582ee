"""Executing a parsed `%%sgl` cell on a program state: the walk that turns the node tree into `s += ...`.

`CellProgram(source)(s, params)` does what a hand-written program body would: `s += text`, `s += gen(...)`,
role begin/end, `s.fork(n)` ... `join()`. `cell_function.CellFunction` wraps it as an `SglFunction`, so
`.run`, `.run_batch`, `.trace` (prefix caching) and the widgets work unchanged.

Name lookup inside `{...}`, first match wins:
  loop / fork variables, then the program's parameters, then `s` (the current state) and the variables the
  program generates with a literal name (`{gen("x")}` ... `{x}`: waits for it), then `namespace`
  (the notebook), then the primitives `gen, gen_int, gen_string, select, image, video`, then builtins.
Values: a primitive (any `sgnb.lang.ir.Expr`) is appended as is; None appends nothing (so `{helper(s)}` can
call a sub-program); anything else appends `str(value)`.
Whitespace: literal text at the start and at the end of each role's content, and of the whole program, is
stripped (so `@user Hi`, blank lines at the top, and a blank line before the next `@assistant` do not reach the
prompt); text produced by expressions is never stripped.
"""

from __future__ import annotations

import builtins
import threading
import weakref
from collections import ChainMap
from typing import Any, Callable

from sgnb.lang.ir import Expr as IrExpr
from sgnb.lang.ir import Constant, Gen, RoleBegin, RoleEnd, Select
from sgnb.lang.errors import StopTracing
from sgnb.lang.interpreter import ProgramError
from sgnb.lang.state import ProgramState
from sgnb.magics import nodes as n
from sgnb.magics.errors import SglError, SglEvalError, SglRuntimeError
from sgnb.magics.parser import parse_cell

_BASE_GLOBALS = {"__builtins__": builtins}


def _primitives() -> dict[str, Any]:
    from sgnb.lang import ir

    return {name: getattr(ir, name) for name in ("gen", "gen_int", "gen_string", "select", "image", "video")}


PRIMITIVES = _primitives()


class CellProgram:
    """A parsed cell, callable as a program body: `program(s, params)` appends the cell to state `s`.

    `namespace` is read live at each evaluation (a notebook's `user_ns`); None means an empty one.
    """

    def __init__(self, source: str, namespace: dict | None = None, first_line: int = 1) -> None:
        self.template = parse_cell(source, first_line)
        self.namespace = namespace if namespace is not None else {}
        # executor -> (spans it had when the walk started, [(node, is_primitive, name)] submitted since)
        self.submitted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @property
    def source(self) -> str:
        return self.template.source

    def __call__(self, s: Any, params: dict[str, Any]) -> None:
        walk = _Walk(self, s, ChainMap(dict(params)), role=None, at_role_start=True)
        walk.body(self.template.body)
        walk.finish(close_role=True)

    def runtime_error(self, state: Any) -> SglError | None:
        """The error that stopped `state` (None if it succeeded), as an `SglError` pointing at the `{...}` that
        failed when that is known. A fork child's failure is reported at the child's own primitive."""
        executor = state.stream_executor
        error = executor.error
        if error is None or isinstance(error, SglError):
            return error
        while isinstance(error, ProgramError) and error.__cause__ is not None:
            child = next((c for c in list(executor.children) if c.error is error.__cause__), None)
            if child is None:
                break
            executor, error = child, child.error
        if isinstance(error, SglError):
            return error
        message = f"{type(error).__name__}: {error}"
        node = self._failed_node(executor)
        template = self.template
        located = SglRuntimeError(message) if node is None else \
            SglRuntimeError(message, template.source, node.start, node.end, template.first_line)
        located.__cause__ = error
        return located

    def _failed_node(self, executor: Any) -> Any:
        """The `{...}` whose primitive failed on `executor`, or None when that cannot be told for sure.

        Primitives execute in order and each success records one span, so after `k` recorded spans the `k`-th
        primitive is the one that failed, provided the spans match the submitted primitives by name (a
        sub-program call would add spans of its own) and nothing else that can fail (a role or fork inserted
        between the two primitives) was submitted in between.
        """
        with self._lock:
            entry = self.submitted.get(executor)
            if entry is None:
                return None
            num_spans_before, items = entry[0], list(entry[1])
        spans = executor.data.spans[num_spans_before:]
        primitives = [i for i, item in enumerate(items) if item[1]]
        k = len(spans)
        if k >= len(primitives):
            return None
        if any(span.get("name") != items[i][2] for span, i in zip(spans, primitives)):
            return None
        lo = primitives[k - 1] if k else -1
        hi = primitives[k]
        if any(not items[j][1] for j in range(lo + 1, hi)):
            return None
        return items[hi][0]

    def _register(self, state: Any, node: Any = None, value: Any = None) -> None:
        """Remember what `node` submitted to `state` (for `_failed_node`); with no node, start the record."""
        if not isinstance(state, ProgramState):  # tracing (TracerState) or a duck-typed state
            return
        executor = state.stream_executor
        with self._lock:
            entry = self.submitted.get(executor)
            if entry is None:
                if executor.num_pending:  # spans would still change under us; no reliable location
                    return
                entry = (len(executor.data.spans), [])
                self.submitted[executor] = entry
            if node is None:
                return
            items = value.flatten() if isinstance(value, IrExpr) else [value]
            for item in items:
                if isinstance(item, (Gen, Select)):
                    entry[1].append((node, True, item.name))
                elif not isinstance(item, Constant):  # roles, images, fork commits: can fail too
                    entry[1].append((node, False, None))


class _Scope:
    """The `locals` mapping of an evaluation: variables, then state variables, then the namespace."""

    __slots__ = ("walk", "vars")

    def __init__(self, walk: _Walk, variables: ChainMap) -> None:
        self.walk = walk
        self.vars = variables

    def __getitem__(self, name: str) -> Any:
        if name in self.vars:
            return self.vars[name]
        walk = self.walk
        if name == "s":
            return walk.state
        if name in walk.program.template.var_names:
            state = walk.state
            if name in state:  # waits for what is pending on this state
                return state[name]
        namespace = walk.program.namespace
        if name in namespace:
            return namespace[name]
        if name in PRIMITIVES:
            return PRIMITIVES[name]
        raise KeyError(name)  # eval goes on to builtins, then raises NameError

    def merged(self) -> dict:
        """Globals for code with nested scopes (lambdas, comprehensions), which cannot see a locals mapping."""
        out = dict(_BASE_GLOBALS)
        out.update(PRIMITIVES)
        out.update(self.walk.program.namespace)
        state = self.walk.state
        out["s"] = state
        for name in self.walk.program.template.var_names:
            if name in state:  # waits for what is pending on this state
                out[name] = state[name]
        for layer in reversed(self.vars.maps):
            out.update(layer)
        return out


class _Walk:
    """Walks a node list on one state. A fork's children get their own walk."""

    def __init__(self, program: CellProgram, state: Any, variables: ChainMap, role: str | None,
                 at_role_start: bool) -> None:
        self.program = program
        self.state = state
        self.vars = variables
        self.role = role
        self.at_role_start = at_role_start  # at the start of the program or of a role: skip literal whitespace
        self.pending = ""  # literal text not yet appended (so a role's trailing whitespace can be dropped)
        program._register(state, None)

    # ------------------------------------------------------------ text and roles
    def _append(self, value: Any) -> None:
        self.state += value

    def flush(self, strip_end: bool = False) -> None:
        text = self.pending.rstrip() if strip_end else self.pending
        self.pending = ""
        if text:
            self._append(text)

    def text(self, text: str) -> None:
        if self.at_role_start:
            text = text.lstrip()
            if not text:
                return
            self.at_role_start = False
        self.pending += text

    def switch_role(self, role: str) -> None:
        self.flush(strip_end=True)
        if self.role is not None:
            self._append(RoleEnd(self.role))
        self._append(RoleBegin(role))
        self.role = role
        self.at_role_start = True

    def finish(self, close_role: bool) -> None:
        self.flush(strip_end=close_role)
        if close_role and self.role is not None:
            self._append(RoleEnd(self.role))
            self.role = None

    # ------------------------------------------------------------ evaluation
    def eval(self, expr: n.PyExpr, post: Callable[[Any], Any] | None = None) -> Any:
        scope = _Scope(self, self.vars)
        try:
            globs = scope.merged() if expr.has_nested_scope else _BASE_GLOBALS
            value = eval(expr.code, globs, scope)  # noqa: S307 - the cell is the user's own code
            return post(value) if post is not None else value
        except (StopTracing, SglError):
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised with the cell position
            raise self._eval_error(exc, expr) from exc

    def _eval_error(self, exc: Exception, expr: n.PyExpr, what: str = "") -> SglEvalError:
        start, end = expr.start, expr.end
        tb = exc.__traceback__
        frame_tb = None
        while tb is not None:  # the outermost frame running this expression's code
            if tb.tb_frame.f_code is expr.code and frame_tb is None:
                frame_tb = tb
            tb = tb.tb_next
        if frame_tb is not None and frame_tb.tb_lasti >= 0:
            positions = list(expr.code.co_positions())
            index = frame_tb.tb_lasti // 2
            if index < len(positions):
                line, end_line, col, end_col = positions[index]
                if None not in (line, end_line, col, end_col):
                    start = expr.cell_offset(line, col, True)
                    end = expr.cell_offset(end_line, end_col, True)
        message = f"{type(exc).__name__}: {exc}"
        if what:
            message = f"{what}: {message}"
        template = self.program.template
        return SglEvalError(message, template.source, start, end, template.first_line)

    def iterate(self, expr: n.PyExpr, what: str) -> list:
        value = self.eval(expr)
        try:
            return list(value)
        except (StopTracing, SglError):
            raise
        except Exception as exc:  # noqa: BLE001
            template = self.program.template
            raise SglEvalError(f"{what} needs an iterable: {type(exc).__name__}: {exc}", template.source,
                               expr.start, expr.end, template.first_line) from exc

    def bind(self, target: n.PyTarget, item: Any, layer: dict) -> None:
        try:
            exec(target.code, {"__builtins__": builtins, "__sgl_item__": item}, layer)  # noqa: S102
        except Exception as exc:  # noqa: BLE001 - e.g. unpacking the wrong number of values
            template = self.program.template
            raise SglEvalError(f"cannot bind {target.text.split(' in ')[0].strip()!r}: {type(exc).__name__}: "
                               f"{exc}", template.source, target.start, target.end, template.first_line) from exc

    # ------------------------------------------------------------ nodes
    def body(self, nodes: list[n.Node]) -> None:
        for node in nodes:
            if isinstance(node, n.Text):
                self.text(node.text)
            elif isinstance(node, n.Expr):
                self.expr(node)
            elif isinstance(node, n.Role):
                self.switch_role(node.role)
            elif isinstance(node, n.For):
                self.for_(node)
            elif isinstance(node, n.If):
                self.if_(node)
            elif isinstance(node, n.Fork):
                self.fork(node)
            else:  # pragma: no cover - the parser builds only the types above
                raise TypeError(f"unknown cell node {node!r}")

    def expr(self, node: n.Expr) -> None:
        self.flush()  # the expression may append to `s` itself (a sub-program call)
        value = self.eval(node.expr)
        if value is None:  # maybe a sub-program call that appended by itself
            self.program._register(self.state, node, "maybe a sub-program")
            return
        if isinstance(value, IrExpr):
            self.program._register(self.state, node, value)
            self._append(value)
            self.at_role_start = False
            return
        text = str(value)
        if text:
            self._append(text)
            self.at_role_start = False

    def for_(self, node: n.For) -> None:
        for item in self.iterate(node.iterable, "{for}"):
            layer: dict[str, Any] = {}
            self.bind(node.target, item, layer)
            saved = self.vars
            self.vars = saved.new_child(layer)
            try:
                self.body(node.body)
            finally:
                self.vars = saved

    def if_(self, node: n.If) -> None:
        for condition, branch in node.branches:
            if self.eval(condition, bool):
                self.body(branch)
                return
        if node.orelse is not None:
            self.body(node.orelse)

    def fork(self, node: n.Fork) -> None:
        if node.count is not None:
            count = self.eval(node.count)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                template = self.program.template
                raise SglEvalError(f"{{fork}} count must be a non-negative int, got {count!r}", template.source,
                                   node.count.start, node.count.end, template.first_line)
            items: list = [None] * count
        else:
            items = self.iterate(node.iterable, "{fork}")
        self.flush()
        if not items:
            return
        if len(items) > 1:
            self.program._register(self.state, node, "fork commit")  # the shared prefix is committed first
        forks = self.state.fork(len(items))
        for item, child in zip(items, forks):
            layer: dict[str, Any] = {}
            if node.target is not None:
                self.bind(node.target, item, layer)
            walk = _Walk(self.program, child, self.vars.new_child(layer), self.role, self.at_role_start)
            walk.body(node.body)
            walk.finish(close_role=False)
        forks.join(node.join_mode)
