"""Interrupt and resume: `sgnb run` (a real subprocess on SmolLM2) is stopped part-way by SIGINT, resumed and
killed by SIGKILL, resumed again; in the end every row is in the output exactly once."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.pipeline.notebook_files import sgnb, sgnb_popen, write_notebook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

NUM_ROWS = 20
PROGRAM = '''\
%%sgl describe(thing) --temperature 0 --max-tokens 16
@user Describe {thing} in one sentence.
@assistant {gen("text", ignore_eos=True)}'''


def _records(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _stop_when(proc, out, num_records, sig, timeout=180.0):
    """Send `sig` once `out` holds at least `num_records` records; returns the exit code."""
    deadline = time.monotonic() + timeout
    while len(_records(out)) < num_records:
        assert proc.poll() is None, f"sgnb run ended early: {proc.communicate()}"
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no progress: {proc.communicate()}")
        time.sleep(0.05)
    proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # it did not stop: fail, but leave no process behind
            proc.kill()
            proc.wait()
    return proc.returncode, stderr


def test_interrupted_runs_resume_and_every_row_is_written_exactly_once(tmp_path):
    nb = write_notebook(tmp_path / "nb.ipynb", PROGRAM)
    assert sgnb("export", nb, "-o", tmp_path / "pipeline.py").returncode == 0
    rows = tmp_path / "rows.jsonl"
    things = [f"a {colour} {item}" for colour in ("red", "blue", "green", "white", "black")
              for item in ("cup", "kite", "boat", "lamp")]
    rows.write_text("".join(json.dumps({"thing": t}) + "\n" for t in things))
    out = tmp_path / "out.jsonl"
    target = f"{tmp_path / 'pipeline.py'}:describe"
    args = ["run", target, "--input", rows, "--output", out, "--num-threads", "2", "--no-progress"]

    # Ctrl-C after a few rows: a clean stop, exit status 130, what was written stays
    code, stderr = _stop_when(sgnb_popen(*args), out, 3, signal.SIGINT)
    first = _records(out)
    assert code == 130 and "interrupted:" in stderr and "--resume" in stderr, stderr
    assert 3 <= len(first) < NUM_ROWS

    # resume, then SIGKILL: no chance to clean up at all
    code, _ = _stop_when(sgnb_popen(*args, "--resume"), out, len(first) + 3, signal.SIGKILL)
    second = _records(out)
    assert code == -signal.SIGKILL and len(first) + 3 <= len(second) < NUM_ROWS
    assert second[:len(first)] == first  # resuming never rewrote finished rows

    # resume to the end
    done = sgnb(*args, "--resume")
    assert done.returncode == 0, done.stderr
    assert f"{len(second)} already done" in done.stderr
    final = _records(out)
    assert sorted(r["index"] for r in final) == list(range(NUM_ROWS))  # every row exactly once
    assert all(r["error"] is None and r["input"] == {"thing": things[r["index"]]} for r in final)
    assert all(r["output"]["text"] for r in final)
