"""SamplingSpec: SGLang sampling-param names, validation, and constraint mapping."""

from __future__ import annotations

import json
import re

import pytest

from sgnb.lang.backends.base import SamplingSpec, dtype_name


def test_engine_params_use_sglang_names_and_drop_request_level_fields():
    spec = SamplingSpec(max_new_tokens=5, stop="\n", temperature=0, return_logprob=True, n=2, top_logprobs_num=3)
    params = spec.to_engine_params()
    assert params["max_new_tokens"] == 5 and params["stop"] == ["\n"] and params["temperature"] == 0
    assert not {"n", "return_logprob", "top_logprobs_num", "logprob_start_len"} & set(params)
    from sgnb.engine.sampling_params import SamplingParams

    SamplingParams.from_dict(params)  # the engine accepts every key


def test_json_schema_dict_becomes_a_string():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    spec = SamplingSpec(json_schema=schema)
    assert json.loads(spec.to_engine_params()["json_schema"]) == schema


def test_replace_validates_again():
    spec = SamplingSpec(stop=["x"])
    other = spec.replace(max_new_tokens=3)
    assert other.max_new_tokens == 3 and other.stop == ["x"] and other.stop is not spec.stop
    with pytest.raises(ValueError, match="max_tokens must be >= 0"):
        spec.replace(max_new_tokens=-2)


@pytest.mark.parametrize("dtype, good, bad", [
    (int, ["42", "-7"], ["4.2", "x"]),
    (float, ["3.14", "-2.5"], ["abc"]),
    (bool, ["True", "False"], ["yes"]),
    (str, ['"hello world"'], ["hello"]),
])
def test_dtype_and_choices_become_a_regex(dtype, good, bad):
    regex = SamplingSpec(dtype=dtype).to_engine_params()["regex"]
    for text in good:
        assert re.fullmatch(regex, text), (dtype, text)
    for text in bad:
        assert not re.fullmatch(regex, text), (dtype, text)
    choice_regex = SamplingSpec(choices=["a.b", "c"]).to_engine_params()["regex"]
    assert re.fullmatch(choice_regex, "a.b") and not re.fullmatch(choice_regex, "axb")


def test_dtype_names():
    assert dtype_name(int) == "int" and dtype_name("string") == "str" and dtype_name(list) is None
    assert dtype_name([]) is None
    with pytest.raises(ValueError, match="dtype"):
        SamplingSpec(dtype=dict)
    with pytest.raises(ValueError, match="at least one choice"):
        SamplingSpec(choices=[])
