"""Every engine sampling field is a `gen` keyword and (constraints aside) a `run` / `run_batch` default,
and reaches the engine from there: the list in SamplingParams drives them all."""

from __future__ import annotations

import inspect

import pytest

import sgnb as sgl
from sgnb.engine.sampling_params import SAMPLING_FIELDS
from sgnb.lang.backends.base import SamplingSpec
from sgnb.lang.backends.engine_backend import EngineBackend
from tests.sampling_examples import EXAMPLE_VALUES

RUN_FIELDS = [f for f in SAMPLING_FIELDS if f.is_run_default]


class RecordingBackend(EngineBackend):
    """The real engine backend; keeps the sampling params each gen sends to the engine."""

    def __init__(self, engine) -> None:
        super().__init__(engine=engine)
        self.sent: list[dict] = []

    def generate(self, ctx, params):
        self.sent.append(params.to_engine_params())
        return super().generate(ctx, params)


@pytest.fixture
def recording(engine):
    yield RecordingBackend(engine)
    engine.check_integrity()


@sgl.function
def one_gen(s):
    s += "Hello there" + sgl.gen("x")


def assert_arrived(sent: dict, name: str, value) -> None:
    if name == "stop":  # the interpreter adds the chat template's stop strings after the program's
        assert sent["stop"][:len(value)] == value
    else:
        assert sent[name] == value, name


@pytest.mark.parametrize("field", SAMPLING_FIELDS, ids=lambda f: f.name)
def test_gen_takes_every_engine_sampling_field(field):
    assert field.gen_name in inspect.signature(sgl.gen).parameters
    value = EXAMPLE_VALUES[field.name]
    g = sgl.gen("x", **{field.gen_name: value})
    assert g.resolve(SamplingSpec()).to_engine_params()[field.name] == value


def test_only_the_constraints_of_one_gen_are_not_run_defaults():
    assert {f.name for f in SAMPLING_FIELDS if not f.is_run_default} == {"regex", "json_schema", "ebnf", "lark"}


@pytest.mark.slow
@pytest.mark.parametrize("field", RUN_FIELDS, ids=lambda f: f.name)
def test_run_passes_every_engine_sampling_field_to_the_engine(recording, field):
    assert field.name in inspect.signature(one_gen.run).parameters
    options = {"max_new_tokens": 3, field.name: EXAMPLE_VALUES[field.name]}
    state = one_gen.run(backend=recording, **options)
    assert state.error() is None
    assert_arrived(recording.sent[-1], field.name, EXAMPLE_VALUES[field.name])


@pytest.mark.slow
def test_run_batch_passes_every_engine_sampling_field_to_the_engine(recording):
    options = {f.name: EXAMPLE_VALUES[f.name] for f in RUN_FIELDS}
    assert set(options) <= set(inspect.signature(one_gen.run_batch).parameters)
    states = one_gen.run_batch([{}, {}], backend=recording, **options)
    assert [s.error() for s in states] == [None, None]
    assert len(recording.sent) == 2
    for sent in recording.sent:
        for name, value in options.items():
            assert_arrived(sent, name, value)


def test_unknown_sampling_keywords_are_refused():
    with pytest.raises(TypeError, match="temprature"):
        sgl.gen("x", temprature=0.5)
    with pytest.raises(TypeError, match="temprature"):
        one_gen.run_batch([{}], temprature=0.5)
    with pytest.raises(TypeError, match="temprature"):
        one_gen.run(temprature=0.5)
