"""Kernel interrupts during %%sgl cells: the cell's requests are aborted, KV freed, the next cell runs.

The interrupt is a real SIGINT delivered to the main thread (where IPython runs the cell) once the engine is
generating for the cell.
"""

from __future__ import annotations

import time

import pytest

from sgnb.magics import CellInterrupted
from tests.lang.interrupt_helpers import assert_engine_idle, interrupt_when_running

pytestmark = pytest.mark.slow

LONG_GEN = 'gen("story", max_tokens=2000, ignore_eos=True)'


def test_interrupt_aborts_the_running_gen_and_the_next_cell_runs(ip, run, engine, capsys):
    fired = interrupt_when_running(engine, delay=0.3)
    started = time.monotonic()
    result = ip.run_cell(f"%%sgl --no-widget\nTell a very long story: {{{LONG_GEN}}}")
    elapsed = time.monotonic() - started
    assert fired.is_set()
    err = result.error_in_exec
    assert isinstance(err, CellInterrupted) and isinstance(err, KeyboardInterrupt)
    assert "aborted 1 running request(s)" in str(err)
    out = capsys.readouterr().out
    assert "KeyboardInterrupt: cell interrupted; aborted 1 running request(s)" in out
    assert "Traceback" not in out
    assert elapsed < 20  # 2000 tokens would take minutes
    assert_engine_idle(engine)
    partial = ip.user_ns["_sgl"]  # the state so far stays inspectable
    assert partial.error() is not None and "story" not in partial

    run('%%sgl --no-widget --max-tokens 3 --out after\nAfterwards: {gen("x")}')
    assert ip.user_ns["after"].error() is None and isinstance(ip.user_ns["after"]["x"], str)
    assert_engine_idle(engine)


def test_interrupt_during_a_fork_aborts_every_child(ip, run, engine):
    fired = interrupt_when_running(engine, num_running=3, delay=0.3)
    result = ip.run_cell("%%sgl --no-widget\nStories:\n{fork i in range(3)}\n"
                         f"Story {{i}}: {{{LONG_GEN}}}\n{{join}}\nThe end: {{gen('end', max_tokens=2)}}")
    assert fired.is_set()
    assert isinstance(result.error_in_exec, CellInterrupted)
    assert "aborted 3 running request(s)" in str(result.error_in_exec)
    assert_engine_idle(engine)
    state = ip.user_ns["_sgl"]
    children = state.snapshot()["children"]
    assert len(children) == 3 and all(child["is_finished"] for child in children)
    assert "end" not in state  # the program stopped: nothing after the join ran
    run('%%sgl --no-widget --max-tokens 2\nNext: {gen("x")}')


def test_interrupt_during_batch_aborts_all_rows(ip, run, engine):
    ip.user_ns["rows"] = [{"n": i} for i in range(3)]
    fired = interrupt_when_running(engine, num_running=3, delay=0.3)
    result = ip.run_cell(f"%%sgl --batch rows\nStory {{n}}: {{{LONG_GEN}}}")
    assert fired.is_set()
    assert isinstance(result.error_in_exec, CellInterrupted)
    assert_engine_idle(engine)
    run('%%sgl --batch rows --max-tokens 2\nNumber {n}: {gen("x")}')
    assert [s.error() for s in ip.user_ns["_sgl"]] == [None, None, None]
