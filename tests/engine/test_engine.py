"""The engine end to end on the real SmolLM2-135M-Instruct (fp32, CPU).

Most tests share the session `engine`; tests that need other settings (no radix cache, a tiny
KV budget, small prefill chunks) build their own and shut it down. Every test ends with
`check_integrity()` on each engine it used.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import pytest

pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0}

QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "How many legs does a spider have?",
    "What is 12 times 12?",
    "Who wrote Romeo and Juliet?",
    "What is the boiling point of water in Celsius?",
    "Give me a synonym for happy.",
    "What planet is known as the Red Planet?",
    "Translate 'good morning' into Spanish.",
    "What is the largest ocean on Earth?",
    "What gas do plants absorb from the air?",
    "How many days are in a leap year?",
    "What is the chemical symbol for gold?",
    "Name a famous painting by Leonardo da Vinci.",
    "What is the square root of 81?",
    "Which animal is called the king of the jungle?",
]


def chat(engine, question: str) -> str:
    return engine.apply_chat_template([{"role": "user", "content": question}])


@contextlib.contextmanager
def extra_engine(smollm2_path, **kwargs):
    """An engine with non-default settings, always shut down."""
    from sgnb.engine import Engine

    eng = Engine(str(smollm2_path), dtype="float32", **kwargs)
    try:
        yield eng
    finally:
        eng.shutdown()


def wait_idle(engine, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = engine.stats()
        if s["num_running"] == 0 and s["num_waiting"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"engine still busy after {timeout}s: {engine.stats()}")


def texts(results: list[dict]) -> list[str]:
    return [r["text"] for r in results]


def ids(results: list[dict]) -> list[list[int]]:
    return [r["output_ids"] for r in results]


@pytest.fixture(scope="module")
def chat_prompts(engine) -> list[str]:
    return [chat(engine, q) for q in QUESTIONS]


@pytest.fixture(scope="module")
def batch16(engine, chat_prompts) -> list[dict]:
    """The 16 chat prompts as one batch of 16, greedy, 16 new tokens."""
    out = engine.generate(chat_prompts, {**GREEDY, "max_new_tokens": 16})
    engine.check_integrity()
    return out


# ------------------------------------------------------------------------------ sanity


def test_capital_of_france_answer_mentions_paris(engine):
    out = engine.generate(chat(engine, "What is the capital of France?"), {**GREEDY, "max_new_tokens": 24})
    assert "Paris" in out["text"]
    meta = out["meta_info"]
    assert meta["completion_tokens"] == len(out["output_ids"]) > 0
    assert meta["prompt_tokens"] == len(engine.tokenizer.encode(chat(engine, "What is the capital of France?")))
    assert meta["finish_reason"]["type"] in ("stop", "length")
    engine.check_integrity()


def test_batch_returns_one_result_per_prompt_in_order(engine, chat_prompts, batch16):
    assert len(batch16) == 16
    assert len({r["meta_info"]["id"] for r in batch16}) == 16
    for prompt, result in zip(chat_prompts, batch16):
        assert result["meta_info"]["prompt_tokens"] == len(engine.tokenizer.encode(prompt))
        assert 0 < result["meta_info"]["completion_tokens"] <= 16
    assert "Paris" in batch16[0]["text"]
    engine.check_integrity()


# ------------------------------------------------------------------------------ identical greedy outputs


def test_greedy_outputs_identical_at_batch_sizes_1_and_16(engine, chat_prompts, batch16):
    singles = [engine.generate(p, {**GREEDY, "max_new_tokens": 16}) for p in chat_prompts]
    assert ids(singles) == ids(batch16)
    assert texts(singles) == texts(batch16)
    engine.check_integrity()


def test_greedy_outputs_identical_with_radix_cache_on_and_off(engine, smollm2_path, chat_prompts, batch16):
    with extra_engine(smollm2_path, radix_cache=False) as plain:
        batched = plain.generate(chat_prompts, {**GREEDY, "max_new_tokens": 16})
        singles = [plain.generate(p, {**GREEDY, "max_new_tokens": 16}) for p in chat_prompts[:4]]
        assert all(r["meta_info"]["cached_tokens"] == 0 for r in batched + singles)
        assert plain.stats()["tree_tokens"] == 0
        plain.check_integrity()
    assert ids(batched) == ids(batch16)
    assert ids(singles) == ids(batch16[:4])
    engine.check_integrity()


def test_greedy_outputs_identical_with_plain_and_prepacked_matmuls(engine, smollm2_path, chat_prompts, batch16):
    with extra_engine(smollm2_path, prepack_weights=False) as plain:
        batched = plain.generate(chat_prompts, {**GREEDY, "max_new_tokens": 16})
        plain.check_integrity()
    assert ids(batched) == ids(batch16)
    engine.check_integrity()


# ------------------------------------------------------------------------------ memory pressure


def eviction_prompts(engine) -> list[str]:
    """24 prompts: chat prompts share the template's system prefix, two few-shot groups share more, raw ones nothing."""
    shots = ["Q: 2+2?\nA: 4\nQ: 3+5?\nA: 8\nQ: 7+1?\nA: 8\n", "Translate to French.\ncat -> chat\ndog -> chien\n"]
    prompts = [chat(engine, q) for q in QUESTIONS[:8]]
    prompts += [shots[0] + f"Q: {a}+{b}?\nA:" for a, b in [(1, 2), (4, 4), (9, 3), (6, 6), (5, 2), (8, 1)]]
    prompts += [shots[1] + f"{w} ->" for w in ("house", "bread", "water", "apple", "book")]
    prompts += ["Once upon a time", "The weather today is", "def fibonacci(n):", "Roses are red,",
                "In 1492, Columbus"]
    assert len(prompts) == 24
    return prompts


def test_tiny_kv_budget_evicts_and_gives_the_same_outputs(engine, smollm2_path):
    prompts = eviction_prompts(engine)
    params = {**GREEDY, "max_new_tokens": 8}
    reference = engine.generate(prompts, params)
    need = max(len(engine.tokenizer.encode(p)) for p in prompts) + 8
    with extra_engine(smollm2_path, max_total_tokens=need + 2) as tight:
        assert tight.stats()["num_slots"] == need + 1
        out = tight.generate(prompts, params)
        stats = tight.stats()
        tight.check_integrity()
        again = tight.generate(prompts[:3], params)            # still serving, cache still coherent
        tight.check_integrity()
    assert ids(out) == ids(reference)
    assert texts(out) == texts(reference)
    assert ids(again) == ids(reference[:3])
    assert stats["num_evicted_tokens"] > 0
    assert stats["num_finished"] == 24
    engine.check_integrity()


def test_decode_growth_retracts_requests_without_changing_outputs(engine, smollm2_path):
    prompts = [chat(engine, "Write a long story about a dragon."), chat(engine, "Describe the ocean in detail.")]
    num_new = 140                                     # more than the scheduler's per-request decode reserve
    params = {**GREEDY, "max_new_tokens": num_new, "ignore_eos": True}
    reference = engine.generate(prompts, params)
    a, b = (engine.tokenizer.encode(p) for p in prompts)
    # KV slots both need at the end (the last token has none; the shared chat prefix is stored once)
    need = len(a) + len(b) + 2 * (num_new - 1) - _common_prefix_len(a, b)
    with extra_engine(smollm2_path, max_total_tokens=need - 2) as tight:   # both admitted, both cannot finish
        out = tight.generate(prompts, params)
        stats = tight.stats()
        tight.check_integrity()
    assert stats["num_retractions"] > 0
    assert [r["meta_info"]["completion_tokens"] for r in out] == [num_new, num_new]
    assert ids(out) == ids(reference)
    engine.check_integrity()


# ------------------------------------------------------------------------------ chunked prefill and caching


LONG_PROMPT = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
               "combined movable metal type, oil-based inks and a wooden press adapted from wine making. "
               "Within decades, printing shops spread across Europe, books became cheaper, literacy rose, and "
               "ideas travelled faster than ever before. Pamphlets, newspapers and scientific journals followed, "
               "and scholars in distant cities could compare the same text, correct it, and build on each "
               "other's work. Summarize this paragraph in one sentence:")


def test_chunked_prefill_gives_the_same_greedy_output(engine, smollm2_path):
    prompt_len = len(engine.tokenizer.encode(LONG_PROMPT))
    assert 80 <= prompt_len <= 120
    params = {**GREEDY, "max_new_tokens": 12}
    reference = engine.generate(LONG_PROMPT, params, return_logprob=True)
    with extra_engine(smollm2_path, max_prefill_tokens=16) as chunked:
        out = chunked.generate(LONG_PROMPT, params, return_logprob=True)
        stats = chunked.stats()
        chunked.check_integrity()
    assert out["output_ids"] == reference["output_ids"]
    # every chunk is a forward pass: ceil(prompt_len / 16) prefill passes, then one per further token
    num_chunks = -(-prompt_len // 16)
    assert stats["num_forward_passes"] == num_chunks + len(out["output_ids"]) - 1
    for (lp, tok, _), (ref_lp, ref_tok, _) in zip(out["meta_info"]["output_token_logprobs"],
                                                  reference["meta_info"]["output_token_logprobs"]):
        assert tok == ref_tok and lp == pytest.approx(ref_lp, abs=1e-4)
    engine.check_integrity()


def test_repeated_prompt_reuses_all_but_its_last_token(engine):
    wait_idle(engine)
    assert engine.flush_cache()
    prompt = chat(engine, "Tell me one fact about owls.")
    prompt_len = len(engine.tokenizer.encode(prompt))
    first = engine.generate(prompt, {**GREEDY, "max_new_tokens": 6})
    second = engine.generate(prompt, {**GREEDY, "max_new_tokens": 6})
    assert first["meta_info"]["cached_tokens"] == 0
    assert second["meta_info"]["cached_tokens"] == prompt_len - 1
    assert second["output_ids"] == first["output_ids"]
    engine.check_integrity()


def test_shared_few_shot_prefix_is_computed_once_for_a_batch(engine):
    wait_idle(engine)
    assert engine.flush_cache()
    shots = "".join(f"Question: What is {a} plus {b}?\nAnswer: {a + b}\n\n" for a, b in
                    [(2, 3), (10, 7), (6, 6), (21, 4), (8, 9), (30, 12), (5, 5), (14, 3)])
    prompts = [shots + f"Question: What is {a} plus {b}?\nAnswer:" for a, b in
               [(1, 1), (4, 2), (7, 3), (9, 9), (11, 5), (3, 8), (12, 12), (20, 1)]]
    tok = engine.tokenizer
    encoded = [tok.encode(p) for p in prompts]
    shared_len = min(_common_prefix_len(encoded[0], e) for e in encoded[1:])
    assert shared_len >= 100
    before = engine.stats()
    out = engine.generate(prompts, {**GREEDY, "max_new_tokens": 4})
    after = engine.stats()
    queried = after["queried_tokens"] - before["queried_tokens"]
    matched = after["cached_tokens"] - before["cached_tokens"]
    optimum = (len(prompts) - 1) * shared_len          # everyone but the first reuses the shared prefix
    assert queried == sum(len(e) for e in encoded)
    assert matched >= 0.9 * optimum
    assert sorted(r["meta_info"]["cached_tokens"] for r in out)[1] >= shared_len
    assert after["num_prefill_tokens"] - before["num_prefill_tokens"] <= sum(map(len, encoded)) - 0.9 * optimum
    engine.check_integrity()


def _common_prefix_len(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


# ------------------------------------------------------------------------------ continuous batching


def test_request_submitted_during_a_long_decode_finishes_first(engine):
    long_prompt = chat(engine, "Write a long story about a dragon.")
    short_prompt = chat(engine, "What is 2 plus 2?")
    finished_at: dict[str, float] = {}
    short_result: dict = {}

    def submit_short():
        short_result.update(engine.generate(short_prompt, {**GREEDY, "max_new_tokens": 4}))
        finished_at["short"] = time.monotonic()

    thread = threading.Thread(target=submit_short)
    long_tokens = 0
    for i, delta in enumerate(engine.generate(long_prompt, {**GREEDY, "max_new_tokens": 60, "ignore_eos": True},
                                              stream=True)):
        long_tokens += len(delta["output_ids"])
        if i == 2:
            thread.start()
        if delta["finished"]:
            finished_at["long"] = time.monotonic()
    thread.join(timeout=60)
    assert long_tokens == 60
    assert short_result["meta_info"]["completion_tokens"] == 4
    assert finished_at["short"] < finished_at["long"]
    engine.check_integrity()


# ------------------------------------------------------------------------------ sampling


@pytest.fixture(scope="module")
def poem(engine) -> dict:
    """A greedy 40-token output to cut stop strings from."""
    out = engine.generate(chat(engine, "Write a short poem about the sea."),
                          {**GREEDY, "max_new_tokens": 40, "ignore_eos": True})
    assert out["meta_info"]["completion_tokens"] == 40
    return out


def _token_boundary_stop(engine, output_ids: list[int], text: str) -> tuple[int, int, str]:
    """(token index k, char offset b, stop) with stop = text[b-2:b+2] straddling tokens k-1 | k, first found at b-2."""
    tok = engine.tokenizer
    for k in range(4, len(output_ids) - 2):
        b = len(tok.decode(output_ids[:k], skip_special_tokens=True))
        piece_before = tok.decode(output_ids[k - 1:k])
        piece_after = tok.decode(output_ids[k:k + 1])
        stop = text[b - 2:b + 2]
        if (len(piece_before) >= 2 and len(piece_after) >= 2 and text.startswith(tok.decode(output_ids[:k]))
                and stop.strip() == stop and len(stop) == 4 and text.find(stop) == b - 2):
            return k, b, stop
    raise AssertionError(f"no token boundary in {text!r} to cut a stop string from")


def test_stop_string_spanning_a_token_boundary_stops_and_is_trimmed(engine, poem):
    prompt = chat(engine, "Write a short poem about the sea.")
    k, b, stop = _token_boundary_stop(engine, poem["output_ids"], poem["text"])
    params = {**GREEDY, "max_new_tokens": 40, "ignore_eos": True, "stop": [stop]}
    out = engine.generate(prompt, params)
    assert out["text"] == poem["text"][:b - 2]
    assert out["output_ids"] == poem["output_ids"][:k + 1]        # the token completing the stop ends it
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
    kept = engine.generate(prompt, {**params, "no_stop_trim": True})
    assert kept["text"] == poem["text"][:b + 2]
    assert kept["text"].endswith(stop)
    engine.check_integrity()


def test_streaming_with_a_stop_string_never_leaks_part_of_it(engine, poem):
    prompt = chat(engine, "Write a short poem about the sea.")
    k, b, stop = _token_boundary_stop(engine, poem["output_ids"], poem["text"])
    deltas = list(engine.generate(prompt, {**GREEDY, "max_new_tokens": 40, "ignore_eos": True, "stop": stop},
                                  stream=True))
    assert "".join(d["text"] for d in deltas) == poem["text"][:b - 2]
    assert deltas[-1]["finished"] and deltas[-1]["meta_info"]["finish_reason"]["matched"] == stop
    engine.check_integrity()


def test_earliest_of_several_stop_strings_wins(engine, poem):
    prompt = chat(engine, "Write a short poem about the sea.")
    k, b, stop = _token_boundary_stop(engine, poem["output_ids"], poem["text"])
    later = poem["text"][-6:]
    assert poem["text"].find(later) > b
    out = engine.generate(prompt, {**GREEDY, "max_new_tokens": 40, "ignore_eos": True, "stop": [later, stop]})
    assert out["meta_info"]["finish_reason"]["matched"] == stop
    engine.check_integrity()


def test_stop_token_id_ends_generation_at_that_token(engine, poem):
    prompt = chat(engine, "Write a short poem about the sea.")
    stop_id = poem["output_ids"][5]
    first = poem["output_ids"].index(stop_id)
    out = engine.generate(prompt, {**GREEDY, "max_new_tokens": 40, "ignore_eos": True,
                                   "stop_token_ids": [stop_id]})
    assert out["output_ids"] == poem["output_ids"][:first + 1]
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop_id}
    engine.check_integrity()


def test_max_new_tokens_ends_with_finish_reason_length(engine, poem):
    prompt = chat(engine, "Write a short poem about the sea.")
    out = engine.generate(prompt, {**GREEDY, "max_new_tokens": 5})
    assert out["output_ids"] == poem["output_ids"][:5]
    assert out["meta_info"]["finish_reason"] == {"type": "length", "length": 5}
    assert out["meta_info"]["completion_tokens"] == 5
    engine.check_integrity()


def test_eos_stops_unless_ignore_eos(engine):
    prompt = chat(engine, "What is the capital of France?")
    natural = engine.generate(prompt, {**GREEDY, "max_new_tokens": 30})
    reason = natural["meta_info"]["finish_reason"]
    assert reason["type"] == "stop" and reason["matched"] in engine.eos_ids
    n = len(natural["output_ids"])
    assert natural["output_ids"][-1] in engine.eos_ids
    assert engine.tokenizer.decode([natural["output_ids"][-1]]) not in natural["text"]   # special: skipped
    ignored = engine.generate(prompt, {**GREEDY, "max_new_tokens": n + 4, "ignore_eos": True})
    assert ignored["output_ids"][:n] == natural["output_ids"]
    assert ignored["meta_info"]["finish_reason"] == {"type": "length", "length": n + 4}
    engine.check_integrity()


def test_min_new_tokens_forbids_eos_until_reached(engine):
    prompt = chat(engine, "What is the capital of France?")
    natural = engine.generate(prompt, {**GREEDY, "max_new_tokens": 30})
    n = len(natural["output_ids"])
    out = engine.generate(prompt, {**GREEDY, "max_new_tokens": n + 8, "min_new_tokens": n + 3})
    assert len(out["output_ids"]) >= n + 3
    assert not set(out["output_ids"][:n + 3]) & set(engine.eos_ids)
    assert out["output_ids"][:n - 1] == natural["output_ids"][:n - 1]     # same until the EOS was due
    engine.check_integrity()


def test_same_seed_same_text_and_different_seeds_differ(engine):
    prompt = chat(engine, "Invent a name for a new fruit and describe its taste.")
    params = {"temperature": 1.0, "max_new_tokens": 10, "ignore_eos": True}
    a = engine.generate(prompt, {**params, "sampling_seed": 1234})
    b = engine.generate(prompt, {**params, "sampling_seed": 1234})
    assert a["output_ids"] == b["output_ids"]
    # a seeded request draws the same tokens inside a batch of other (sampled) requests
    batch = engine.generate([prompt] * 3, [{**params, "sampling_seed": 99}, {**params, "sampling_seed": 1234},
                                           {**params}])
    assert batch[1]["output_ids"] == a["output_ids"]
    others = [engine.generate(prompt, {**params, "sampling_seed": s})["output_ids"] for s in (1, 2, 3)]
    assert len({tuple(o) for o in others + [a["output_ids"]]}) >= 3
    engine.check_integrity()


def test_top_k_one_at_temperature_one_equals_greedy(engine, poem):
    prompt = chat(engine, "Write a short poem about the sea.")
    out = engine.generate(prompt, {"temperature": 1.0, "top_k": 1, "max_new_tokens": 12})
    assert out["output_ids"] == poem["output_ids"][:12]
    engine.check_integrity()


def test_tightest_top_p_and_min_p_sample_the_greedy_tokens(engine, poem):
    prompt = chat(engine, "Write a short poem about the sea.")
    out = engine.generate(prompt, {"temperature": 1.0, "top_p": 0.01, "max_new_tokens": 12, "sampling_seed": 5})
    assert out["output_ids"] == poem["output_ids"][:12]            # top_p tiny: only the top token survives
    out = engine.generate(prompt, {"temperature": 1.0, "min_p": 1.0, "max_new_tokens": 12, "sampling_seed": 5})
    assert out["output_ids"] == poem["output_ids"][:12]            # min_p 1: only the top token survives
    engine.check_integrity()


def test_frequency_and_presence_penalties_steer_each_greedy_choice(engine, poem):
    """Each penalized greedy token is the argmax of raw logprob - penalties over the model's top 20."""
    prompt = chat(engine, "Write a short poem about the sea.")
    freq, pres = 0.8, 0.6
    out = engine.generate(prompt, {**GREEDY, "max_new_tokens": 24, "ignore_eos": True,
                                   "frequency_penalty": freq, "presence_penalty": pres},
                          return_logprob=True, top_logprobs_num=20)
    assert out["output_ids"] != poem["output_ids"][:24]              # the penalties changed something
    meta = out["meta_info"]
    for i, ((chosen_lp, chosen, _), top) in enumerate(zip(meta["output_token_logprobs"],
                                                           meta["output_top_logprobs"])):
        seen = out["output_ids"][:i]

        def penalized(lp: float, token: int) -> float:
            n = seen.count(token)
            return lp - freq * n - pres * (n > 0)

        assert penalized(chosen_lp, chosen) >= max(penalized(lp, t) for lp, t, _ in top) - 1e-4, i
    engine.check_integrity()


# ------------------------------------------------------------------------------ logprobs


def test_output_logprobs_match_score_of_prompt_plus_output(engine):
    prompt = chat(engine, "Name three primary colors.")
    prompt_ids = engine.tokenizer.encode(prompt)
    out = engine.generate(prompt, {**GREEDY, "max_new_tokens": 10}, return_logprob=True)
    produced = out["meta_info"]["output_token_logprobs"]
    assert [t for _, t, _ in produced] == out["output_ids"]
    assert all(lp <= 0 for lp, _, _ in produced)
    scored = engine.score(input_ids=prompt_ids + out["output_ids"], logprob_start_len=len(prompt_ids))
    expected = scored["meta_info"]["input_token_logprobs"]
    assert [t for _, t, _ in expected] == out["output_ids"]
    for (lp, _, text), (ref_lp, _, ref_text) in zip(produced, expected):
        assert lp == pytest.approx(ref_lp, abs=1e-4)
        assert text == ref_text
    engine.check_integrity()


def test_input_logprobs_from_a_start_position(engine):
    prompt = "The quick brown fox jumps over the lazy dog."
    prompt_ids = engine.tokenizer.encode(prompt)
    full = engine.score(prompt, logprob_start_len=0)["meta_info"]["input_token_logprobs"]
    assert len(full) == len(prompt_ids)
    assert full[0][0] is None and full[0][1] == prompt_ids[0]
    assert [t for _, t, _ in full] == prompt_ids
    assert all(lp is not None and lp <= 0 for lp, _, _ in full[1:])
    start = 4
    part = engine.generate(prompt, {**GREEDY, "max_new_tokens": 2}, return_logprob=True,
                           logprob_start_len=start)["meta_info"]["input_token_logprobs"]
    assert [t for _, t, _ in part] == prompt_ids[start:]
    for (lp, _, _), (ref_lp, _, _) in zip(part, full[start:]):
        assert lp == pytest.approx(ref_lp, abs=1e-4)
    # a cached prompt gives the same input logprobs as a fresh one
    again = engine.score(prompt, logprob_start_len=0)["meta_info"]["input_token_logprobs"]
    assert again[0][0] is None
    assert [lp for lp, _, _ in again[1:]] == pytest.approx([lp for lp, _, _ in full[1:]], abs=1e-4)
    engine.check_integrity()


def test_score_prefers_the_likely_continuation(engine):
    base = engine.tokenizer.encode("The capital of France is")
    a, b = (engine.tokenizer.encode("The capital of France is" + s) for s in (" Paris", " Banana"))
    results = engine.score(input_ids=[a, b], logprob_start_len=len(base))
    paris, banana = (sum(lp for lp, _, _ in r["meta_info"]["input_token_logprobs"]) for r in results)
    assert paris > banana
    assert all(r["meta_info"]["completion_tokens"] == 0 for r in results)
    engine.check_integrity()


def test_top_logprobs_are_sorted_and_start_with_the_greedy_token(engine):
    prompt = chat(engine, "How many legs does a spider have?")
    out = engine.generate(prompt, {**GREEDY, "max_new_tokens": 6}, return_logprob=True, top_logprobs_num=5,
                          logprob_start_len=0)
    meta = out["meta_info"]
    assert len(meta["output_top_logprobs"]) == len(out["output_ids"])
    for top, chosen, token in zip(meta["output_top_logprobs"], meta["output_token_logprobs"], out["output_ids"]):
        assert len(top) == 5
        values = [lp for lp, _, _ in top]
        assert values == sorted(values, reverse=True)
        assert top[0][1] == token
        assert top[0][0] == pytest.approx(chosen[0], abs=1e-6)
    assert meta["input_top_logprobs"][0] is None
    for top, (lp, token, _) in zip(meta["input_top_logprobs"][1:], meta["input_token_logprobs"][1:]):
        assert len(top) == 5
        assert [v for v, _, _ in top] == sorted((v for v, _, _ in top), reverse=True)
        assert top[0][0] >= lp - 1e-6                  # the actual token is at most as likely as the best
    engine.check_integrity()


# ------------------------------------------------------------------------------ streaming, abort, interrupt


def test_stream_deltas_concatenate_to_the_final_text(engine):
    prompt = chat(engine, "Describe a sunset in two sentences.")
    params = {**GREEDY, "max_new_tokens": 24}
    whole = engine.generate(prompt, params)
    deltas = list(engine.generate(prompt, params, stream=True))
    assert len(deltas) > 1
    assert "".join(d["text"] for d in deltas) == whole["text"]
    assert [t for d in deltas for t in d["output_ids"]] == whole["output_ids"]
    assert deltas[-1]["finished"] and not any(d["finished"] for d in deltas[:-1])
    assert deltas[-1]["meta_info"]["finish_reason"] == whole["meta_info"]["finish_reason"]
    engine.check_integrity()


def test_abort_ends_a_streaming_request_and_the_engine_keeps_serving(engine):
    prompt = chat(engine, "Write a long story about a dragon.")
    deltas = []
    for delta in engine.generate(prompt, {**GREEDY, "max_new_tokens": 400, "ignore_eos": True}, stream=True,
                                 rid="to-abort"):
        deltas.append(delta)
        if len(deltas) == 3:
            engine.abort("to-abort")
    last = deltas[-1]
    assert last["finished"]
    assert last["meta_info"]["finish_reason"]["type"] == "abort"
    assert last["meta_info"]["completion_tokens"] < 400
    wait_idle(engine)
    engine.check_integrity()
    assert "Paris" in engine.generate(chat(engine, "What is the capital of France?"),
                                      {**GREEDY, "max_new_tokens": 16})["text"]
    engine.check_integrity()


def test_abort_from_another_thread_ends_a_blocking_generate(engine):
    prompt = chat(engine, "Write a long story about a dragon.")
    timer = threading.Timer(1.0, engine.abort, args=("blocking-abort",))
    timer.start()
    try:
        out = engine.generate(prompt, {**GREEDY, "max_new_tokens": 400, "ignore_eos": True}, rid="blocking-abort")
    finally:
        timer.cancel()
    assert out["meta_info"]["finish_reason"]["type"] == "abort"
    assert out["meta_info"]["completion_tokens"] < 400
    assert out["text"] == engine.tokenizer.decode(out["output_ids"], skip_special_tokens=True)
    engine.check_integrity()


def test_closing_a_stream_early_aborts_its_request(engine):
    stream = engine.generate(chat(engine, "Write a long story about a dragon."),
                             {**GREEDY, "max_new_tokens": 400, "ignore_eos": True}, stream=True)
    next(stream)
    next(stream)
    stream.close()
    wait_idle(engine)
    engine.check_integrity()


def test_keyboard_interrupt_while_waiting_aborts_the_request(engine):
    prompt = chat(engine, "Write a long story about a dragon.")
    main = threading.main_thread().ident
    timer = threading.Timer(1.5, signal.pthread_kill, args=(main, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            engine.generate(prompt, {**GREEDY, "max_new_tokens": 400, "ignore_eos": True}, rid="interrupted")
    finally:
        timer.cancel()
    wait_idle(engine, timeout=5)                  # aborted, not still decoding its 400 tokens
    assert "interrupted" not in engine.snapshot()["running"]
    out = engine.generate(chat(engine, "What is the capital of France?"), {**GREEDY, "max_new_tokens": 16})
    assert "Paris" in out["text"]
    engine.check_integrity()


def test_stats_and_snapshot_describe_the_engine(engine):
    engine.generate(chat(engine, "Name three primary colors."), {**GREEDY, "max_new_tokens": 4})
    stats = engine.stats()
    for key in ("cache_hit_rate", "num_evicted_tokens", "pool_usage", "generation_throughput", "num_retractions"):
        assert key in stats
    assert 0 <= stats["cache_hit_rate"] <= 1 and 0 <= stats["pool_usage"] <= 1
    assert stats["tree_tokens"] > 0
    snap = engine.snapshot(max_nodes=100_000)
    assert snap["running"] == [] and snap["waiting"] == []
    cache = snap["cache"]
    assert cache["cached_tokens"] == stats["tree_tokens"] and not cache["truncated"]
    assert sum(node["num_tokens"] for node in cache["nodes"]) == stats["tree_tokens"]
    assert all(node["lock_ref"] == 0 for node in cache["nodes"])         # idle: nothing is locked
    assert any("colors" in node["text"] for node in cache["nodes"])
    engine.check_integrity()
