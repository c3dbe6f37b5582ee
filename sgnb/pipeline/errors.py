"""Errors of `sgnb export` and `sgnb run`: each message names the file and the cell or row at fault."""

from __future__ import annotations


class PipelineError(ValueError):
    """Bad input to `sgnb export` / `sgnb run` (the CLI prints the message without a traceback)."""


class NotebookError(PipelineError):
    """The notebook cannot be exported: unreadable, not a notebook, no `%%sgl` cells, or a cell that fails to
    parse. The message names the notebook and the cell (1-based, as Jupyter counts them)."""


class RowError(PipelineError):
    """An input or output row file is malformed, or a row lacks a program parameter. The message names the
    file and the row (0-based index, the `index` field of output rows) and its line number."""


class OutputError(PipelineError):
    """The output file cannot be written (missing folder, no permission, exists without --resume...)."""


class ProgramNotFoundError(PipelineError):
    """`FILE:PROGRAM` does not name a program of that pipeline module."""


class NotReadable(Exception):
    """A `%%sgl` cell cannot be written as plain statements with the same behaviour; `str()` says why. Internal
    to `sgnb export`, which then embeds the cell source instead."""
