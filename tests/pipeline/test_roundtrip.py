"""Export round trip: notebook 05 exported with `sgnb export` and run with `sgnb run` over its 20-row file gives
the outputs `run_batch` gave inside the notebook (greedy decoding, a real kernel and real subprocesses)."""

from __future__ import annotations

import json

import pytest

from tests.notebooks.execution import NOTEBOOKS, executed
from tests.pipeline.notebook_files import sgnb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_exported_notebook_05_reproduces_run_batch_over_20_rows(tmp_path):
    notebook = executed("05_batch_pipelines")
    rows = notebook.folder / "reviews.jsonl"
    expected = [json.loads(line) for line in (notebook.folder / "notebook_results.jsonl").read_text().splitlines()]
    assert len(expected) == 20

    done = sgnb("export", NOTEBOOKS / "05_batch_pipelines.ipynb", "-o", tmp_path / "pipeline.py")
    assert done.returncode == 0, done.stderr
    done = sgnb("run", f"{tmp_path / 'pipeline.py'}:triage", "--input", rows, "--output", tmp_path / "out.jsonl",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "sgnb run: 20 rows in" in done.stderr and "20 ok, 0 failed" in done.stderr

    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in records) == list(range(20))
    inputs = [json.loads(line) for line in rows.read_text().splitlines()]
    by_index = {r["index"]: r for r in records}
    for row in expected:
        record = by_index[row["index"]]
        assert record["error"] is None and record["input"] == inputs[row["index"]]
        assert record["output"] == {"label": row["label"], "summary": row["summary"]}, row["index"]
