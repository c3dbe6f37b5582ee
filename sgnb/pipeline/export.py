"""`sgnb export NOTEBOOK.ipynb -o pipeline.py`: a notebook's `%%sgl` programs as a plain Python module.

Each named `%%sgl NAME(params)` cell becomes an `@sgnb.function` written as ordinary `s += ...` code
(`cell_codegen.py`), with the cell's source kept above it as a comment. When a cell's behaviour cannot be
written as plain statements (see `errors.NotReadable`), and for unnamed cells (whose parameters are
whatever the rows hold), the cell source is embedded and compiled at import time with
`sgnb.magics.compile_cell`, which runs it exactly as the magic does. The notebook code the programs read
(constants, helper functions, sub-programs, imports) is copied before them, in notebook order, and nothing
else: no engine, widget or display code. `RUN_DEFAULTS` keeps each program's `--temperature` /
`--max-tokens`, and the `__main__` block runs a program over a file of rows like `sgnb run`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from sgnb.magics import nodes as n
from sgnb.pipeline.cell_codegen import readable_program
from sgnb.pipeline.cell_tree import child_bodies, expr_source, expressions, parse_expr, target_names
from sgnb.pipeline.code_cells import Statement, cell_statements, needed_statements
from sgnb.pipeline.errors import NotebookError, NotReadable
from sgnb.pipeline.literals import py_string
from sgnb.pipeline.notebook import CodeCell, ErrorExampleCell, SglCell, read_notebook


@dataclass(slots=True)
class ExportedProgram:
    """One program of the exported module; `embedded_reason` is None when it was written as Python."""

    name: str
    cell: int
    params: str | None
    embedded_reason: str | None


@dataclass(slots=True)
class Export:
    """The generated module source and what it holds; `skipped_cells` notes code cells left out as not Python."""

    source: str
    programs: list[ExportedProgram] = field(default_factory=list)
    skipped_cells: list[str] = field(default_factory=list)


def export_notebook(path: str | Path, output_name: str = "pipeline.py") -> Export:
    """Export the notebook at `path` (`output_name`: the module's file name, for its usage notes).
    Raises `NotebookError` naming the notebook and cell on bad input."""
    from sgnb.magics.errors import SglSyntaxError
    from sgnb.magics.parser import parse_cell, parse_header

    path = Path(path)
    cells = read_notebook(path)
    sgl_cells = [c for c in cells if isinstance(c, SglCell)]
    if not sgl_cells:
        raise NotebookError(f"{path}: no %%sgl cells to export (a program is a code cell that starts with "
                            "'%%sgl NAME(params)')")
    statements: list[Statement] = []
    skipped: list[str] = []
    for cell in cells:
        if isinstance(cell, CodeCell):
            found, note = cell_statements(cell)
            statements += found
            if note:
                skipped.append(f"cell {cell.number}: {note}")
        elif isinstance(cell, ErrorExampleCell):
            skipped.append(f"cell {cell.number}: tagged raises-exception (an error shown on purpose)")
    module_names = {name for st in statements for name in st.defines} | {c.name for c in sgl_cells}

    pieces: dict[int, str] = {}  # cell number -> program code
    programs: list[ExportedProgram] = []
    used: set[str] = set()
    for cell in sgl_cells:
        try:
            params = parse_header(cell.header).params if cell.header is not None else None
            template = parse_cell(cell.body, first_line=2)
        except SglSyntaxError as exc:
            raise NotebookError(f"{path} cell {cell.number}: {type(exc).__name__}: {exc}") from None
        used |= _free_names(template, params)
        reason = "an unnamed cell takes whatever arguments each row holds" if cell.header is None else None
        code = None
        if reason is None:
            try:
                code = readable_program(template, cell.name, params, frozenset(module_names))
            except NotReadable as exc:
                reason = str(exc)
        if code is None:
            code = _embedded_program(cell)
        pieces[cell.number] = _program_block(cell, code, reason)
        programs.append(ExportedProgram(cell.name, cell.number, params, reason))

    chosen = needed_statements(statements, used)
    # a cell's `--out` variable exists only once the cell has run: code reading it cannot run at import
    results = {c.options.get("out") or "_sgl" for c in sgl_cells if c.header is None or c.options.get("batch")}
    results -= {name for st in statements for name in st.defines}
    for st in [st for st in chosen if st.uses & results]:
        chosen.remove(st)
        skipped.append(f"cell {st.cell}: reads {', '.join(sorted(st.uses & results))}, the result of a %%sgl cell "
                       "run in the notebook, which does not exist when the pipeline is imported")
    source = _module_source(path, output_name, cells, chosen, pieces, programs, sgl_cells)
    try:
        compile(source, f"<export of {path}>", "exec")
    except SyntaxError as exc:  # a bug here, not the user's: say where
        raise RuntimeError(f"sgnb export generated invalid Python for {path} (line {exc.lineno}: {exc.msg}); "
                           "please report this with the notebook") from exc
    return Export(source, programs, skipped)


def _free_names(template: n.CellTemplate, params: str | None) -> set[str]:
    """The notebook names a cell may read: every name its expressions and parameter defaults read, minus its
    parameters, loop variables and generated variables (an over-approximation otherwise)."""
    names: set[str] = set()
    local: set[str] = set(template.var_names) | {"s"}
    for expr in expressions(template.body):
        names |= {x.id for x in ast.walk(parse_expr(expr_source(expr))) if isinstance(x, ast.Name)}

    def loops(nodes: list[n.Node]) -> None:
        for node in nodes:
            if isinstance(node, (n.For, n.Fork)) and node.target is not None:
                local.update(target_names(node.target))
            for body in child_bodies(node):
                loops(body)

    loops(template.body)
    if params and params.strip():
        args = ast.parse(f"def f(s, {params}): pass").body[0].args
        local |= {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg) if a}
        for default in (*args.defaults, *(d for d in args.kw_defaults if d is not None)):
            names |= {x.id for x in ast.walk(default) if isinstance(x, ast.Name)}
    return names - local


def _embedded_program(cell: SglCell) -> str:
    header = "None" if cell.header is None else py_string(cell.header)
    lines = [f"{cell.name} = compile_cell(", f"    {_source_literal(cell.body)},", f"    {header},",
             "    globals(),", "    first_line=2,", ")"]
    if cell.header is None:
        lines.append(f"{cell.name}.__name__ = {cell.name!r}")
    return "\n".join(lines)


def _source_literal(text: str) -> str:
    """The cell body as a raw triple-quoted string when possible (regexes keep their backslashes)."""
    if '"""' not in text and not text.endswith("\\") and "\r" not in text and not text.endswith('"'):
        return 'r"""' + text + '"""'
    return py_string(text)


def _program_block(cell: SglCell, code: str, reason: str | None) -> str:
    lines = [f"# --- notebook cell {cell.number}: {cell.magic_line.strip()} ---"]
    if reason is None:
        lines += [f"# {line}".rstrip() for line in cell.body.rstrip("\n").split("\n")]
    else:
        lines.append(f"# kept as %%sgl source, compiled at import (it runs exactly as in the notebook): {reason}")
    return "\n".join([*lines, code])


def _module_source(path: Path, output_name: str, cells: list, chosen: list[Statement], pieces: dict[int, str],
                   programs: list[ExportedProgram], sgl_cells: list[SglCell]) -> str:
    names = ", ".join(f"{p.name}({p.params or ''})" if p.params is not None or p.embedded_reason is None
                      else f"{p.name}(**row)" for p in programs)
    first = programs[-1].name
    doc = f'''"""Pipeline exported from {path.name} by `sgnb export`.

Programs: {names}

Run a program over a file of rows (JSON Lines or CSV, one column per parameter):

    sgnb run {output_name}:{first} --input rows.jsonl --output out.jsonl [--backend MODEL_OR_URL]
    python {output_name} {first} --input rows.jsonl --output out.jsonl

Each %%sgl cell became a program below, its cell source kept above it as a comment; the notebook code the
programs read comes first, in notebook order. RUN_DEFAULTS holds the sampling defaults of each %%sgl line
(--temperature, --max-tokens); `sgnb run` applies them. A `{{name}}` inlined into an f-string prints None
as "None" (a cell appends nothing for None).
"""'''
    out = [doc, "", "import sgnb"]
    if any(p.embedded_reason is not None for p in programs):
        out.append("from sgnb.magics import compile_cell")
    by_cell: dict[int, list[Statement]] = {}
    for st in chosen:
        by_cell.setdefault(st.cell, []).append(st)
    for cell in cells:
        if cell.number in by_cell:
            out += ["", "", f"# --- notebook cell {cell.number} ---"]
            previous = None
            for st in by_cell[cell.number]:  # a blank line around multi-line statements (def, class, for...)
                if previous is not None and ("\n" in previous.source or "\n" in st.source):
                    out.append("")
                out.append(st.source)
                previous = st
        elif cell.number in pieces:
            out += ["", "", pieces[cell.number]]
    defaults = {}
    for cell in sgl_cells:
        defaults[cell.name] = cell.run_defaults
    out += ["", "", "#: sampling defaults from each program's %%sgl line (`sgnb run` applies them)",
            "RUN_DEFAULTS = {"]
    out += [f"    {py_string(name)}: {{{', '.join(f'{py_string(k)}: {v!r}' for k, v in value.items())}}},"
            for name, value in defaults.items()]
    out += ["}", "", "",
            'if __name__ == "__main__":  # python THIS_FILE PROGRAM --input ROWS --output OUT',
            "    import sys", "",
            "    from sgnb.pipeline.runner import main_for_module", "",
            "    sys.exit(main_for_module(sys.modules[__name__], sys.argv[1:]))", ""]
    return "\n".join(out)
