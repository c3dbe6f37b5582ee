"""OpenAI-compatible routes of `sgnb serve`, driven by the official `openai` client and by raw HTTP."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.serve.server_fixtures import SERVED_MODEL_NAME

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def _greedy_chat(engine, messages, max_new_tokens):
    return engine.generate(engine.apply_chat_template(messages), {"max_new_tokens": max_new_tokens, "temperature": 0})


def test_models_lists_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [SERVED_MODEL_NAME]
    assert client.models.retrieve(SERVED_MODEL_NAME).id == SERVED_MODEL_NAME


def test_chat_completion_matches_the_engine_and_counts_usage(client, engine):
    expected = _greedy_chat(engine, MESSAGES, 8)
    completion = client.chat.completions.create(model=SERVED_MODEL_NAME, messages=MESSAGES, max_tokens=8, temperature=0)
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected["text"]
    assert choice.finish_reason == "length"
    assert completion.usage.prompt_tokens == expected["meta_info"]["prompt_tokens"]
    assert completion.usage.completion_tokens == 8
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 8


def test_chat_stream_deltas_add_up_to_the_full_reply(client, engine):
    expected = _greedy_chat(engine, MESSAGES, 8)["text"]
    stream = client.chat.completions.create(
        model=SERVED_MODEL_NAME, messages=MESSAGES, max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == expected
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 8 and not chunks[-1].choices


def test_chat_logprobs_cover_each_generated_token(client):
    completion = client.chat.completions.create(
        model=SERVED_MODEL_NAME, messages=MESSAGES, max_tokens=4, temperature=0, logprobs=True, top_logprobs=2,
    )
    content = completion.choices[0].logprobs.content
    assert len(content) == completion.usage.completion_tokens == 4
    assert "".join(t.token for t in content) == completion.choices[0].message.content
    for token in content:
        assert len(token.top_logprobs) == 2
        assert token.top_logprobs[0].token == token.token  # greedy picks the top token
        assert token.bytes == list(token.token.encode())


def test_chat_with_n_and_seed_returns_n_choices(client):
    completion = client.chat.completions.create(
        model=SERVED_MODEL_NAME, messages=MESSAGES, max_tokens=4, temperature=1.0, n=3, seed=7,
    )
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert 3 <= completion.usage.completion_tokens <= 12
    single = client.chat.completions.create(model=SERVED_MODEL_NAME, messages=MESSAGES, max_tokens=1)
    assert completion.usage.prompt_tokens == single.usage.prompt_tokens  # the shared prompt counts once
    again = client.chat.completions.create(
        model=SERVED_MODEL_NAME, messages=MESSAGES, max_tokens=4, temperature=1.0, n=3, seed=7,
    )
    assert [c.message.content for c in again.choices] == [c.message.content for c in completion.choices]


def test_chat_stop_string_ends_the_reply(client, engine):
    full = _greedy_chat(engine, MESSAGES, 12)["text"]
    stop = full.strip()[:3][-1]  # a character the greedy reply is known to contain early
    completion = client.chat.completions.create(
        model=SERVED_MODEL_NAME, messages=MESSAGES, max_tokens=12, temperature=0, stop=[stop],
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == full[: full.index(stop)]


def test_chat_response_format_json_schema_gives_valid_json(client):
    schema = {"type": "object", "properties": {"color": {"type": "string", "maxLength": 12}}, "required": ["color"],
              "additionalProperties": False}
    completion = client.chat.completions.create(
        model=SERVED_MODEL_NAME, messages=[{"role": "user", "content": "Give a color as JSON."}], max_tokens=32,
        temperature=0, response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    import jsonschema

    jsonschema.validate(json.loads(completion.choices[0].message.content), schema)


def test_chat_regex_extension_constrains_the_reply(client):
    completion = client.chat.completions.create(
        model=SERVED_MODEL_NAME, messages=[{"role": "user", "content": "Pick yes or no."}], max_tokens=8,
        temperature=0, extra_body={"regex": "(yes|no)"},
    )
    assert completion.choices[0].message.content in ("yes", "no")


COLORS_EBNF = 'root ::= color ", " color ", " color\ncolor ::= "red" | "green" | "blue" | "yellow"'
COLORS_LARK = 'start: color ", " color ", " color\ncolor: "red" | "green" | "blue" | "yellow"'


@pytest.mark.parametrize("extra_body", [
    {"ebnf": COLORS_EBNF},                                                       # SGLang
    {"grammar": COLORS_EBNF},                                                    # llama.cpp server
    {"structured_outputs": {"grammar": COLORS_EBNF}},                            # vLLM
    {"response_format": {"type": "grammar", "syntax": "lark", "definition": COLORS_LARK}},   # OpenAI's format
], ids=["ebnf", "grammar", "structured_outputs", "response_format"])
def test_chat_grammar_fields_constrain_the_reply(http, extra_body):
    import lark

    r = http.post("/v1/chat/completions", json={
        "model": SERVED_MODEL_NAME, "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 16, "temperature": 0, **extra_body})
    assert r.status_code == 200, r.text
    lark.Lark(COLORS_LARK).parse(r.json()["choices"][0]["message"]["content"])


def test_chat_can_continue_a_partial_assistant_message(client, engine):
    messages = [*MESSAGES, {"role": "assistant", "content": "Red, green"}]
    prompt = engine.tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    expected = engine.generate(prompt, {"max_new_tokens": 5, "temperature": 0})["text"]
    completion = client.chat.completions.create(
        model=SERVED_MODEL_NAME, messages=messages, max_tokens=5, temperature=0,
        extra_body={"continue_final_message": True},
    )
    assert completion.choices[0].message.content == expected


def test_completion_matches_the_engine(client, engine):
    prompt = "The capital of France is"
    expected = engine.generate(prompt, {"max_new_tokens": 5, "temperature": 0})
    completion = client.completions.create(model=SERVED_MODEL_NAME, prompt=prompt, max_tokens=5, temperature=0)
    assert completion.choices[0].text == expected["text"]
    assert completion.usage.prompt_tokens == expected["meta_info"]["prompt_tokens"]
    assert completion.usage.completion_tokens == 5


def test_completion_stream_matches_the_non_streamed_text(client):
    prompt = "Roses are red,"
    full = client.completions.create(model=SERVED_MODEL_NAME, prompt=prompt, max_tokens=6, temperature=0)
    chunks = list(client.completions.create(
        model=SERVED_MODEL_NAME, prompt=prompt, max_tokens=6, temperature=0, stream=True,
    ))
    assert "".join(c.choices[0].text for c in chunks) == full.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_completion_batch_of_prompts_with_logprobs(client):
    completion = client.completions.create(
        model=SERVED_MODEL_NAME, prompt=["1, 2, 3,", "a, b, c,"], max_tokens=3, temperature=0, logprobs=2,
    )
    assert len(completion.choices) == 2
    for choice in completion.choices:
        lp = choice.logprobs
        assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 3
        assert "".join(lp.tokens) == choice.text
        assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(3)]
    assert completion.usage.completion_tokens == 6


def test_completion_echo_with_zero_tokens_scores_the_prompt(client, engine):
    prompt = "Paris is the capital of France"
    completion = client.completions.create(
        model=SERVED_MODEL_NAME, prompt=prompt, max_tokens=0, echo=True, logprobs=0,
    )
    lp = completion.choices[0].logprobs
    assert completion.choices[0].text == prompt
    assert "".join(lp.tokens) == prompt
    assert lp.token_logprobs[0] is None  # nothing precedes the first token
    assert all(x < 0 for x in lp.token_logprobs[1:])
    assert len(lp.tokens) == len(engine.tokenizer.encode(prompt)) == completion.usage.prompt_tokens


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-9", messages=MESSAGES, max_tokens=2)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"top_p": 0}, "top_p"),
        ({"temperature": -0.5}, "temperature"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"n": 0}, "'n'"),
        ({"extra_body": {"top_k": 0}}, "top_k"),
        ({"stop": [""]}, "stop"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"extra_body": {"ebnf": 'root ::= "a" ('}}, "ebnf: invalid grammar"),
        ({"extra_body": {"ebnf": COLORS_EBNF, "regex": "a+"}}, "'regex' and 'ebnf' are mutually exclusive"),
        ({"response_format": {"type": "grammar", "syntax": "lark", "definition": "start: x x\nx: x"}},
         "no output can satisfy"),
    ],
)
def test_bad_chat_params_are_400_naming_the_parameter(client, kwargs, fragment):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=SERVED_MODEL_NAME, messages=MESSAGES, **kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"messages": []}, "'messages'"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "role"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "image_url"),
        ({"messages": MESSAGES, "continue_final_message": True}, "continue_final_message"),
    ],
)
def test_bad_chat_messages_are_400(http, body, fragment):
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    assert fragment in r.json()["error"]["message"]


@pytest.mark.parametrize("route", ["/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize(("field", "value"), [
    ("ignore_eos", "no"), ("no_stop_trim", 3), ("jump_forward", "x"), ("skip_special_tokens", "x"),
    ("stream", "yes"), ("stream", 0), ("stop_token_ids", 5), ("seed", 2**70),
])
def test_wrongly_typed_fields_are_400_naming_the_field(http, route, field, value):
    prompt = {"prompt": "Hi"} if route == "/v1/completions" else {"messages": MESSAGES}
    r = http.post(route, json={**prompt, "max_tokens": 2, field: value})
    assert r.status_code == 400
    assert f"'{field}'" in r.json()["error"]["message"]


def test_bad_completion_prompt_is_400(http):
    r = http.post("/v1/completions", json={"prompt": {"not": "a prompt"}})
    assert r.status_code == 400 and "'prompt'" in r.json()["error"]["message"]
