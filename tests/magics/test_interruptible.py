"""Kernel interrupts during %%sgl cells: the cell's requests are aborted, KV freed, the next cell runs.

The interrupt is a real SIGINT delivered to the main thread (where IPython runs the cell) once the engine is
generating for the cell.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from sgnb.magics import CellInterrupted
from sgnb.magics.interruptible import CancelledError, TrackedEngine

pytestmark = pytest.mark.slow

LONG_GEN = 'gen("story", max_tokens=2000, ignore_eos=True)'


def interrupt_while_generating(engine, num_running: int = 1, delay: float = 0.3) -> threading.Event:
    """SIGINT the main thread `delay` s after `num_running` of the cell's requests are generating."""
    fired = threading.Event()

    def fire() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            running = [r for r in engine.snapshot()["running"] if r.startswith("sgl-cell-")]
            if len(running) >= num_running:
                time.sleep(delay)
                fired.set()
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                return
            time.sleep(0.02)

    threading.Thread(target=fire, name="test-interrupter", daemon=True).start()
    return fired


def assert_engine_idle(engine) -> None:
    stats = engine.stats()
    assert stats["num_running"] == 0 and stats["num_waiting"] == 0
    assert engine.snapshot()["running"] == []
    engine.check_integrity()  # free + cached + in-use slots account for the whole pool


def test_interrupt_aborts_the_running_gen_and_the_next_cell_runs(ip, run, engine, capsys):
    fired = interrupt_while_generating(engine)
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
    fired = interrupt_while_generating(engine, num_running=3)
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
    fired = interrupt_while_generating(engine, num_running=3)
    result = ip.run_cell(f"%%sgl --batch rows\nStory {{n}}: {{{LONG_GEN}}}")
    assert fired.is_set()
    assert isinstance(result.error_in_exec, CellInterrupted)
    assert_engine_idle(engine)
    run('%%sgl --batch rows --max-tokens 2\nNumber {n}: {gen("x")}')
    assert [s.error() for s in ip.user_ns["_sgl"]] == [None, None, None]


def test_tracked_engine_names_requests_and_refuses_new_ones_after_cancel(engine):
    tracked = TrackedEngine(engine)
    results = tracked.generate(prompt=["Hi", "Yo"], sampling_params={"max_new_tokens": 1, "temperature": 0})
    assert [r["meta_info"]["id"].startswith("sgl-cell-") for r in results] == [True, True]
    assert tracked.num_in_flight == 0
    stream = tracked.generate(prompt="Count:", sampling_params={"max_new_tokens": 500, "ignore_eos": True},
                              stream=True)
    first = next(stream)
    assert "text" in first and tracked.num_in_flight == 1
    assert tracked.cancel() == 1
    rest = list(stream)  # the engine finishes the stream with an abort
    assert rest[-1]["meta_info"]["finish_reason"]["type"] == "abort"
    assert tracked.num_in_flight == 0
    with pytest.raises(CancelledError):
        tracked.generate(prompt="again", sampling_params={"max_new_tokens": 1})
    with pytest.raises(CancelledError):
        tracked.score(prompt="again")
    assert_engine_idle(engine)
