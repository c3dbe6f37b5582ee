"""Widget tests run real programs on the session SmolLM2 engine (tests/conftest.py) through one EngineBackend."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def widget_backend(engine):
    from sgnb.lang.backends.engine_backend import EngineBackend

    return EngineBackend(engine=engine)


@pytest.fixture
def backend(widget_backend, engine):
    """A backend over the session engine; the engine must be idle and intact after each test."""
    yield widget_backend
    engine.check_integrity()


@pytest.fixture(scope="session")
def fork_program():
    """system + user, an intro gen, a 2-way fork with one gen each, join, then a select.

    Every gen ignores EOS and has no stop string, so each produces exactly `max_tokens` tokens.
    """
    import sgnb as sgl

    @sgl.function
    def review(s, topic):
        s += sgl.system("You are a terse assistant.")
        s += sgl.user(f"Give two facts about {topic}.")
        s += sgl.assistant_begin()
        s += "Facts:" + sgl.gen("intro", max_tokens=6, ignore_eos=True)
        forks = s.fork(2)
        for i, f in enumerate(forks):
            f += f"\nFact {i + 1}:" + sgl.gen("fact", max_tokens=5, ignore_eos=True)
        forks.join()
        s += "\nTrue? " + sgl.select("verdict", choices=["yes", "no"])
        s += sgl.assistant_end()

    return review


@pytest.fixture
def run_traced(backend):
    """`run_traced(program, **args)`: run at temperature 0 with logprobs (top 3), streaming; returns at once."""

    def run(program, **kwargs):
        return program.run(backend=backend, temperature=0, stream=True, return_logprob=True, top_logprobs_num=3,
                           **kwargs)

    return run
