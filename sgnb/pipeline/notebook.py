"""Reading a notebook for export: its code cells and its `%%sgl` cells, in order, with their cell numbers.

Plain JSON reading (nbformat 4); no Jupyter packages needed. Cells are numbered from 1 in notebook order,
markdown cells included, so "cell 5" is the fifth cell a reader sees.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from sgnb.pipeline.errors import NotebookError

SGL_MAGIC = "%%sgl"


@dataclass(slots=True)
class CodeCell:
    """A plain code cell (other cell magics included; `code_cells.py` decides what of it is Python)."""

    number: int
    source: str


@dataclass(slots=True)
class ErrorExampleCell:
    """A cell tagged `raises-exception`: it shows an error on purpose, so export leaves it out."""

    number: int
    source: str


@dataclass(slots=True)
class SglCell:
    """A `%%sgl` cell: `header` is `NAME` / `NAME(params)` or None (a cell that runs at once)."""

    number: int
    magic_line: str  # the first line, `%%sgl ...`
    body: str  # the cell language text (the lines after the magic line)
    header: str | None
    options: dict = field(default_factory=dict)  # temperature, max_tokens, model, backend, out, batch, no_widget

    @property
    def name(self) -> str:
        """The program's name: the header's NAME, or `cell_<number>` for an unnamed cell."""
        if self.header is None:
            return f"cell_{self.number}"
        return self.header.split("(", 1)[0].strip()

    @property
    def run_defaults(self) -> dict:
        """Sampling defaults from the magic line, as `run()` keyword arguments."""
        out = {}
        if self.options.get("temperature") is not None:
            out["temperature"] = self.options["temperature"]
        if self.options.get("max_tokens") is not None:
            out["max_new_tokens"] = self.options["max_tokens"]
        return out


Cell = CodeCell | SglCell | ErrorExampleCell


class _OptionParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)


def _option_parser() -> _OptionParser:
    """The `%%sgl` line's options (the same flags as the magic)."""
    parser = _OptionParser(prog="%%sgl", add_help=False, allow_abbrev=False)
    parser.add_argument("--model")
    parser.add_argument("--backend")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--max-tokens", type=int, dest="max_tokens")
    parser.add_argument("--out")
    parser.add_argument("--batch")
    parser.add_argument("--no-widget", action="store_true", dest="no_widget")
    return parser


def read_notebook(path: str | Path) -> list[Cell]:
    """The code cells and `%%sgl` cells of the notebook at `path`, in order (markdown and raw cells are
    skipped but counted; cells tagged `raises-exception` come back as `ErrorExampleCell`). Raises `NotebookError` naming the file (and cell) when it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such notebook") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NotebookError(f"{path}: cannot read the notebook: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(f"{path}: not a Jupyter notebook (invalid JSON at line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise NotebookError(f"{path}: not a Jupyter notebook (no 'cells' list; nbformat 4 is expected)")
    cells: list[Cell] = []
    for number, cell in enumerate(data["cells"], start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        tags = (cell.get("metadata") or {}).get("tags") or []
        if "raises-exception" in tags:
            cells.append(ErrorExampleCell(number, source))
            continue
        stripped = source.lstrip("\n")
        if stripped.startswith(SGL_MAGIC) and (len(stripped) == len(SGL_MAGIC) or stripped[len(SGL_MAGIC)] in " \t\n"):
            cells.append(parse_sgl_cell(stripped, number, path))
        else:
            cells.append(CodeCell(number, source))
    return cells


def parse_sgl_cell(source: str, number: int, path: str | Path = "<notebook>") -> SglCell:
    """Split a `%%sgl` cell into its magic line (header and options) and body."""
    from sgnb.magics.errors import SglError
    from sgnb.magics.sgl_magic import split_magic_line

    first, _, body = source.partition("\n")
    line = first[len(SGL_MAGIC):]
    try:
        header, _, argv = split_magic_line(line)
        options = vars(_option_parser().parse_args(argv))
    except SglError as exc:
        raise NotebookError(f"{path} cell {number}: bad %%sgl line: {exc}") from None
    except ValueError as exc:
        raise NotebookError(f"{path} cell {number}: bad %%sgl line {first.strip()!r}: {exc}") from None
    return SglCell(number, first.rstrip(), body, header, options)
