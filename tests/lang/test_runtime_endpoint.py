"""`RuntimeEndpoint` against a real `sgnb serve` (uvicorn on 127.0.0.1) over the shared SmolLM2 engine."""

from __future__ import annotations

import re
import socket

import pytest

import sgnb as sgl
from sgnb.lang.backends.base import GenContext, SamplingSpec
from sgnb.lang.backends.errors import BackendError
from sgnb.lang.backends.runtime_endpoint import RuntimeEndpoint
from sgnb.lang.choices import token_length_normalized, unconditional_likelihood_normalized
from tests.serve.server_fixtures import API_KEY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def endpoint(server):
    backend = RuntimeEndpoint(server.url)
    yield backend
    backend.shutdown()


@pytest.fixture(scope="module")
def engine_backend(engine):
    from sgnb.lang.backends.engine_backend import EngineBackend

    return EngineBackend(engine=engine)


def test_chat_template_comes_from_the_servers_model_info(endpoint, engine_backend):
    remote, local = endpoint.get_chat_template(), engine_backend.get_chat_template()
    assert remote.role_prefix_and_suffix == local.role_prefix_and_suffix
    assert remote.first_prefix == local.first_prefix
    assert remote.stop_str == local.stop_str


def test_generate_matches_the_in_process_engine(endpoint, engine):
    ctx = GenContext(text="The capital of France is")
    text, meta = endpoint.generate(ctx, SamplingSpec(max_new_tokens=6, temperature=0, stop=["\n"]))
    expected = engine.generate(ctx.text, {"max_new_tokens": 6, "temperature": 0, "stop": ["\n"]})
    assert text == expected["text"]
    assert meta["prompt_tokens"] == expected["meta_info"]["prompt_tokens"]


def test_regex_runs_on_the_server(endpoint):
    text, _ = endpoint.generate(GenContext(text="The year is "), SamplingSpec(max_new_tokens=8, temperature=0,
                                                                              regex=r"(19|20)[0-9]{2}"))
    assert re.fullmatch(r"(19|20)[0-9]{2}", text)


ARITHMETIC_EBNF = 'root ::= expr\nexpr ::= term (("+" | "-") term)*\nterm ::= [0-9]+ | "(" expr ")"'
ARITHMETIC_LARK = 'start: expr\nexpr: term (("+" | "-") term)*\nterm: /[0-9]+/ | "(" expr ")"'


def test_grammar_gens_run_on_the_server(endpoint):
    import lark

    @sgl.function
    def sums(s):
        s += "Write a sum of two numbers: " + sgl.gen("ebnf", max_tokens=16, ebnf=ARITHMETIC_EBNF)
        s += "\nAnd a longer one, with parentheses: " + sgl.gen("lark", max_tokens=24, lark=ARITHMETIC_LARK)

    state = sums.run(temperature=0, backend=endpoint)
    assert state.error() is None
    parser = lark.Lark(ARITHMETIC_LARK)
    for name in ("ebnf", "lark"):
        parser.parse(state[name])
        assert state.get_meta_info(name)["constraint"]["kind"] == "grammar"


def test_stream_deltas_add_up_to_the_text(endpoint):
    ctx, params = GenContext(text="Once upon a time"), SamplingSpec(max_new_tokens=6, temperature=0)
    pieces = list(endpoint.generate_stream(ctx, params))
    assert len(pieces) >= 2
    assert "".join(d for d, _ in pieces) == endpoint.generate(ctx, params)[0]
    assert pieces[-1][1]["finish_reason"]["type"] == "length"


def test_n_samples_return_a_list(endpoint):
    texts, meta = endpoint.generate(GenContext(text="Pick a number:"), SamplingSpec(max_new_tokens=3, n=2))
    assert isinstance(texts, list) and len(texts) == 2 and len(meta["choices"]) == 2


@pytest.mark.parametrize("method", [token_length_normalized, unconditional_likelihood_normalized])
def test_select_scores_equal_the_in_process_backend(endpoint, engine_backend, method):
    ctx = GenContext(text="Q: Is the sky blue on a clear day?\nA:")
    choices = [" Yes", " No", " Maybe not"]
    remote = endpoint.select(ctx, choices, 0.0, method)
    local = engine_backend.select(ctx, choices, 0.0, method)
    assert remote.decision == local.decision
    assert remote.meta_info["normalized_prompt_logprobs"] == pytest.approx(
        local.meta_info["normalized_prompt_logprobs"], abs=1e-3)
    # the scored tokens are exactly the choice's tokens
    assert [[e[1] for e in x] for x in remote.meta_info["input_token_logprobs"]] == \
        [[e[1] for e in x] for x in local.meta_info["input_token_logprobs"]]


def test_select_handles_a_choice_that_merges_with_the_prompt_end(endpoint, engine_backend):
    ctx = GenContext(text="The answer is ")  # trailing space: " yes" tokenizes differently after it
    choices = ["yes", "no"]
    remote = endpoint.select(ctx, choices, 0.0, token_length_normalized)
    local = engine_backend.select(ctx, choices, 0.0, token_length_normalized)
    assert remote.meta_info["normalized_prompt_logprobs"] == pytest.approx(
        local.meta_info["normalized_prompt_logprobs"], abs=1e-3)


def test_program_runs_through_the_endpoint(endpoint, engine):
    @sgl.function
    def qa(s, question):
        s += sgl.system("You are a terse assistant.")
        s += sgl.user(question)
        s += sgl.assistant(sgl.gen("answer", max_tokens=12, stop="\n"))
        s += sgl.user("Is that answer correct? Reply yes or no.")
        s += sgl.assistant(sgl.select("verdict", ["yes", "no"]))
        s += "\nNumber of words: " + sgl.gen("count", regex=r"[0-9]{1,2}")

    state = qa.run(question="What is 2 + 2?", temperature=0, backend=endpoint)
    assert state.error() is None
    assert state["answer"].strip() and "\n" not in state["answer"]
    assert state["verdict"] in ("yes", "no")
    assert re.fullmatch(r"[0-9]{1,2}", state["count"])
    assert [m["role"] for m in state.messages()] == ["system", "user", "assistant", "user", "assistant"]
    assert state.text().startswith(engine.apply_chat_template(state.messages()[:2], add_generation_prompt=True))


def test_streamed_program_yields_text_as_it_is_generated(endpoint):
    @sgl.function
    def story(s):
        s += "Once upon a time" + sgl.gen("story", max_tokens=8, temperature=0)

    state = story.run(stream=True, backend=endpoint)
    pieces = list(state.text_iter("story"))
    assert len(pieces) >= 2
    assert "".join(pieces) == state["story"]
    assert state.text() == "Once upon a time" + state["story"]


def test_usage_is_accounted(endpoint):
    before = endpoint.get_usage()
    endpoint.generate(GenContext(text="Hello"), SamplingSpec(max_new_tokens=2, temperature=0))
    after = endpoint.get_usage()
    assert after["num_calls"] == before["num_calls"] + 1
    assert after["completion_tokens"] == before["completion_tokens"] + 2
    assert after["prompt_tokens"] == before["prompt_tokens"] + 1


def test_cache_prefix_then_flush(endpoint, engine):
    prompt = "A long shared prefix about the history of tea in China and Japan."
    endpoint.cache_prefix(prompt)
    _, meta = endpoint.generate(GenContext(text=prompt + " Tea"), SamplingSpec(max_new_tokens=1, temperature=0))
    assert meta["cached_tokens"] >= len(engine.tokenizer.encode(prompt)) - 1
    assert endpoint.flush_cache() is True


def test_api_key_is_sent(keyed_server):
    with pytest.raises(BackendError, match="HTTP 401"):
        RuntimeEndpoint(keyed_server.url)
    backend = RuntimeEndpoint(keyed_server.url, api_key=API_KEY)
    assert backend.generate(GenContext(text="Hi"), SamplingSpec(max_new_tokens=1))[1]["completion_tokens"] == 1


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(BackendError, match=rf"cannot reach the SGLang server at {url}/get_model_info"):
        RuntimeEndpoint(url)


def test_server_errors_name_the_url_status_and_message(endpoint, server):
    with pytest.raises(BackendError) as info:
        # each value is valid alone (what SamplingSpec checks); only the server sees they do not fit together
        endpoint.generate(GenContext(text="x"), SamplingSpec(max_new_tokens=2, min_new_tokens=5))
    message = str(info.value)
    assert f"{server.url}/generate" in message and "HTTP 400" in message and "min_new_tokens" in message
