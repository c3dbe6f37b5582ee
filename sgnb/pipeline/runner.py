"""`sgnb run pipeline.py:PROGRAM --input rows --output out.jsonl`: a program over a file of rows, unattended.

- Rows run concurrently on `num_threads` daemon threads (the engine batches them); each finished row is
  appended to the output at once (write + flush + fsync), in finishing order, tagged with its input `index`.
- Ctrl-C (SIGINT) stops the run; nothing written is lost. `--resume` skips the rows the output already holds
  (rows that failed, and a last line cut short by a kill, are dropped and run again), so after any number
  of interruptions every row is in the output exactly once.
- A row whose program raises records `"error"` and the run goes on; the exit status is 1 when any row
  failed, 130 when interrupted.
- Everything that can be checked before the model loads is: the rows parse, every row has a column for each
  required parameter, the output can be written.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from sgnb.pipeline.errors import OutputError, ProgramNotFoundError, RowError
from sgnb.pipeline.rows import InputRow, OutputFile, check_writable, read_output, read_rows, rewrite_output

EXIT_OK, EXIT_ROWS_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@dataclass(slots=True)
class RunSummary:
    num_rows: int
    num_ok: int = 0
    num_failed: int = 0
    num_skipped: int = 0  # already in the output (--resume)
    is_interrupted: bool = False
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.is_interrupted:
            return EXIT_INTERRUPTED
        return EXIT_ROWS_FAILED if self.num_failed else EXIT_OK


# ------------------------------------------------------------------ loading
def load_pipeline(path: str | Path) -> ModuleType:
    """Import a pipeline file (the module's own errors propagate with their traceback)."""
    path = Path(path)
    if not path.is_file():
        raise ProgramNotFoundError(f"{path}: no such pipeline file")
    name = "sgnb_pipeline_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ProgramNotFoundError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def pipeline_programs(module: ModuleType) -> dict[str, Any]:
    from sgnb.lang.program import SglFunction

    return {k: v for k, v in vars(module).items() if isinstance(v, SglFunction) and not k.startswith("_")}


def find_program(module: ModuleType, name: str | None, where: str) -> tuple[str, Any]:
    """The program `name` of a pipeline module (the only one when `name` is None)."""
    programs = pipeline_programs(module)
    listing = ", ".join(sorted(programs)) or "none"
    if name is None:
        if len(programs) == 1:
            return next(iter(programs.items()))
        raise ProgramNotFoundError(f"{where} holds {len(programs)} programs ({listing}): name one as "
                                   f"{where}:PROGRAM")
    if name not in programs:
        raise ProgramNotFoundError(f"{where} has no program {name!r}; its programs: {listing}")
    return name, programs[name]


def program_arguments(program: Any, rows: list[InputRow], path: Path, name: str) -> list[dict[str, Any]]:
    """Each row's keyword arguments for `program`: the columns named like its parameters (all columns when it
    takes `**kwargs`). Raises `RowError` for a row lacking a required parameter's column."""
    params = list(program.signature.parameters.values())[1:]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL) for p in params):
        raise RowError(f"program {name!r} takes positional-only parameters; rows can only pass named ones")
    bound = set(getattr(program, "bind_arguments", {}) or {})
    required = [p.name for p in named if p.default is inspect.Parameter.empty and p.name not in bound]
    out = []
    for row in rows:
        missing = [p for p in required if p not in row.values]
        if missing:
            have = ", ".join(row.values) or "no columns"
            raise RowError(f"{path} row {row.index} (line {row.line}): missing column {missing[0]!r} for the "
                           f"parameter {missing[0]!r} of program {name!r} (the row has: {have})")
        if takes_any:
            out.append(dict(row.values))
        else:
            out.append({p.name: row.values[p.name] for p in named if p.name in row.values})
    return out


def make_backend(spec: str | None) -> tuple[Any, bool]:
    """`(backend, owned)`: an http(s) URL is a `RuntimeEndpoint`; anything else a model name or path for an
    in-process engine (owned: shut down at the end). None: sgnb's default model."""
    if spec is not None and spec.startswith(("http://", "https://")):
        from sgnb.lang.backends.runtime_endpoint import RuntimeEndpoint

        return RuntimeEndpoint(spec), False
    from sgnb.lang.backends.engine_backend import EngineBackend
    from sgnb.lang.global_config import global_config

    return EngineBackend(model=spec or global_config.default_model), True


# ------------------------------------------------------------------ running
def run_rows(program: Any, name: str, rows: list[InputRow], arguments: list[dict[str, Any]], output: Path,
             backend: Any, *, num_threads: int | None = None, resume: bool = False, defaults: dict | None = None,
             show_progress: bool = True) -> RunSummary:
    """Run `program` over `rows` (with `arguments[i]` for row i), appending records to `output`."""
    records, is_truncated = read_output(output)
    if records and not resume:  # run_pipeline refuses this earlier; a direct caller gets the same rule
        raise OutputError(f"{output} already holds {len(records)} rows: pass --resume to continue that run, or "
                          "--overwrite to start again")
    by_index = {row.index: row for row in rows}
    for index, record in records.items():
        row = by_index.get(index)
        if row is None or record.get("input") != row.values:
            raise OutputError(f"{output} has a record for row {index} whose input differs from the input file's "
                              "row: it was written for other input; use another --output or --overwrite")
    done = {i for i, r in records.items() if r.get("error") is None}
    if is_truncated or len(done) < len(records):  # drop failed rows (they run again) and a cut-off last line
        rewrite_output(output, [r for i, r in sorted(records.items()) if i in done])
    todo = [(row, args) for row, args in zip(rows, arguments) if row.index not in done]
    summary = RunSummary(len(rows), num_skipped=len(rows) - len(todo))
    if not todo:
        return summary
    if num_threads is None:
        num_threads = min(len(todo), 64)
    from sgnb.lang.backends.base import SamplingSpec

    # run()'s defaults, then the program's own (a %%sgl cell's), then the pipeline's RUN_DEFAULTS
    spec = SamplingSpec().replace(**{**getattr(program, "run_defaults", {}), **(defaults or {})})
    _precache(program, backend)
    jobs: queue.Queue = queue.Queue()
    results: queue.Queue = queue.Queue()
    for item in todo:
        jobs.put(item)

    def worker() -> None:
        while True:
            try:
                row, args = jobs.get_nowait()
            except queue.Empty:
                return
            results.put(_run_one(program, row, args, backend, spec))

    began = time.monotonic()
    for i in range(min(num_threads, len(todo))):  # daemon threads: an interrupt does not wait for them
        threading.Thread(target=worker, name=f"sgnb-run-{i}", daemon=True).start()
    progress = _Progress(name, len(rows), summary.num_skipped, show_progress)
    try:
        with OutputFile(output) as out:
            for _ in range(len(todo)):
                record = _get(results)
                out.write(record)
                if record["error"] is None:
                    summary.num_ok += 1
                else:
                    summary.num_failed += 1
                progress.advance(summary)
    except KeyboardInterrupt:
        summary.is_interrupted = True
    finally:
        progress.close()
        summary.seconds = time.monotonic() - began
    return summary


def _get(results: queue.Queue) -> dict:
    while True:  # a timeout keeps the main thread responsive to Ctrl-C
        try:
            return results.get(timeout=0.2)
        except queue.Empty:
            continue


def _run_one(program: Any, row: InputRow, args: dict, backend: Any, spec: Any) -> dict:
    """Run one row on the calling (daemon) thread and record its variables or its error. The arguments travel
    as a dict, so a parameter may be called `n` or `temperature` without clashing with `run()`'s keywords."""
    from sgnb.lang.program import run_program

    record: dict[str, Any] = {"index": row.index, "input": row.values, "output": None, "error": None}
    try:
        kwargs = {**program.bind_arguments, **args}
        program.signature.bind(None, **kwargs)  # a TypeError naming the missing or unexpected argument
        state = run_program(program, backend, (), kwargs, spec, stream=False, raise_errors=False)
        error = state.error()
        if error is None:
            record["output"] = dict(state.stream_executor.data.variables)
    except Exception as exc:  # noqa: BLE001 - a failing row is recorded, the run goes on
        error = exc
    if error is not None:
        message = getattr(error, "message", None) if hasattr(error, "_render_traceback_") else None
        record["error"] = f"{type(error).__name__}: {message or error}"
    return record


def _precache(program: Any, backend: Any) -> None:
    """Commit the program's constant prefix into the cache once, as `run_batch` does (an optimisation only)."""
    from sgnb.lang.program import precache_prefix

    try:
        precache_prefix(program, backend)
    except Exception as exc:  # noqa: BLE001
        print(f"sgnb run: note: could not precache the program's prefix ({type(exc).__name__}: {exc})",
              file=sys.stderr)


class _Progress:
    """A rich progress bar on stderr: rows done (of all rows, skipped ones included), ok / failed counts."""

    def __init__(self, name: str, total: int, num_skipped: int, enabled: bool) -> None:
        self.progress = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)
        self.progress.start()
        status = f"{num_skipped} already done" if num_skipped else ""
        self.task = self.progress.add_task(name, total=total, completed=num_skipped, status=status)

    def advance(self, summary: RunSummary) -> None:
        if self.progress is not None:
            status = f"[green]{summary.num_ok} ok[/green]"
            if summary.num_failed:
                status += f" [red]{summary.num_failed} failed[/red]"
            self.progress.update(self.task, advance=1, status=status)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


# ------------------------------------------------------------------ the command
def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options shared by `sgnb run` and an exported pipeline's `__main__`."""
    parser.add_argument("--input", "-i", required=True, help="rows: a .jsonl (one JSON object per line) or .csv file")
    parser.add_argument("--output", "-o", required=True, help="output .jsonl file, one record per row")
    parser.add_argument("--backend", default=None,
                        help="model name or path (an in-process engine; default smollm2-135m), or the http(s) "
                             "URL of an `sgnb serve` / SGLang server")
    parser.add_argument("--num-threads", type=int, default=None,
                        help="rows run at once (default: up to 64)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run: skip the rows the output already holds")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_pipeline(module: ModuleType, where: str, program_name: str | None, args: argparse.Namespace) -> int:
    """Check everything, load the backend, run, print a summary; returns the exit code."""
    if args.num_threads is not None and args.num_threads < 1:
        raise ValueError(f"--num-threads must be >= 1, got {args.num_threads}")
    if args.resume and args.overwrite:
        raise ValueError("pass --resume or --overwrite, not both")
    name, program = find_program(module, program_name, where)
    input_path, output = Path(args.input), Path(args.output)
    rows = read_rows(input_path)
    arguments = program_arguments(program, rows, input_path, name)
    if output.exists() and input_path.exists() and output.resolve() == input_path.resolve():
        raise OutputError(f"the output file {output} is the input file")
    check_writable(output)
    records, _ = read_output(output)
    if records and not args.resume:
        if not args.overwrite:
            raise OutputError(f"{output} already holds {len(records)} rows: pass --resume to continue that run, "
                              "or --overwrite to start again")
    if args.overwrite:
        rewrite_output(output, [])
    defaults = dict(getattr(module, "RUN_DEFAULTS", {}).get(name, {}))
    backend, owned = make_backend(args.backend)
    try:
        summary = run_rows(program, name, rows, arguments, output, backend, num_threads=args.num_threads,
                           resume=args.resume, defaults=defaults, show_progress=not args.no_progress)
    finally:
        if owned:
            backend.shutdown()
    _report(summary, output)
    return summary.exit_code


def _report(summary: RunSummary, output: Path) -> None:
    done = summary.num_ok + summary.num_failed
    parts = [f"{done} rows in {summary.seconds:.1f}s: {summary.num_ok} ok, {summary.num_failed} failed"]
    if summary.num_skipped:
        parts.append(f"{summary.num_skipped} already done")
    line = "; ".join(parts)
    if summary.is_interrupted:
        remaining = summary.num_rows - summary.num_skipped - done
        line = f"interrupted: {line}; {remaining} rows left: run again with --resume to finish them"
    elif summary.num_failed:
        line += f" (see the 'error' field in {output}; --resume runs the failed rows again)"
    print(f"sgnb run: {line}", file=sys.stderr)


def split_target(target: str) -> tuple[str, str | None]:
    """`pipeline.py:PROGRAM` -> ("pipeline.py", "PROGRAM"); `pipeline.py` -> ("pipeline.py", None)."""
    path, sep, name = target.rpartition(":")
    if sep and name and name.isidentifier() and path:
        return path, name
    return target, None


def main_for_module(module: ModuleType, argv: list[str] | None = None) -> int:
    """The `__main__` of an exported pipeline: `python pipeline.py PROGRAM --input ROWS --output OUT`."""
    from sgnb.engine.errors import ModelPullError

    where = getattr(module, "__file__", None) or module.__name__
    parser = argparse.ArgumentParser(prog=f"python {Path(where).name}",
                                     description="Run one of this pipeline's programs over a file of rows.")
    parser.add_argument("program", nargs="?", default=None, help=f"one of: {', '.join(pipeline_programs(module))}")
    add_run_options(parser)
    args = parser.parse_args(argv)
    try:
        return run_pipeline(module, where, args.program, args)
    except (ValueError, ModelPullError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
