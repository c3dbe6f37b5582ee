"""SGLang-native routes of `sgnb serve` against the real SmolLM2 engine over HTTP."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from sgnb.engine.sampling_params import CONSTRAINT_FIELDS
from tests.sampling_examples import with_constraint

pytestmark = pytest.mark.slow

GREEDY = {"max_new_tokens": 6, "temperature": 0}


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def _sse_events(response: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def test_generate_returns_the_engines_text_and_meta_info(client, engine):
    prompt = "The capital of France is"
    expected = engine.generate(prompt, dict(GREEDY))
    r = client.post("/generate", json={"text": prompt, "sampling_params": GREEDY})
    assert r.status_code == 200
    body = r.json()
    assert body["text"] == expected["text"]
    assert body["output_ids"] == expected["output_ids"]
    meta = body["meta_info"]
    assert meta["prompt_tokens"] == expected["meta_info"]["prompt_tokens"]
    assert meta["completion_tokens"] == 6
    assert meta["finish_reason"] == {"type": "length", "length": 6}


def test_generate_batch_answers_one_result_per_prompt_with_per_prompt_params(client):
    r = client.post("/generate", json={
        "text": ["One, two,", "Red, green,"],
        "sampling_params": [{"max_new_tokens": 2, "temperature": 0}, {"max_new_tokens": 4, "temperature": 0}],
    })
    assert r.status_code == 200
    results = r.json()
    assert isinstance(results, list) and len(results) == 2
    assert [res["meta_info"]["completion_tokens"] for res in results] == [2, 4]


def test_generate_accepts_input_ids(client, engine):
    ids = engine.tokenizer.encode("Hello, my name is")
    r = client.post("/generate", json={"input_ids": ids, "sampling_params": GREEDY})
    assert r.status_code == 200
    assert r.json()["meta_info"]["prompt_tokens"] == len(ids)
    assert r.json()["text"] == engine.generate(input_ids=ids, sampling_params=dict(GREEDY))["text"]


def test_generate_returns_output_and_top_logprobs(client):
    r = client.post("/generate", json={
        "text": "1, 2, 3,", "sampling_params": {"max_new_tokens": 3, "temperature": 0},
        "return_logprob": True, "top_logprobs_num": 3,
    })
    meta = r.json()["meta_info"]
    assert len(meta["output_token_logprobs"]) == 3
    assert [entry[1] for entry in meta["output_token_logprobs"]] == r.json()["output_ids"]
    assert all(len(top) == 3 for top in meta["output_top_logprobs"])
    # greedy: the chosen token is the most likely one
    for (lp, tok, _), top in zip(meta["output_token_logprobs"], meta["output_top_logprobs"]):
        assert tok == top[0][1] and lp == pytest.approx(top[0][0])


def test_max_new_tokens_zero_scores_the_prompt(client, engine):
    prompt = "The quick brown fox jumps over the lazy dog"
    r = client.post("/generate", json={
        "text": prompt, "sampling_params": {"max_new_tokens": 0},
        "return_logprob": True, "logprob_start_len": 1,
    })
    assert r.status_code == 200
    body = r.json()
    assert body["text"] == "" and body["meta_info"]["completion_tokens"] == 0
    logprobs = body["meta_info"]["input_token_logprobs"]
    expected = engine.score(prompt, logprob_start_len=1)["meta_info"]["input_token_logprobs"]
    assert len(logprobs) == body["meta_info"]["prompt_tokens"] - 1 == len(expected)
    assert [e[1] for e in logprobs] == [e[1] for e in expected]
    assert [e[0] for e in logprobs] == pytest.approx([e[0] for e in expected], abs=1e-4)
    assert all(e[0] < 0 for e in logprobs)


def test_scoring_without_return_logprob_reports_only_counts(client):
    r = client.post("/generate", json={"text": "Hello there", "sampling_params": {"max_new_tokens": 0}})
    meta = r.json()["meta_info"]
    assert meta["prompt_tokens"] == 2
    assert "input_token_logprobs" not in meta


def test_regex_constraint_runs_server_side(client):
    r = client.post("/generate", json={
        "text": "My phone number is ",
        "sampling_params": {"max_new_tokens": 16, "temperature": 0, "regex": r"[0-9]{3}-[0-9]{4}"},
    })
    assert r.status_code == 200, r.text
    import re

    assert re.fullmatch(r"[0-9]{3}-[0-9]{4}", r.json()["text"])


COLORS_EBNF = 'root ::= color ", " color ", " color\ncolor ::= "red" | "green" | "blue" | "yellow"'
COLORS_LARK = 'start: color ", " color ", " color\ncolor: "red" | "green" | "blue" | "yellow"'


@pytest.mark.parametrize("constraint", [{"ebnf": COLORS_EBNF}, {"lark": COLORS_LARK}], ids=["ebnf", "lark"])
def test_grammar_constraint_runs_server_side(client, constraint):
    import lark

    r = client.post("/generate", json={"text": "Three colours:",
                                       "sampling_params": {"max_new_tokens": 16, "temperature": 0, **constraint}})
    assert r.status_code == 200, r.text
    body = r.json()
    lark.Lark(COLORS_LARK).parse(body["text"])
    assert body["meta_info"]["constraint"]["kind"] == "grammar"
    assert body["meta_info"]["constraint"]["is_complete"] is True


def test_stream_sends_growing_text_then_done(client, engine):
    prompt = "Once upon a time"
    expected = engine.generate(prompt, dict(GREEDY))["text"]
    with client.stream("POST", "/generate", json={"text": prompt, "sampling_params": GREEDY, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _sse_events(r)
    assert events[-1] == "[DONE]"
    payloads = [json.loads(e) for e in events[:-1]]
    assert len(payloads) >= 2
    texts = [p["text"] for p in payloads]
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))  # text so far, SGLang style
    assert texts[-1] == expected
    assert payloads[-1]["meta_info"]["finish_reason"]["type"] == "length"
    assert payloads[0]["meta_info"]["finish_reason"] is None


def test_closing_a_stream_early_aborts_the_request(client, engine):
    body = {"text": "Write a long story:", "sampling_params": {"max_new_tokens": 400, "temperature": 0}, "stream": True}
    with client.stream("POST", "/generate", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                break  # leave after the first event
    deadline = time.monotonic() + 20
    while engine.snapshot()["running"] or engine.snapshot()["waiting"]:
        assert time.monotonic() < deadline, "the abandoned stream kept running in the engine"
        time.sleep(0.05)
    engine.check_integrity()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"text": "x", "sampling_params": {"temperature": -1}}, "temperature"),
        ({"text": "x", "sampling_params": {"max_new_tokens": 2, "bogus": 1}}, "bogus"),
        ({"sampling_params": {"max_new_tokens": 2}}, "exactly one of 'text' or 'input_ids'"),
        ({"text": "x", "input_ids": [1]}, "exactly one of 'text' or 'input_ids'"),
        ({"text": 5}, "'text' must be"),
        ({"text": ["a", "b"], "sampling_params": [{}]}, "one entry per prompt"),
        ({"text": "x", "extra_field": 1}, "extra_field"),
        ({"input_ids": [10**9]}, "input_ids"),
        ({"text": "x", "sampling_params": {"stop": 5}}, "stop"),
        ({"text": "x", "sampling_params": {"stop_token_ids": 5}}, "stop_token_ids"),
        ({"text": "x", "sampling_params": {"skip_special_tokens": "x"}}, "skip_special_tokens"),
        ({"text": "x", "sampling_params": {"ignore_eos": "no"}}, "ignore_eos"),
        ({"text": "x", "sampling_params": {"no_stop_trim": 3}}, "no_stop_trim"),
        ({"text": "x", "sampling_params": {"jump_forward": "x"}}, "jump_forward"),
        ({"text": "x", "sampling_params": {"sampling_seed": 2**70}}, "sampling_seed"),
        ({"text": "x", "stream": "yes"}, "'stream'"),
        ({"text": "x", "sampling_params": {"ebnf": 'root ::= "a" (', "max_new_tokens": 4}}, "ebnf: invalid grammar"),
        ({"text": "x", "sampling_params": {"lark": "start: item\nitem: item", "max_new_tokens": 4}},
         "lark: no output can satisfy this grammar"),
        ({"text": "x", "sampling_params": {"ebnf": COLORS_EBNF, "regex": "a"}}, "mutually exclusive"),
        ({"text": "x", "sampling_params": {"lark": ["start: x"]}}, "lark must be"),
    ],
)
def test_bad_generate_requests_get_400_naming_the_problem(client, body, fragment):
    r = client.post("/generate", json=body)
    assert r.status_code == 400
    assert fragment in r.json()["error"]["message"]


@pytest.mark.parametrize("constraint", CONSTRAINT_FIELDS)
def test_generate_takes_every_engine_sampling_field(client, engine, constraint):
    params = with_constraint(constraint)  # the constraint fields exclude each other
    r = client.post("/generate", json={"text": "Name a colour:", "sampling_params": params})
    assert r.status_code == 200, r.text
    assert 1 <= r.json()["meta_info"]["completion_tokens"] <= params["max_new_tokens"]
    engine.check_integrity()


def test_body_that_is_not_json_gets_400(client):
    r = client.post("/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]["message"]


def test_get_model_info_reports_the_chat_template(client, engine):
    info = client.get("/get_model_info").json()
    assert info["is_generation"] is True
    assert info["chat_template"] == engine.tokenizer.chat_template
    assert info["served_model_name"] == "smollm2-135m"


def test_flush_cache_drops_cached_prefixes(client):
    body = {"text": "A cached prompt about cheese and wine", "sampling_params": {"max_new_tokens": 1, "temperature": 0}}
    client.post("/generate", json=body)
    assert client.post("/generate", json=body).json()["meta_info"]["cached_tokens"] > 0
    assert client.post("/flush_cache").json()["success"] is True
    assert client.post("/generate", json=body).json()["meta_info"]["cached_tokens"] == 0


def test_health(client):
    assert client.get("/health").json() == {"status": "ok"}


def test_a_refused_streaming_request_is_a_plain_400(client):
    body = {"text": ["ok", "bad"], "stream": True,
            "sampling_params": [{"max_new_tokens": 2}, {"max_new_tokens": 2, "top_p": 5}]}
    r = client.post("/generate", json=body)
    assert r.status_code == 400 and "top_p" in r.json()["error"]["message"]
