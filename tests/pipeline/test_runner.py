"""`sgnb run`: bad input is refused before any model loads, with the file and row named; a failing row is
recorded and the run goes on; `--resume` runs only what is not done yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import sgnb
from sgnb.pipeline.export import export_notebook
from sgnb.pipeline.rows import read_output, read_rows
from sgnb.pipeline.runner import load_pipeline, program_arguments, run_rows
from tests.pipeline.notebook_files import REPO, write_notebook
from tests.pipeline.notebook_files import sgnb as sgnb_cli

PROGRAM = '''\
%%sgl count(word, n) --temperature 0
@user Repeat the word {word}.
@assistant {gen("echo", max_tokens=int(n), ignore_eos=True)}'''


@pytest.fixture
def pipeline(tmp_path):
    """A pipeline exported from a one-program notebook, and a good input file for it."""
    nb = write_notebook(tmp_path / "nb.ipynb", PROGRAM)
    path = tmp_path / "pipeline.py"
    path.write_text(export_notebook(nb).source)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"word": w, "n": n}) + "\n" for w, n in [("red", 2), ("blue", "x"), ("tea", 3)]))
    return path, rows


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("case", ["missing column", "malformed row", "unwritable output", "unknown program",
                                  "output exists", "csv field count"])
def test_bad_input_is_refused_before_the_model_loads(pipeline, tmp_path, case):
    path, rows = pipeline
    out = tmp_path / "out.jsonl"
    target = f"{path}:count"
    if case == "missing column":
        rows.write_text('{"word": "red", "n": 1}\n{"word": "blue"}\n')
        expected = f"{rows} row 1 (line 2): missing column 'n' for the parameter 'n' of program 'count' " \
                   "(the row has: word)"
    elif case == "malformed row":
        rows.write_text('{"word": "red", "n": 1}\n\n{"word": blue}\n')
        expected = f"{rows} row 1 (line 3): not valid JSON"
    elif case == "unwritable output":
        out = tmp_path / "missing" / "out.jsonl"
        expected = f"cannot write the output file {out}: the folder {out.parent} does not exist"
    elif case == "unknown program":
        target = f"{path}:counts"
        expected = f"{path} has no program 'counts'; its programs: count"
    elif case == "output exists":
        out.write_text(json.dumps({"index": 0, "input": {"word": "red", "n": 2}, "output": {}, "error": None}) + "\n")
        expected = f"{out} already holds 1 rows: pass --resume to continue that run, or --overwrite"
    else:
        rows = tmp_path / "rows.csv"
        rows.write_text("word,n\nred,1\nblue,2,extra\n")
        expected = f"{rows} row 1 (line 3): 3 fields, but the header has 2 (word, n)"
    done = sgnb_cli("run", target, "--input", rows, "--output", out, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == f"sgnb run: error: {expected}" or expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_failing_row_records_its_error_and_the_run_goes_on(pipeline, tmp_path, engine):
    path, rows_file = pipeline
    module = load_pipeline(path)
    program = module.count
    rows = read_rows(rows_file)
    arguments = program_arguments(program, rows, rows_file, "count")
    out = tmp_path / "out.jsonl"
    backend = sgnb.EngineBackend(engine=engine)
    summary = run_rows(program, "count", rows, arguments, out, backend, num_threads=2,
                       defaults=module.RUN_DEFAULTS["count"], show_progress=False)
    assert (summary.num_ok, summary.num_failed, summary.exit_code) == (2, 1, 1)
    records = {r["index"]: r for r in _lines(out)}
    assert sorted(records) == [0, 1, 2]
    assert records[1]["output"] is None and records[1]["error"].startswith("ValueError: invalid literal for int()")
    assert records[1]["input"] == {"word": "blue", "n": "x"}
    assert records[0]["error"] is None and records[2]["error"] is None
    assert records[0]["output"]["echo"] and records[2]["output"]["echo"]  # `n` reached the program, not run()

    # --resume: the ok rows are skipped, the failed one runs again and replaces its old record
    rows_file.write_text(rows_file.read_text().replace('"x"', "1"))
    rows = read_rows(rows_file)
    with pytest.raises(ValueError, match="whose input differs"):  # the input changed under the output
        run_rows(program, "count", rows, program_arguments(program, rows, rows_file, "count"), out, backend,
                 resume=True, show_progress=False)
    rows_file.write_text(rows_file.read_text().replace('"n": 1', '"n": "x"'))
    rows = read_rows(rows_file)
    summary = run_rows(program, "count", rows, program_arguments(program, rows, rows_file, "count"), out, backend,
                       resume=True, defaults=module.RUN_DEFAULTS["count"], show_progress=False)
    assert (summary.num_skipped, summary.num_ok, summary.num_failed) == (2, 0, 1)
    records, _ = read_output(out)
    assert sorted(records) == [0, 1, 2] and len(out.read_text().splitlines()) == 3
    engine.check_integrity()


def test_rows_feed_only_the_parameters_and_defaults_may_be_left_out(tmp_path):
    nb = write_notebook(tmp_path / "nb.ipynb", "%%sgl f(a, b=2)\n@user {a} {b}",
                        "%%sgl --temperature 0\n@user {anything}")
    path = tmp_path / "p.py"
    path.write_text(export_notebook(nb).source)
    module = load_pipeline(path)
    rows_file = tmp_path / "rows.csv"
    rows_file.write_text("a,extra\n1,zzz\n")
    rows = read_rows(rows_file)
    assert program_arguments(module.f, rows, rows_file, "f") == [{"a": "1"}]
    # an unnamed cell takes whatever the row holds
    assert program_arguments(module.cell_2, rows, rows_file, "cell_2") == [{"a": "1", "extra": "zzz"}]


@pytest.mark.slow
def test_a_server_url_backend_and_the_modules_own_main_give_the_in_process_results(pipeline, tmp_path, engine,
                                                                                   server):  # noqa: F811
    """`--backend http://...` sends the rows to `sgnb serve` (here over the session engine); `python pipeline.py
    PROGRAM ...` is the same command; both match an in-process run, greedy."""
    path, rows_file = pipeline
    rows_file.write_text(rows_file.read_text().replace('"x"', "1"))
    module = load_pipeline(path)
    rows = read_rows(rows_file)
    local = tmp_path / "local.jsonl"
    run_rows(module.count, "count", rows, program_arguments(module.count, rows, rows_file, "count"), local,
             sgnb.EngineBackend(engine=engine), defaults=module.RUN_DEFAULTS["count"], show_progress=False)
    expected = {r["index"]: r["output"] for r in _lines(local)}

    via_cli = tmp_path / "cli.jsonl"
    done = sgnb_cli("run", path, "--input", rows_file, "--output", via_cli, "--backend", server.url, timeout=120)
    assert done.returncode == 0, done.stderr  # `pipeline.py` alone: its only program
    via_main = tmp_path / "main.jsonl"
    done = subprocess.run([sys.executable, path, "count", "--input", rows_file, "--output", via_main, "--backend",
                           server.url, "--no-progress"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert "3 ok, 0 failed" in done.stderr
    for out in (via_cli, via_main):
        assert {r["index"]: r["output"] for r in _lines(out)} == expected
    engine.check_integrity()
