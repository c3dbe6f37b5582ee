"""A `%%sgl` cell as an ordinary `@function` program: `compile_cell(source, "judge(article)", namespace)`.

The result is a `CellFunction`, an `SglFunction` whose body is the cell (`cell_program.CellProgram`), so
`.run`, `.run_batch`, `.bind`, `.trace`/`.compile` (prefix caching) and calls from other programs
(`judge(s, article)`) behave as for a hand-written program. Usable without IPython (exported pipelines pass
their own `namespace`).
"""

from __future__ import annotations

import builtins
import inspect
from typing import Any, Callable

from sgnb.lang.program import SglFunction
from sgnb.magics.cell_program import CellProgram
from sgnb.magics.errors import SglSyntaxError
from sgnb.magics.parser import parse_header


class CellFunction(SglFunction):
    """An `SglFunction` whose body is a `%%sgl` cell.

    `run_defaults` (e.g. `temperature`, `max_new_tokens`) apply to `run`/`run_batch` unless overridden;
    `backend_factory()` supplies the backend when none is passed.
    """

    def __init__(self, program: CellProgram, name: str, signature: inspect.Signature | None,
                 run_defaults: dict[str, Any] | None = None, backend_factory: Callable[[], Any] | None = None,
                 bind_arguments: dict[str, Any] | None = None) -> None:
        self.program = program
        self.params_signature = signature
        self.run_defaults = dict(run_defaults or {})
        self.backend_factory = backend_factory
        super().__init__(_make_body(program, name, signature), bind_arguments=bind_arguments)

    @property
    def source(self) -> str:
        return self.program.source

    def _with_defaults(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        merged = {**self.run_defaults, **kwargs}
        if merged.get("backend") is None and self.backend_factory is not None:
            merged["backend"] = self.backend_factory()
        return merged

    def run(self, *args: Any, **kwargs: Any):
        return super().run(*args, **self._with_defaults(kwargs))

    def run_batch(self, batch_kwargs: list[dict[str, Any]], **kwargs: Any):
        return super().run_batch(batch_kwargs, **self._with_defaults(kwargs))

    def bind(self, **kwargs: Any) -> CellFunction:
        return CellFunction(self.program, self.__name__, self.params_signature, self.run_defaults,
                            self.backend_factory, {**self.bind_arguments, **kwargs})

    def __repr__(self) -> str:
        params = "" if self.params_signature is None else str(self.params_signature)
        return f"CellFunction({self.__name__}{params})"


def _make_body(program: CellProgram, name: str, signature: inspect.Signature | None) -> Callable:
    """The program function `(s, *params)` with the declared signature (`(s, **params)` when undeclared)."""
    state_param = inspect.Parameter("s", inspect.Parameter.POSITIONAL_OR_KEYWORD)

    def body(s: Any, *args: Any, **kwargs: Any) -> None:
        if signature is None:
            if args:
                raise TypeError(f"program {name!r} takes keyword arguments only")
            params = kwargs
        else:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            params = {}
            for pname, value in bound.arguments.items():
                if signature.parameters[pname].kind is inspect.Parameter.VAR_KEYWORD:
                    params.update(value)
                else:
                    params[pname] = value
        program(s, params)

    if signature is None:
        extra = [inspect.Parameter("params", inspect.Parameter.VAR_KEYWORD)]
    else:
        extra = list(signature.parameters.values())
    body.__signature__ = inspect.Signature([state_param, *extra])  # type: ignore[attr-defined]
    body.__name__ = body.__qualname__ = name
    return body


def compile_cell(
    source: str,
    header: str | None = None,
    namespace: dict | None = None,
    *,
    first_line: int = 1,
    run_defaults: dict[str, Any] | None = None,
    backend_factory: Callable[[], Any] | None = None,
    header_line: str | None = None,
    header_offset: int = 0,
) -> CellFunction:
    """Compile `%%sgl` cell text into a program.

    header:       `"NAME"` or `"NAME(params)"` (Python parameter syntax; defaults are evaluated in `namespace`
                  now). None: an anonymous program taking any keyword arguments.
    namespace:    where names not bound by the program are looked up, live (a notebook's `user_ns`).
    first_line:   the cell line number of `source`'s first line, for error messages (2 under a `%%sgl` line).
    header_line / header_offset: where `header` sits, for error messages about it.
    """
    namespace = namespace if namespace is not None else {}
    name, signature = "cell", None
    if header is not None:
        parsed = parse_header(header, header_line, header_offset)
        name = parsed.name
        scratch = {"__builtins__": builtins, **namespace}
        try:
            exec(parsed.signature_code, scratch)  # noqa: S102 - evaluates the defaults in the notebook namespace
        except Exception as exc:  # noqa: BLE001
            line = header if header_line is None else header_line
            raise SglSyntaxError(f"a parameter default failed: {type(exc).__name__}: {exc}", line,
                                 header_offset + len(header) - len(header.lstrip()), None, 1) from exc
        full = inspect.signature(scratch["__sgl_signature__"])
        signature = full.replace(parameters=list(full.parameters.values())[1:])
    program = CellProgram(source, namespace, first_line)
    return CellFunction(program, name, signature, run_defaults, backend_factory)

