"""The `sgnb export` and `sgnb run` subcommands (registered in `sgnb.cli.COMMANDS`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", help="the .ipynb notebook whose %%sgl cells become programs")
    parser.add_argument("-o", "--output", default="-", help="the Python file to write (default: stdout)")


def export_run(args: argparse.Namespace) -> int:
    """Export a notebook's %%sgl programs (and the code they use) as a plain Python pipeline module."""
    from sgnb.pipeline.errors import OutputError
    from sgnb.pipeline.export import export_notebook

    result = export_notebook(args.notebook, "pipeline.py" if args.output == "-" else Path(args.output).name)
    if args.output == "-":
        sys.stdout.write(result.source)
    else:
        out = Path(args.output)
        try:
            out.write_text(result.source, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    for note in result.skipped_cells:
        print(f"sgnb export: {args.notebook} {note}: left out", file=sys.stderr)
    for program in result.programs:
        if program.embedded_reason is not None:
            print(f"sgnb export: {program.name} (cell {program.cell}) kept as %%sgl source: "
                  f"{program.embedded_reason}", file=sys.stderr)
    if args.output != "-":
        names = ", ".join(p.name for p in result.programs)
        print(f"sgnb export: wrote {args.output} with {len(result.programs)} program(s): {names}", file=sys.stderr)
    return 0


def run_arguments(parser: argparse.ArgumentParser) -> None:
    from sgnb.pipeline.runner import add_run_options

    parser.add_argument("target", help="PIPELINE.py:PROGRAM (the program may be left out when there is only one)")
    add_run_options(parser)


def run_run(args: argparse.Namespace) -> int:
    """Run a pipeline program over a file of rows (resumable; one output record per row)."""
    from sgnb.pipeline.runner import load_pipeline, run_pipeline, split_target

    path, name = split_target(args.target)
    module = load_pipeline(path)
    return run_pipeline(module, path, name, args)
