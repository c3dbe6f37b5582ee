"""Bad input to the engine: a ValueError whose message names the problem, and the engine keeps serving."""

from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0, "max_new_tokens": 4}


def assert_still_serving(engine) -> None:
    out = engine.generate("The capital of France is", GREEDY)
    assert out["meta_info"]["completion_tokens"] > 0
    stats = engine.stats()
    assert stats["num_running"] == 0 and stats["num_waiting"] == 0
    engine.check_integrity()


# ------------------------------------------------------------------------------ models


def test_unknown_model_name_is_named_in_the_error(engine):
    from sgnb.engine import Engine

    with pytest.raises(ValueError, match="no-such-model-xyz"):
        Engine("no-such-model-xyz")
    assert_still_serving(engine)


def test_missing_model_path_is_named_in_the_error(engine, tmp_path):
    from sgnb.engine import Engine

    missing = tmp_path / "not-here" / "model.gguf"
    with pytest.raises(ValueError, match="not-here"):
        Engine(str(missing))
    assert_still_serving(engine)


def test_folder_without_config_is_not_a_model(engine, tmp_path):
    from sgnb.engine import Engine

    with pytest.raises(ValueError, match="config.json"):
        Engine(str(tmp_path))
    assert_still_serving(engine)


def test_corrupt_weight_file_is_named_in_the_error(engine, smollm2_path, tmp_path):
    from sgnb.engine import Engine

    shutil.copy(smollm2_path / "config.json", tmp_path / "config.json")
    (tmp_path / "model.safetensors").write_bytes(b"\x13\x00\x00\x00\x00\x00\x00\x00not a safetensors header" * 40)
    with pytest.raises(ValueError, match="model.safetensors"):
        Engine(str(tmp_path))
    assert_still_serving(engine)


def test_folder_without_weights_says_so(engine, smollm2_path, tmp_path):
    from sgnb.engine import Engine

    shutil.copy(smollm2_path / "config.json", tmp_path / "config.json")
    with pytest.raises(ValueError, match="safetensors"):
        Engine(str(tmp_path))
    assert_still_serving(engine)


def test_truncated_weight_file_is_named_in_the_error(engine, smollm2_path, tmp_path):
    from sgnb.engine import Engine

    shutil.copy(smollm2_path / "config.json", tmp_path / "config.json")
    with open(smollm2_path / "model.safetensors", "rb") as src:
        (tmp_path / "model.safetensors").write_bytes(src.read(1 << 20))        # header intact, data cut
    with pytest.raises(ValueError, match="model.safetensors|weights"):
        Engine(str(tmp_path))
    assert_still_serving(engine)


@pytest.mark.parametrize(("option", "value"), [("dtype", "float64"), ("schedule_policy", "random"),
                                                ("device", "tpu"), ("max_total_tokens", 1),
                                                ("kv_cache_gb", 0)])
def test_invalid_engine_option_is_named_in_the_error(engine, smollm2_path, option, value):
    from sgnb.engine import Engine

    with pytest.raises(ValueError, match=option):
        Engine(str(smollm2_path), **{option: value})
    assert_still_serving(engine)


# ------------------------------------------------------------------------------ prompts


def test_prompt_longer_than_the_context_is_rejected(engine):
    with pytest.raises(ValueError, match="longer than the context"):
        engine.generate(input_ids=[100] * (engine.max_context_len + 5), sampling_params=GREEDY)
    with pytest.raises(ValueError, match="longer than the context"):
        engine.generate("hello " * (engine.max_context_len + 5), GREEDY)
    assert_still_serving(engine)


def test_prompt_too_long_for_any_tokenization_is_rejected_by_its_length(engine):
    too_long = "x" * (engine.max_context_len * engine._longest_token_chars + 1)
    with pytest.raises(ValueError, match=f"prompt is {len(too_long)} characters"):
        engine.generate(too_long, GREEDY)
    assert_still_serving(engine)


@pytest.mark.parametrize(("kwargs", "name"), [({"prompt": 123}, "prompt"), ({"input_ids": 5}, "input_ids"),
                                              ({"input_ids": [[1, 2], 3]}, "input_ids")])
def test_prompt_of_the_wrong_type_is_a_value_error(engine, kwargs, name):
    with pytest.raises(ValueError, match=name):
        engine.generate(**kwargs, sampling_params=GREEDY)
    assert_still_serving(engine)


def test_empty_prompt_is_rejected(engine):
    with pytest.raises(ValueError, match="empty prompt"):
        engine.generate("", GREEDY)
    with pytest.raises(ValueError, match="empty prompt"):
        engine.generate(input_ids=[[5, 6], []], sampling_params=GREEDY)
    assert_still_serving(engine)


@pytest.mark.parametrize("kwargs", [{"prompt": []}, {"input_ids": []}])
def test_empty_batch_is_rejected(engine, kwargs):
    with pytest.raises(ValueError, match="empty batch"):
        engine.generate(**kwargs, sampling_params=GREEDY)
    assert_still_serving(engine)


def test_prompt_and_input_ids_are_exclusive(engine):
    with pytest.raises(ValueError, match="prompt or input_ids"):
        engine.generate("hi", GREEDY, input_ids=[1, 2])
    with pytest.raises(ValueError, match="prompt or input_ids"):
        engine.generate(sampling_params=GREEDY)
    assert_still_serving(engine)


def test_non_string_prompt_and_out_of_vocab_ids_are_rejected(engine):
    with pytest.raises(ValueError, match="prompt must be a string"):
        engine.generate(["fine", 42], GREEDY)
    vocab = engine.model_config.vocab_size
    with pytest.raises(ValueError, match="input_ids"):
        engine.generate(input_ids=[1, vocab], sampling_params=GREEDY)
    with pytest.raises(ValueError, match="input_ids"):
        engine.generate(input_ids=[1, -3], sampling_params=GREEDY)
    assert_still_serving(engine)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"sampling_params": [GREEDY] * 3}, "sampling_params"),
    ({"rid": ["a", "b", "c"]}, "rid"),
    ({"logprob_start_len": [0], "return_logprob": True}, "logprob_start_len"),
])
def test_mismatched_list_lengths_are_rejected(engine, kwargs, name):
    kwargs.setdefault("sampling_params", GREEDY)
    with pytest.raises(ValueError, match=f"{name} has .* entries for 2 prompts"):
        engine.generate(["one", "two"], **kwargs)
    assert_still_serving(engine)


def test_stream_takes_a_single_prompt(engine):
    with pytest.raises(ValueError, match="single prompt"):
        engine.generate(["one", "two"], GREEDY, stream=True)
    assert_still_serving(engine)


@pytest.mark.parametrize("start", [-1, 3, 100])
def test_logprob_start_len_outside_the_prompt_is_rejected(engine, start):
    prompt_ids = [504, 3575, 282]
    with pytest.raises(ValueError, match="logprob_start_len"):
        engine.generate(input_ids=prompt_ids, sampling_params=GREEDY, return_logprob=True,
                        logprob_start_len=start)
    assert_still_serving(engine)


def test_negative_top_logprobs_num_is_rejected(engine):
    with pytest.raises(ValueError, match="top_logprobs_num"):
        engine.generate("hi", GREEDY, return_logprob=True, top_logprobs_num=-1)
    assert_still_serving(engine)


def test_top_logprobs_num_above_the_vocabulary_is_rejected(engine):
    with pytest.raises(ValueError, match="top_logprobs_num"):
        engine.generate("hi", GREEDY, return_logprob=True, top_logprobs_num=engine.model_config.vocab_size + 1)
    assert_still_serving(engine)


def test_duplicate_request_ids_in_one_batch_are_rejected(engine):
    with pytest.raises(ValueError, match="same"):
        engine.generate(["one", "two"], GREEDY, rid=["same", "same"])
    assert_still_serving(engine)


def test_request_id_in_use_is_rejected(engine):
    stream = engine.generate("Once upon a time", {"temperature": 0, "max_new_tokens": 200, "ignore_eos": True},
                             stream=True, rid="busy")
    next(stream)                                      # "busy" is now running
    try:
        with pytest.raises(ValueError, match="busy"):
            engine.generate("hi", GREEDY, rid="busy")
    finally:
        stream.close()                                # aborts it
    assert_still_serving(engine)


# ------------------------------------------------------------------------------ sampling parameters


@pytest.mark.parametrize(("params", "name"), [
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": -5}, "max_new_tokens"),
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": "warm"}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.01}, "top_p"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": -7}, "top_k"),
    ({"min_p": 1.5}, "min_p"),
    ({"min_p": -0.5}, "min_p"),
    ({"frequency_penalty": 3.0}, "frequency_penalty"),
    ({"min_new_tokens": 10, "max_new_tokens": 5}, "min_new_tokens"),
    ({"stop": [""]}, "stop"),
    ({"stop": 5}, "stop"),
    ({"stop_token_ids": 5}, "stop_token_ids"),
    ({"stop_token_ids": [10**9]}, "stop_token_ids"),
    ({"sampling_seed": 2**70}, "sampling_seed"),
    ({"skip_special_tokens": "x"}, "skip_special_tokens"),
    ({"ignore_eos": "no"}, "ignore_eos"),
    ({"no_stop_trim": 3}, "no_stop_trim"),
    ({"jump_forward": "x"}, "jump_forward"),
    ({"max_tokens": 5}, "unknown sampling parameter.*max_tokens"),
    ({"temprature": 0.5}, "unknown sampling parameter.*temprature"),
])
def test_invalid_sampling_parameter_is_named_in_the_error(engine, params, name):
    with pytest.raises(ValueError, match=name):
        engine.generate("Hello", params)
    assert_still_serving(engine)


def test_one_bad_item_rejects_the_whole_batch_and_runs_nothing(engine):
    before = engine.stats()["num_finished"]
    with pytest.raises(ValueError, match="top_p"):
        engine.generate(["one", "two", "three"], [GREEDY, {**GREEDY, "top_p": 2.0}, GREEDY])
    assert engine.stats()["num_finished"] == before
    assert_still_serving(engine)


def test_extreme_sampling_values_never_fail_the_other_requests_of_their_batch(engine):
    sampled = {"max_new_tokens": 4, "temperature": 0.8, "sampling_seed": 3}
    params = [sampled, {**sampled, "top_p": 1e-300}, {**sampled, "temperature": 1e-300}, GREEDY]
    outs = engine.generate(["The sky is", "One, two,", "Paris is", "Water is"], params)
    assert [o["meta_info"]["finish_reason"]["type"] for o in outs] == ["length"] * 4
    # the extreme values leave only the most likely token: the greedy continuation
    greedy = engine.generate(["One, two,", "Paris is"], GREEDY)
    assert [o["output_ids"] for o in outs[1:3]] == [g["output_ids"] for g in greedy]
    assert_still_serving(engine)


def test_sampling_params_must_be_a_dict(engine):
    with pytest.raises(ValueError, match="sampling_params must be a dict"):
        engine.generate("Hello", "temperature=0")
    assert_still_serving(engine)


# ------------------------------------------------------------------------------ limits of a small engine


@pytest.fixture(scope="module")
def small_engine(smollm2_path):
    """A 64-token context and a 48-slot KV pool."""
    from sgnb.engine import Engine

    eng = Engine(str(smollm2_path), dtype="float32", max_context_len=64, max_total_tokens=49)
    yield eng
    eng.check_integrity()
    eng.shutdown()


def test_prompt_larger_than_the_kv_pool_is_rejected(small_engine):
    with pytest.raises(ValueError, match="KV pool"):
        small_engine.generate(input_ids=list(range(100, 150)), sampling_params=GREEDY)
    assert_still_serving(small_engine)


def test_prompt_longer_than_a_configured_context_is_rejected(small_engine):
    with pytest.raises(ValueError, match="longer than the context"):
        small_engine.generate(input_ids=list(range(100, 170)), sampling_params=GREEDY)
    assert_still_serving(small_engine)


def test_generation_stops_at_the_context_length(smollm2_path):
    from sgnb.engine import Engine

    with Engine(str(smollm2_path), dtype="float32", max_context_len=64) as eng:
        out = eng.generate(input_ids=list(range(100, 150)),
                           sampling_params={"temperature": 0, "max_new_tokens": 100, "ignore_eos": True})
        assert out["meta_info"]["finish_reason"] == {"type": "length", "length": 14}
        assert len(out["output_ids"]) == 64 - 50
        eng.check_integrity()


def test_request_outgrowing_the_kv_pool_ends_and_the_engine_keeps_serving(small_engine):
    # the prompt fits the 48-slot pool but prompt + output cannot: it must end (not hang), and say why
    out = small_engine.generate(input_ids=list(range(100, 140)),
                                sampling_params={"temperature": 0, "max_new_tokens": 20, "ignore_eos": True})
    reason = out["meta_info"]["finish_reason"]
    assert reason["type"] == "abort" and "KV pool" in reason["message"]
    assert 0 < out["meta_info"]["completion_tokens"] < 20
    assert_still_serving(small_engine)
