"""EngineBackend on the shared SmolLM2 engine: gen, streaming, select by batched scoring, prefix caching."""

from __future__ import annotations

import pytest

from sgnb.lang.backends.base import GenContext, SamplingSpec
from sgnb.lang.backends.errors import BackendError, UnsupportedFeatureError
from sgnb.lang.backends.engine_backend import EngineBackend
from sgnb.lang.choices import greedy_token_selection, token_length_normalized, unconditional_likelihood_normalized

pytestmark = pytest.mark.slow

PROMPT = "Q: Is the sun hot?\nA:"


def test_generate_matches_the_engine_and_counts_usage(backend, engine):
    before = backend.get_usage()
    text, meta = backend.generate(GenContext(text=PROMPT), SamplingSpec(max_new_tokens=5, temperature=0, stop="\n"))
    direct = engine.generate(PROMPT, {"max_new_tokens": 5, "temperature": 0, "stop": ["\n"]})
    assert text == direct["text"]
    assert meta["prompt_tokens"] == direct["meta_info"]["prompt_tokens"]
    after = backend.get_usage()
    assert after["num_calls"] == before["num_calls"] + 1
    assert after["completion_tokens"] - before["completion_tokens"] == meta["completion_tokens"]


def test_generate_n_returns_one_text_per_sample(backend):
    texts, meta = backend.generate(GenContext(text=PROMPT), SamplingSpec(max_new_tokens=3, n=3))
    assert isinstance(texts, list) and len(texts) == 3 and len(meta["choices"]) == 3


def test_stream_pieces_add_up_to_the_text(backend):
    ctx, spec = GenContext(text="Once upon a time"), SamplingSpec(max_new_tokens=8, temperature=0, ignore_eos=True)
    pieces = list(backend.generate_stream(ctx, spec))
    assert len(pieces) >= 2
    assert "".join(p for p, _ in pieces) == backend.generate(ctx, spec)[0]
    assert pieces[-1][1]["completion_tokens"] == 8


def test_select_scores_all_choices_in_one_batch(backend, engine):
    choices = ["Yes", "No", "Maybe not"]
    result = backend.select(GenContext(text=PROMPT), choices, 0.0, token_length_normalized)
    assert result.decision in choices
    logprobs = result.meta_info["input_token_logprobs"]
    assert len(logprobs) == 3 and all(lps for lps in logprobs)
    # each choice is scored on its own tokens (plus a prompt token it merged with, if any)
    for choice, lps in zip(choices, logprobs):
        scored = "".join(t[2] for t in lps)
        assert scored.endswith(choice) and len(scored) <= len(choice) + 2
    scores = result.meta_info["normalized_prompt_logprobs"]
    assert result.decision == choices[scores.index(max(scores))]


def test_select_methods_that_need_more_scores(backend):
    ctx = GenContext(text="The opposite of hot is")
    choices = [" cold", " freezing cold weather"]
    greedy = backend.select(ctx, choices, 0.0, greedy_token_selection)
    assert greedy.decision in choices
    uncond = backend.select(ctx, choices, 0.0, unconditional_likelihood_normalized)
    assert uncond.decision in choices
    assert [len(x) for x in uncond.meta_info["unconditional_token_logprobs"]] == [
        len(x) for x in uncond.meta_info["input_token_logprobs"]
    ]


def test_cache_prefix_lands_in_the_radix_cache(backend, engine):
    assert backend.flush_cache()
    prefix = "A long shared instruction that many requests start with, repeated for effect. " * 3
    backend.cache_prefix(prefix)
    _, meta = backend.generate(GenContext(text=prefix + "Next:"), SamplingSpec(max_new_tokens=2, temperature=0))
    assert meta["cached_tokens"] >= len(engine.tokenizer.encode(prefix)) - 1


def test_abort_stops_a_states_requests_and_refuses_its_new_ones(backend, engine):
    ctx = GenContext(text="Count to a thousand: 1, 2,", state_id="s-abort-test")
    other = GenContext(text="Count to ten: 1,", state_id="s-bystander")
    stream = backend.generate_stream(ctx, SamplingSpec(max_new_tokens=1000, temperature=0, ignore_eos=True))
    next(stream)
    assert [r for r in engine.snapshot()["running"] if r.startswith("sgl-s-abort-test-")] != []
    assert backend.abort(["s-abort-test", "s-bystander"]) == 1  # the bystander had nothing running
    with pytest.raises(BackendError, match="aborted the request: interrupted"):
        list(stream)
    with pytest.raises(BackendError, match="program state s-abort-test was aborted"):
        backend.select(ctx, ["3", "three"], 0.0, token_length_normalized)
    backend.end_program("s-abort-test")  # the state ended: its id is forgotten
    backend.end_program("s-bystander")
    assert backend.generate(ctx, SamplingSpec(max_new_tokens=2, temperature=0))[1]["completion_tokens"] == 2
    assert backend.abort(["s-abort-test"]) == 0
    backend.end_program("s-abort-test")
    assert backend.generate(other, SamplingSpec(max_new_tokens=1))[1]["completion_tokens"] == 1
    stats = engine.stats()
    assert stats["num_running"] == 0 and stats["num_waiting"] == 0


def test_images_and_empty_prompts_are_refused(backend):
    with pytest.raises(UnsupportedFeatureError, match="smollm2-135m is text-only"):
        backend.generate(GenContext(text="see <image>", images=["cat.png"]), SamplingSpec())
    with pytest.raises(ValueError, match="empty prompt"):
        backend.select(GenContext(text=""), ["a"], 0.0, token_length_normalized)


def test_constructor_arguments_are_exclusive(engine):
    with pytest.raises(ValueError, match="either an existing engine or model"):
        EngineBackend(engine=engine, model="smollm2-135m")


def test_chat_template_comes_from_the_tokenizer(backend, engine):
    template = backend.get_chat_template()
    messages = [{"role": "user", "content": "hi"}]
    assert template.render(messages, True) == engine.apply_chat_template(messages)
