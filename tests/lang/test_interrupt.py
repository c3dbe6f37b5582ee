"""Ctrl-C while a caller waits on a program: the program's engine requests are aborted, the engine ends idle
and intact, and the next run works.

The interrupt is a real SIGINT delivered to the main thread (where pytest runs the test) once the engine is
generating the program's requests.
"""

from __future__ import annotations

import time

import pytest

import sgnb as sgl
from sgnb.lang.errors import ProgramError, ProgramInterrupted
from tests.lang.interrupt_helpers import assert_engine_idle, interrupt_when_running

pytestmark = pytest.mark.slow

LONG = {"max_tokens": 2000, "ignore_eos": True}  # minutes of decoding on this machine


@sgl.function
def story(s, topic):
    s += f"Tell a very long story about {topic}: " + sgl.gen("story", **LONG)
    s += "\nThe end." + sgl.gen("end", max_tokens=2)


@sgl.function
def three_stories(s):
    s += "Three very long stories:\n"
    forks = s.fork(3)
    for i, f in enumerate(forks):
        f += f"Story {i + 1}: " + sgl.gen("story", **LONG)
    forks.join()
    s += "\nThe end." + sgl.gen("end", max_tokens=2)


@sgl.function
def short(s):
    s += "The capital of France is" + sgl.gen("x", max_tokens=3)


def assert_next_run_works() -> None:
    state = short.run(temperature=0)
    assert state.error() is None and isinstance(state["x"], str) and state["x"]


def interrupted(call, engine, num_running: int) -> ProgramInterrupted:
    """Run `call()` in this (the main) thread, SIGINT it while `num_running` requests generate; return what
    it raised."""
    fired = interrupt_when_running(engine, num_running)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt) as info:
        call()
    assert fired.is_set()
    assert time.monotonic() - started < 30  # the gens alone would take minutes
    assert isinstance(info.value, ProgramInterrupted)
    return info.value


def test_ctrl_c_during_run_aborts_the_running_gen(backend, engine):
    error = interrupted(lambda: story.run(topic="a dragon", temperature=0), engine, num_running=1)
    assert error.num_aborted == 1 and error.is_drained
    assert str(error) == "program interrupted; aborted 1 running request(s)"
    assert_engine_idle(engine)
    assert_next_run_works()


def test_ctrl_c_during_a_fork_aborts_every_child(backend, engine):
    error = interrupted(lambda: three_stories.run(temperature=0), engine, num_running=3)
    assert error.num_aborted == 3 and error.is_drained
    assert_engine_idle(engine)
    assert_next_run_works()


def test_ctrl_c_during_run_batch_aborts_every_run(backend, engine):
    batch = [{"topic": t} for t in ("a dragon", "a ship", "a city")]
    error = interrupted(lambda: story.run_batch(batch, temperature=0), engine, num_running=3)
    assert error.num_aborted == 3 and error.is_drained
    assert_engine_idle(engine)
    assert_next_run_works()


@pytest.mark.parametrize("read", ["text_iter", "get_var", "sync"])
def test_ctrl_c_while_reading_a_streamed_state_stops_its_program(backend, engine, read):
    state = story.run(topic="a forest", temperature=0, stream=True)
    readers = {
        "text_iter": lambda: list(state.text_iter("story")),
        "get_var": lambda: state["story"],
        "sync": state.sync,
    }
    error = interrupted(readers[read], engine, num_running=1)
    assert error.num_aborted == 1
    assert_engine_idle(engine)
    assert state.stream_executor.wait_tree_finished(5)
    assert state.error() is error  # the interruption is recorded on the state
    assert "story" in state.snapshot()["partial_variables"]  # the partial text stays inspectable
    with pytest.raises(ProgramError, match="ProgramInterrupted"):
        state["end"]
    assert_next_run_works()
