"""SamplingParams: SGLang's names, defaults, and validation that names the bad field."""

from __future__ import annotations

import math

import pytest

from sgnb.engine.sampling_params import SamplingParams


def test_defaults_are_valid_and_not_greedy():
    p = SamplingParams()
    assert p.max_new_tokens > 0
    assert p.temperature == 1.0 and p.top_p == 1.0 and p.top_k == -1 and p.min_p == 0.0
    assert not p.is_greedy
    assert not p.has_penalties


def test_single_stop_string_becomes_a_list():
    assert SamplingParams(stop="\n").stop == ["\n"]
    assert SamplingParams(stop=None).stop == []
    assert SamplingParams(stop_token_ids=None).stop_token_ids == []


@pytest.mark.parametrize("params", [{"temperature": 0}, {"temperature": 0.7, "top_k": 1}])
def test_temperature_zero_and_top_k_one_are_greedy(params):
    assert SamplingParams(**params).is_greedy


@pytest.mark.parametrize("params", [{"frequency_penalty": 0.5}, {"presence_penalty": -1.0},
                                    {"repetition_penalty": 1.2}])
def test_any_penalty_sets_has_penalties(params):
    assert SamplingParams(**params).has_penalties


@pytest.mark.parametrize(("params", "field"), [
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": -3}, "max_new_tokens"),
    ({"max_new_tokens": 2.5}, "max_new_tokens"),
    ({"min_new_tokens": -1}, "min_new_tokens"),
    ({"min_new_tokens": 9, "max_new_tokens": 8}, "min_new_tokens"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": math.nan}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_p": None}, "top_p"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": -2}, "top_k"),
    ({"top_k": 2.5}, "top_k"),
    ({"min_p": -0.1}, "min_p"),
    ({"min_p": 1.1}, "min_p"),
    ({"frequency_penalty": 2.5}, "frequency_penalty"),
    ({"presence_penalty": -3}, "presence_penalty"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"stop": [""]}, "stop"),
    ({"stop": ["ok", 3]}, "stop"),
    ({"stop_token_ids": ["2"]}, "stop_token_ids"),
    ({"sampling_seed": "7"}, "sampling_seed"),
    ({"regex": "a+", "json_schema": {"type": "string"}}, "regex"),
])
def test_invalid_value_raises_value_error_naming_the_field(params, field):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**params)


@pytest.mark.parametrize("params", [
    {"temperature": 0}, {"top_p": 1.0}, {"top_p": 0.01}, {"top_k": 1}, {"top_k": 50}, {"min_p": 1.0},
    {"frequency_penalty": -2, "presence_penalty": 2}, {"min_new_tokens": 8, "max_new_tokens": 8},
    {"stop": ["a", "bc"], "stop_token_ids": [2, 7]}, {"sampling_seed": 0}, {"temperature": 1},
])
def test_boundary_values_are_accepted(params):
    p = SamplingParams(**params)
    for name, value in params.items():
        assert getattr(p, name) == value


def test_from_dict_none_gives_defaults():
    assert SamplingParams.from_dict(None) == SamplingParams()
    assert SamplingParams.from_dict({}) == SamplingParams()


def test_from_dict_sets_known_fields():
    p = SamplingParams.from_dict({"max_new_tokens": 5, "temperature": 0, "stop": "x"})
    assert (p.max_new_tokens, p.temperature, p.stop) == (5, 0, ["x"])


def test_from_dict_rejects_unknown_parameter_by_name():
    with pytest.raises(ValueError, match="unknown sampling parameter.*max_tokens"):
        SamplingParams.from_dict({"max_tokens": 5})


def test_from_dict_does_not_mutate_the_callers_dict():
    params = {"stop": "x", "max_new_tokens": 3}
    SamplingParams.from_dict(params)
    assert params == {"stop": "x", "max_new_tokens": 3}


@pytest.mark.parametrize("params", ["temperature=0", [("temperature", 0)], 0.5])
def test_from_dict_rejects_a_non_dict(params):
    with pytest.raises(ValueError, match="sampling_params must be a dict"):
        SamplingParams.from_dict(params)


def test_every_field_has_a_valid_non_default_example_for_the_surface_tests():
    from sgnb.engine.sampling_params import CONSTRAINT_FIELDS, SAMPLING_FIELDS
    from tests.sampling_examples import EXAMPLE_VALUES, with_constraint

    assert set(EXAMPLE_VALUES) == {f.name for f in SAMPLING_FIELDS}
    assert all(EXAMPLE_VALUES[f.name] != f.default for f in SAMPLING_FIELDS)
    for name in CONSTRAINT_FIELDS:
        SamplingParams(**with_constraint(name))


@pytest.mark.parametrize(("params", "field"), [
    ({"stop": 5}, "stop"),
    ({"stop_token_ids": 5}, "stop_token_ids"),
    ({"stop_token_ids": [-1]}, "stop_token_ids"),
    ({"sampling_seed": 2**64}, "sampling_seed"),
    ({"sampling_seed": -(2**63) - 1}, "sampling_seed"),
    ({"skip_special_tokens": "x"}, "skip_special_tokens"),
    ({"ignore_eos": "no"}, "ignore_eos"),
    ({"no_stop_trim": 3}, "no_stop_trim"),
    ({"jump_forward": "x"}, "jump_forward"),
    ({"json_whitespace": 2}, "json_whitespace"),
    ({"regex": 5}, "regex"),
    ({"temperature": math.inf}, "temperature"),
])
def test_wrong_types_and_out_of_range_seeds_are_value_errors_naming_the_field(params, field):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**params)


@pytest.mark.parametrize("seed", [-(2**63), 0, 2**64 - 1])
def test_seeds_in_torch_generator_range_are_accepted(seed):
    import torch

    torch.Generator().manual_seed(SamplingParams(sampling_seed=seed).sampling_seed)
