"""Errors of `%%sgl` cells: the message plus the cell line with a caret, and no Python traceback noise.

Every error here formats itself as::

    SglSyntaxError: unclosed {fork} block (add {join})
      cell line 6, column 1:
        {fork d in dims}
        ^^^^^^^^^^^^^^^^

`str(error)` is that text (minus the class name), so exported pipelines print it too; inside IPython,
`_render_traceback_` replaces the traceback with it. The original exception stays on `__cause__`.
"""

from __future__ import annotations


class SglError(Exception):
    """An error located in a cell's source. `offset`/`end_offset` are character offsets into `source`.

    `first_line` is the cell line number of `source`'s first line (2 for a cell body under its `%%sgl` line).
    After construction `line` and `column` (1-based) and `source_line` describe the location, or are None.
    """

    def __init__(
        self, message: str, source: str | None = None, offset: int | None = None, end_offset: int | None = None,
        first_line: int = 1,
    ) -> None:
        self.message = message
        self.source = source
        self.offset = offset
        self.end_offset = end_offset
        self.first_line = first_line
        self.line: int | None = None
        self.column: int | None = None
        self.source_line: str | None = None
        self._caret = ""
        if source is not None and offset is not None:
            self._locate(source, offset, end_offset)
        super().__init__(self.format())

    def _locate(self, source: str, offset: int, end_offset: int | None) -> None:
        offset = max(0, min(offset, len(source)))
        line_start = source.rfind("\n", 0, offset) + 1
        line_end = source.find("\n", offset)
        if line_end == -1:
            line_end = len(source)
        text = source[line_start:line_end]
        col = offset - line_start
        width = 1
        if end_offset is not None and end_offset > offset:
            width = max(1, min(end_offset, line_end) - offset)
        self.line = self.first_line + source.count("\n", 0, line_start)
        self.column = col + 1
        self.source_line = text
        # keep tabs under tabs so the caret lines up however the frontend renders them
        self._caret = "".join("\t" if ch == "\t" else " " for ch in text[:col]) + "^" * width

    def format(self) -> str:
        """The message, then (when located) the cell line and a caret under the problem."""
        if self.line is None:
            return self.message
        return (
            f"{self.message}\n  cell line {self.line}, column {self.column}:\n"
            f"    {self.source_line}\n    {self._caret}"
        )

    def _render_traceback_(self) -> list[str]:
        """IPython shows these lines instead of a traceback."""
        return f"{type(self).__name__}: {self.format()}".split("\n")


class SglSyntaxError(SglError, ValueError):
    """The cell (or its `%%sgl` line) does not parse."""


class SglEvalError(SglError):
    """A `{...}` expression (or a block header) raised while the program ran; `__cause__` is the exception."""


class SglRuntimeError(SglError, RuntimeError):
    """A primitive failed while executing (the backend refused or errored); points at its `{...}` when known."""


class SglUsageError(SglError, ValueError):
    """Bad `%%sgl` options (unknown flag, bad value, a `--backend`/`--batch` expression that fails)."""


class CellInterrupted(KeyboardInterrupt):
    """The kernel was interrupted while a cell ran; the cell's requests were aborted and their KV freed."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self.message}"]
