"""The `%%sgl` cell magic and its cell language.

`%load_ext sgnb` (or `%load_ext sgnb.magics`) registers the magic. The parser and the program builder are
plain Python, usable without IPython: `compile_cell(source, "judge(article)", namespace)` returns a program
like any `@function`. Nothing here imports IPython until the extension is loaded.
"""

from __future__ import annotations

from typing import Any

from sgnb.magics.cell_function import CellFunction, compile_cell
from sgnb.magics.cell_program import CellProgram
from sgnb.magics.errors import (
    CellInterrupted,
    SglError,
    SglEvalError,
    SglRuntimeError,
    SglSyntaxError,
    SglUsageError,
)
from sgnb.magics.parser import parse_cell

__all__ = [
    "CellFunction", "CellInterrupted", "CellProgram", "SglError", "SglEvalError", "SglRuntimeError",
    "SglSyntaxError", "SglUsageError", "compile_cell", "load_ipython_extension", "parse_cell",
    "unload_ipython_extension",
]

_loaded: dict[int, Any] = {}  # id(shell) -> its SglMagics instance


def load_ipython_extension(ip: Any) -> None:
    """Register `%%sgl` (and `SglMagics` for `%config`) on an IPython shell."""
    from sgnb.magics.sgl_magic import SglMagics

    magics = SglMagics(ip)  # Magics.__init__ adds it to ip.configurables, so %config reaches it
    ip.register_magics(magics)
    _loaded[id(ip)] = magics


def unload_ipython_extension(ip: Any) -> None:
    magics = _loaded.pop(id(ip), None)
    if magics is not None and magics in getattr(ip, "configurables", []):
        ip.configurables.remove(magics)
