"""The `OpenAI` backend against a real `sgnb serve` (OpenAI-compatible routes) over the shared SmolLM2 engine.

Also: one program on three backends (in-process engine, RuntimeEndpoint, OpenAI), and API speculative
execution (`num_api_spec_tokens`) measured in API calls and prompt tokens.
"""

from __future__ import annotations

import re
import socket

import pytest

import sgnb as sgl
from sgnb.engine.sampling_params import CONSTRAINT_FIELDS
from sgnb.lang.backends.base import GenContext, SamplingSpec
from sgnb.lang.backends.errors import BackendError, SpecMatchError, UnsupportedFeatureError
from sgnb.lang.backends.openai import OpenAI
from sgnb.lang.backends.runtime_endpoint import RuntimeEndpoint
from sgnb.lang.choices import token_length_normalized
from tests.serve.server_fixtures import SERVED_MODEL_NAME

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "Name three colors."}]
CHARACTER_FORMAT = "Example:\nName: Steve Jobs\nBirthday: February 24, 1955\nJob: Apple CEO\n\n"


@pytest.fixture(scope="module")
def engine_backend(engine):
    from sgnb.lang.backends.engine_backend import EngineBackend

    return EngineBackend(engine=engine)


@pytest.fixture(scope="module")
def chat(server):
    backend = OpenAI(SERVED_MODEL_NAME, base_url=server.url)  # "http://host:port" -> ".../v1"
    yield backend
    backend.shutdown()


@pytest.fixture(scope="module")
def completion(server, engine_backend):
    """A completion model on /v1/completions, writing roles with the model's own template."""
    backend = OpenAI(SERVED_MODEL_NAME, base_url=server.url + "/v1", is_chat_model=False,
                     chat_template=engine_backend.get_chat_template(), regex_field="regex")
    yield backend
    backend.shutdown()


# ---------------------------------------------------------------- gen


def test_chat_generate_sends_messages_and_matches_the_engine(chat, engine):
    text, meta = chat.generate(GenContext(text="", messages=MESSAGES), SamplingSpec(max_new_tokens=8, temperature=0))
    expected = engine.generate(engine.apply_chat_template(MESSAGES), {"max_new_tokens": 8, "temperature": 0})
    assert text == expected["text"]
    assert meta["prompt_tokens"] == expected["meta_info"]["prompt_tokens"]
    assert meta["completion_tokens"] == 8 and meta["finish_reason"] == {"type": "length"}


def test_completion_generate_sends_text_and_matches_the_engine(completion, engine):
    ctx = GenContext(text="The capital of France is")
    text, _ = completion.generate(ctx, SamplingSpec(max_new_tokens=6, temperature=0, stop=["\n"]))
    assert text == engine.generate(ctx.text, {"max_new_tokens": 6, "temperature": 0, "stop": ["\n"]})["text"]


def test_stream_deltas_add_up_and_the_last_piece_has_usage(chat):
    ctx, params = GenContext(text="", messages=MESSAGES), SamplingSpec(max_new_tokens=6, temperature=0)
    pieces = list(chat.generate_stream(ctx, params))
    assert "".join(d for d, _ in pieces) == chat.generate(ctx, params)[0]
    assert pieces[-1][1]["completion_tokens"] == 6 and pieces[-1][1]["finish_reason"] == {"type": "length"}


def test_n_samples_and_logprobs(chat):
    texts, meta = chat.generate(GenContext(text="", messages=MESSAGES), SamplingSpec(max_new_tokens=3, n=2))
    assert isinstance(texts, list) and len(texts) == 2 and len(meta["choices"]) == 2
    text, meta = chat.generate(GenContext(text="", messages=MESSAGES),
                               SamplingSpec(max_new_tokens=3, temperature=0, return_logprob=True, top_logprobs_num=2))
    assert "".join(t[2] for t in meta["output_token_logprobs"]) == text
    assert all(len(top) == 2 for top in meta["output_top_logprobs"])


def test_token_usage_adds_up_what_the_server_reports(server):
    backend = OpenAI(SERVED_MODEL_NAME, base_url=server.url)
    ctx = GenContext(text="", messages=MESSAGES)
    _, first = backend.generate(ctx, SamplingSpec(max_new_tokens=2, temperature=0))
    _, second = backend.generate(ctx, SamplingSpec(max_new_tokens=3, temperature=0))
    assert backend.token_usage.num_calls == 2
    assert backend.token_usage.prompt_tokens == first["prompt_tokens"] + second["prompt_tokens"] > 0
    assert backend.token_usage.completion_tokens == 5
    assert backend.get_usage() == {"prompt_tokens": backend.token_usage.prompt_tokens, "completion_tokens": 5,
                                   "num_calls": 2}


def test_regex_is_a_clear_error_unless_the_server_extension_is_named(chat, completion):
    for params in (SamplingSpec(regex="[0-9]+"), SamplingSpec(dtype=int), SamplingSpec(choices=["a", "b"])):
        with pytest.raises(UnsupportedFeatureError, match="cannot constrain"):
            chat.generate(GenContext(text="", messages=MESSAGES), params)
    text, _ = completion.generate(GenContext(text="The year is "),
                                  SamplingSpec(max_new_tokens=8, temperature=0, regex=r"(19|20)[0-9]{2}"))
    assert re.fullmatch(r"(19|20)[0-9]{2}", text)


def test_grammars_go_only_to_a_server_with_sglang_extensions(chat, completion):
    import lark

    colors = '"red" | "green" | "blue"'
    for params in (SamplingSpec(max_new_tokens=12, temperature=0, ebnf=f'root ::= c ", " c\nc ::= {colors}'),
                   SamplingSpec(max_new_tokens=12, temperature=0, lark=f'start: c ", " c\nc: {colors}')):
        with pytest.raises(UnsupportedFeatureError, match="cannot constrain a gen by (ebnf|lark)"):
            chat.generate(GenContext(text="", messages=MESSAGES), params)
        text, _ = completion.generate(GenContext(text="Two colours: "), params)
        lark.Lark(f'start: c ", " c\nc: {colors}').parse(text)


# ---------------------------------------------------------------- select


def test_select_on_a_chat_model_explains_why_it_cannot(chat):
    with pytest.raises(UnsupportedFeatureError, match="chat-completion APIs do not return"):
        chat.select(GenContext(text="", messages=MESSAGES), ["a", "b"], 0.0, token_length_normalized)


def test_select_on_a_completion_model_scores_like_the_engine(completion, engine_backend):
    ctx = GenContext(text="Q: Is the sky blue on a clear day?\nA:")
    choices = [" Yes", " No", " Maybe not"]
    calls = completion.token_usage.num_calls
    remote = completion.select(ctx, choices, 0.0, token_length_normalized)
    local = engine_backend.select(ctx, choices, 0.0, token_length_normalized)
    assert completion.token_usage.num_calls == calls + 1  # one echo request scores every choice
    assert remote.decision == local.decision
    assert remote.meta_info["normalized_prompt_logprobs"] == pytest.approx(
        local.meta_info["normalized_prompt_logprobs"], abs=1e-3)


# ---------------------------------------------------------------- one program, three backends


@sgl.function
def multi_turn(s, question_1, question_2):
    s += sgl.system("You are a helpful assistant.")
    s += sgl.user(question_1)
    s += sgl.assistant(sgl.gen("answer_1", max_tokens=12))
    s += sgl.user(question_2)
    s += sgl.assistant(sgl.gen("answer_2", max_tokens=12))


@sgl.function
def quiz(s, statement):
    s += sgl.user("Is this statement true or false? " + statement)
    s += sgl.assistant(sgl.select("verdict", ["true", "false"]))
    s += sgl.user("Give a confidence from 0 to 9.")
    s += sgl.assistant(sgl.gen("confidence", regex="[0-9]"))


def _check_multi_turn(state):
    assert state.error() is None
    assert [m["role"] for m in state.messages()] == ["system", "user", "assistant", "user", "assistant"]
    for name in ("answer_1", "answer_2"):
        assert isinstance(state[name], str) and state[name].strip()


def _check_quiz(state):
    assert state.error() is None
    assert state["verdict"] in ("true", "false")
    assert re.fullmatch("[0-9]", state["confidence"])


def test_one_program_three_backends(engine_backend, server, chat, completion):
    endpoint = RuntimeEndpoint(server.url)
    kwargs = {"question_1": "Name one fruit.", "question_2": "Name one colour.", "temperature": 0}
    states = {name: multi_turn.run(backend=b, **kwargs)
              for name, b in {"engine": engine_backend, "runtime_endpoint": endpoint, "openai": chat}.items()}
    for state in states.values():
        _check_multi_turn(state)
    # same engine, greedy: the remote backends see exactly the prompt the in-process one does
    assert states["runtime_endpoint"].text() == states["engine"].text()
    assert states["openai"]["answer_1"] == states["engine"]["answer_1"]
    # select and regex need logprobs and constraints: the OpenAI backend as a completion model has both
    for backend in (engine_backend, endpoint, completion):
        _check_quiz(quiz.run(statement="Water is wet.", temperature=0, backend=backend))
    endpoint.shutdown()


# ---------------------------------------------------------------- API speculative execution


def _character_completion(spec_tokens):
    @sgl.function(num_api_spec_tokens=spec_tokens)
    def gen_character(s):
        s += "Construct a character within the following format:\n"
        s += "Name: Steve Jobs.\nBirthday: February 24, 1955.\nJob: Apple CEO.\n"
        s += "\nPlease generate new Name, Birthday and Job.\n"
        s += "Name:" + sgl.gen("name", stop="\n") + "\nBirthday:" + sgl.gen("birthday", stop="\n")
        s += "\nJob:" + sgl.gen("job", stop="\n") + "\n"

    return gen_character


def test_speculative_completion_program_makes_fewer_calls_and_sends_fewer_prompt_tokens(server):
    usage = {}
    states = {}
    for spec in (None, 64):
        backend = OpenAI(SERVED_MODEL_NAME, base_url=server.url, is_chat_model=False)
        states[spec] = _character_completion(spec).run(temperature=0, max_new_tokens=24, backend=backend)
        assert states[spec].error() is None
        usage[spec] = backend.get_usage()
    print(f"\ncharacter generation (completion model): without spec {usage[None]}, with spec {usage[64]}")
    assert usage[None]["num_calls"] == 3 and usage[64]["num_calls"] < usage[None]["num_calls"]
    assert usage[64]["prompt_tokens"] < usage[None]["prompt_tokens"]
    for state in states.values():
        for name in ("name", "birthday", "job"):
            assert state[name].strip() and "\n" not in state[name]
        assert state.text().endswith(f"Name:{state['name']}\nBirthday:{state['birthday']}\nJob:{state['job']}\n")


@sgl.function(num_api_spec_tokens=64)
def character_chat(s):
    s += sgl.user(CHARACTER_FORMAT + "Now write another person in exactly this format.")
    s += sgl.assistant("Name:" + sgl.gen("name", stop="\n") + "\nBirthday:" + sgl.gen("birthday", stop="\n")
                       + "\nJob:" + sgl.gen("job", stop="\n"))


def test_speculative_chat_turn_is_served_by_one_call(server):
    backend = OpenAI(SERVED_MODEL_NAME, base_url=server.url)
    state = character_chat.run(temperature=0, max_new_tokens=24, backend=backend)
    assert state.error() is None
    assert backend.token_usage.num_calls == 1
    for name in ("name", "birthday", "job"):
        assert state[name].strip() and "\n" not in state[name]
    assert state.messages()[-1]["content"] == (
        f"Name:{state['name']}\nBirthday:{state['birthday']}\nJob:{state['job']}").lstrip()
    print(f"\ncharacter generation (chat model, spec): {backend.get_usage()}")


@sgl.function(num_api_spec_tokens=32)
def off_format_chat(s):
    # SmolLM2 does not answer this in the turn's format, so the one call cannot be split
    s += sgl.user("Tell me about a dog.")
    s += sgl.assistant("Breed:" + sgl.gen("breed", stop="\n", max_tokens=8) + "\nColour:"
                       + sgl.gen("colour", stop="\n", max_tokens=8))


def test_unsplittable_chat_reply_falls_back_to_one_call_per_gen(server):
    backend = OpenAI(SERVED_MODEL_NAME, base_url=server.url)
    state = off_format_chat.run(temperature=0, backend=backend)
    assert state.error() is None
    assert backend.token_usage.num_calls == 1 + 2  # the speculative call, then one per gen
    assert state.messages()[-1]["content"] == f"Breed:{state['breed']}\nColour:{state['colour']}"
    assert "\n" not in state["breed"] and "\n" not in state["colour"]


def test_fallback_is_a_clear_error_when_the_api_cannot_continue_a_message(server):
    backend = OpenAI(SERVED_MODEL_NAME, base_url=server.url, can_continue_final_message=False)
    with pytest.raises(SpecMatchError, match="did not follow the assistant turn's format.*cannot continue"):
        off_format_chat.run(temperature=0, backend=backend)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("constraint", CONSTRAINT_FIELDS)
def test_requests_carry_every_sampling_field_the_way_sgnb_serve_reads_them(constraint):
    from sgnb.serve.openai_protocol import sampling_params_from_openai
    from tests.sampling_examples import with_constraint

    backend = OpenAI("m", base_url="http://127.0.0.1:9/v1", is_chat_model=False, regex_field="regex")
    spec = SamplingSpec(**with_constraint(constraint))
    assert sampling_params_from_openai(backend._body(GenContext(text="Hi"), spec), None) == spec.to_engine_params()


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAI("m", base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(BackendError, match=rf"cannot reach .* at http://127.0.0.1:{port}/v1/chat/completions"):
        backend.generate(GenContext(text="", messages=MESSAGES), SamplingSpec(max_new_tokens=2))


def test_server_errors_name_the_url_status_and_message(chat, server):
    with pytest.raises(BackendError) as info:
        # each value is valid alone (what SamplingSpec checks); only the server sees they do not fit together
        chat.generate(GenContext(text="", messages=MESSAGES), SamplingSpec(max_new_tokens=2, min_new_tokens=5))
    assert f"{server.url}/v1/chat/completions" in str(info.value) and "HTTP 400" in str(info.value)
    assert "min_new_tokens" in str(info.value)
    unknown = OpenAI("gpt-9", base_url=server.url)
    with pytest.raises(BackendError, match="HTTP 404.*'gpt-9' does not exist"):
        unknown.generate(GenContext(text="", messages=MESSAGES), SamplingSpec(max_new_tokens=2))


def test_openai_itself_needs_an_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="api_key"):
        OpenAI("gpt-4o-mini")
    assert OpenAI("gpt-3.5-turbo-instruct", api_key="x").is_chat_model is False
    assert OpenAI("gpt-4o-mini", api_key="x").can_continue_final_message is False
