"""OpenAI request parsing and response shaping (pure functions; no model)."""

from __future__ import annotations

import json

import pytest

from sgnb.engine.sampling_params import SAMPLING_FIELDS
from sgnb.serve import openai_protocol as proto
from tests.sampling_examples import EXAMPLE_VALUES


def test_openai_fields_map_to_sglang_sampling_params():
    req = proto.parse_chat_request({
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7, "temperature": 0.5,
        "top_p": 0.9, "stop": "\n", "seed": 3, "frequency_penalty": 0.1, "presence_penalty": 0.2,
        "top_k": 5, "min_tokens": 1, "ignore_eos": True,
    })
    assert req.sampling_params == {
        "max_new_tokens": 7, "temperature": 0.5, "top_p": 0.9, "stop": ["\n"], "sampling_seed": 3,
        "frequency_penalty": 0.1, "presence_penalty": 0.2, "top_k": 5, "min_new_tokens": 1, "ignore_eos": True,
    }


@pytest.mark.parametrize("field", SAMPLING_FIELDS, ids=lambda f: f.name)
def test_every_engine_sampling_field_has_an_openai_field(field):
    assert field.openai_name is not None
    value = EXAMPLE_VALUES[field.name]
    assert proto.sampling_params_from_openai({field.openai_name: value}, None)[field.name] == value


def test_completions_default_to_16_tokens_and_chat_to_the_engine_default():
    assert proto.parse_completion_request({"prompt": "x"}).sampling_params == {"max_new_tokens": 16}
    assert proto.parse_chat_request({"messages": [{"role": "user", "content": "x"}]}).sampling_params == {}


def test_max_completion_tokens_wins_over_max_tokens():
    req = proto.parse_chat_request({"messages": [{"role": "user", "content": "x"}], "max_tokens": 9,
                                    "max_completion_tokens": 4})
    assert req.sampling_params["max_new_tokens"] == 4


def test_response_format_becomes_a_json_schema_constraint():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    params = proto.sampling_params_from_openai(
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}, None)
    assert json.loads(params["json_schema"]) == schema
    assert json.loads(proto.sampling_params_from_openai({"response_format": {"type": "json_object"}}, None)
                      ["json_schema"]) == {"type": "object"}
    assert proto.sampling_params_from_openai({"response_format": {"type": "text"}}, None) == {}


def test_regex_extension_cannot_combine_with_json():
    with pytest.raises(ValueError, match="mutually exclusive"):
        proto.sampling_params_from_openai({"regex": "a+", "response_format": {"type": "json_object"}}, None)


ARITH = 'root ::= num (("+" | "*") num)*\nnum ::= [0-9]+'


@pytest.mark.parametrize(("body", "expected"), [
    ({"ebnf": ARITH}, {"ebnf": ARITH}),                                                    # SGLang
    ({"lark": "start: /[0-9]+/"}, {"lark": "start: /[0-9]+/"}),                           # sgnb
    ({"grammar": ARITH}, {"ebnf": ARITH}),                                                 # llama.cpp server
    ({"guided_grammar": ARITH}, {"ebnf": ARITH}),                                          # vLLM, older name
    ({"structured_outputs": {"grammar": ARITH}}, {"ebnf": ARITH}),                         # vLLM
    ({"structured_outputs": {"regex": "a+"}}, {"regex": "a+"}),
    ({"structured_outputs": {"json": {"type": "object"}}}, {"json_schema": '{"type": "object"}'}),
    ({"response_format": {"type": "grammar", "grammar": ARITH}}, {"ebnf": ARITH}),         # Fireworks
    ({"response_format": {"type": "grammar", "syntax": "lark", "definition": "start: /a+/"}},
     {"lark": "start: /a+/"}),                                                             # OpenAI's grammar format
    ({"response_format": {"type": "grammar", "grammar": {"syntax": "regex", "definition": "a+"}}}, {"regex": "a+"}),
    ({"response_format": {"type": "grammar", "grammar": {"syntax": "gbnf", "definition": ARITH}}}, {"ebnf": ARITH}),
])
def test_grammar_fields_of_peer_servers_become_engine_constraints(body, expected):
    assert proto.sampling_params_from_openai(body, None) == expected


@pytest.mark.parametrize(("body", "fragment"), [
    ({"ebnf": ARITH, "regex": "a+"}, "'regex' and 'ebnf' are mutually exclusive"),
    ({"grammar": ARITH, "response_format": {"type": "json_object"}}, "'response_format' and 'grammar' are mutually"),
    ({"lark": ""}, "'lark' must be a non-empty string"),
    ({"ebnf": ["root ::= x"]}, "'ebnf' must be a non-empty string"),
    ({"structured_outputs": {"choice": ["a"]}}, "'structured_outputs' must be an object with one of the keys"),
    ({"response_format": {"type": "grammar", "syntax": "peg", "definition": "x"}}, "'response_format.syntax'"),
    ({"response_format": {"type": "grammar", "syntax": "lark"}}, "grammar 'definition' must be a non-empty string"),
])
def test_bad_or_conflicting_grammar_fields_name_the_field(body, fragment):
    with pytest.raises(ValueError) as info:
        proto.sampling_params_from_openai(body, None)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"prompt": "x", "temperature": "hot"}, "'temperature' must be a number"),
        ({"prompt": "x", "max_tokens": 1.5}, "'max_tokens'"),
        ({"prompt": "x", "stop": ["a"] * 17}, "at most 16"),
        ({"prompt": "x", "stop": 3}, "'stop'"),
        ({"prompt": "x", "n": 100}, "'n'"),
        ({"prompt": "x", "logprobs": 50}, "'logprobs'"),
        ({"prompt": "x", "best_of": 3}, "best_of"),
        ({"prompt": "x", "stream": "yes"}, "'stream'"),
        ({"prompt": []}, "'prompt'"),
        ({"prompt": "x", "seed": True}, "'seed'"),
        ({"prompt": "x", "stream": True, "max_tokens": 0}, "cannot be streamed"),
    ],
)
def test_bad_completion_fields_name_the_field(body, fragment):
    with pytest.raises(ValueError, match=None) as info:
        proto.parse_completion_request(body)
    assert fragment in str(info.value)


def test_prompts_may_be_text_token_ids_or_lists_of_either():
    assert proto.parse_completion_request({"prompt": "a"}).prompts == ["a"]
    assert proto.parse_completion_request({"prompt": ["a", "b"]}).prompts == ["a", "b"]
    assert proto.parse_completion_request({"prompt": [1, 2]}).prompts == [[1, 2]]
    assert proto.parse_completion_request({"prompt": [[1], [2, 3]]}).prompts == [[1], [2, 3]]


def test_chat_messages_are_normalised():
    req = proto.parse_chat_request({"messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]},
        {"role": "assistant", "content": None},
    ]})
    assert req.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"},
                            {"role": "assistant", "content": ""}]


def test_chat_rejects_tools_and_top_logprobs_without_logprobs():
    base = {"messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(ValueError, match="function calling"):
        proto.parse_chat_request({**base, "tools": [{"type": "function"}]})
    with pytest.raises(ValueError, match="requires 'logprobs'"):
        proto.parse_chat_request({**base, "top_logprobs": 2})
    with pytest.raises(ValueError, match="at least 1"):
        proto.parse_chat_request({**base, "max_tokens": 0})


def test_finish_reasons_map_to_openai_names():
    assert proto.finish_reason({"finish_reason": {"type": "stop", "matched": "\n"}}) == "stop"
    assert proto.finish_reason({"finish_reason": {"type": "length", "length": 3}}) == "length"
    assert proto.finish_reason({"finish_reason": None}) is None


def test_completion_logprobs_layout_with_echo():
    meta = {
        "input_token_logprobs": [(None, 1, "Hi"), (-1.0, 2, " there")],
        "output_token_logprobs": [(-0.5, 3, "!")],
        "output_top_logprobs": [[(-0.5, 3, "!"), (-2.0, 4, ".")]],
    }
    lp = proto.completion_logprobs(meta, include_input=True)
    assert lp["tokens"] == ["Hi", " there", "!"]
    assert lp["token_logprobs"] == [None, -1.0, -0.5]
    assert lp["text_offset"] == [0, 2, 8]
    assert lp["top_logprobs"] == [None, None, {"!": -0.5, ".": -2.0}]
    assert proto.completion_logprobs(meta, include_input=False)["tokens"] == ["!"]


def test_usage_totals():
    assert proto.usage(3, 4) == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
