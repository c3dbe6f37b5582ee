"""Token marks of real programs on SmolLM2: cache vs computed prompt tokens, generated tokens, the tail."""

from __future__ import annotations

import time

import pytest

from sgnb.widgets.token_marks import count_marks, mark_tokens
from tests.widgets.waiting import wait_finished

pytestmark = pytest.mark.slow


def _covers(segments: list[dict], text: str) -> None:
    if not text:
        assert segments == []
        return
    assert segments[0]["start"] == 0 and segments[-1]["end"] == len(text)
    for a, b in zip(segments, segments[1:]):
        assert a["end"] == b["start"], f"gap or overlap between {a} and {b}"


def _spans(snap: dict, kind: str = "gen") -> list[tuple[int, dict]]:
    return [(i, s) for i, s in enumerate(snap["spans"]) if s["kind"] == kind]


def _region(segments: list[dict], lo: int, hi: int) -> dict[str, int]:
    counts = {"cache": 0, "computed": 0}
    for seg in segments:
        if seg["span"] is None and lo <= seg["start"] and seg["end"] <= hi and seg["kind"] in counts:
            counts[seg["kind"]] += seg["num_tokens"]
    return counts


def test_cold_prompt_is_computed_and_a_rerun_comes_from_cache(engine, backend, fork_program, run_traced):
    assert engine.flush_cache()
    tok = engine.tokenizer
    cold = wait_finished(run_traced(fork_program, topic="otters"))
    warm = wait_finished(run_traced(fork_program, topic="otters"))
    for snap, is_cold in ((cold, True), (warm, False)):
        segments = mark_tokens(snap, tok)
        _covers(segments, snap["text"])
        index, intro = _spans(snap)[0]
        meta = intro["meta_info"]
        region = _region(segments, 0, intro["start"])
        assert region["cache"] == meta["cached_tokens"]
        assert region["computed"] == meta["prompt_tokens"] - meta["cached_tokens"]
        cache_text = "".join(snap["text"][s["start"]:s["end"]] for s in segments
                             if s["kind"] == "cache" and s["end"] <= intro["start"])
        prompt_ids = tok.encode(snap["text"][:intro["start"]])
        assert cache_text == tok.decode(prompt_ids[:meta["cached_tokens"]])
        if is_cold:
            assert meta["cached_tokens"] == 0 and region["computed"] == len(prompt_ids)
        else:  # everything but the last prompt token (recomputed to get logits) is a cache hit
            assert meta["cached_tokens"] >= meta["prompt_tokens"] - 1 > 0


def test_generated_tokens_carry_their_logprobs_and_alternatives(engine, backend, fork_program, run_traced):
    snap = wait_finished(run_traced(fork_program, topic="volcanoes"))
    child = snap["children"][0]
    segments = mark_tokens(child, engine.tokenizer)
    _covers(segments, child["text"])
    for index, span in _spans(child):
        meta = span["meta_info"]
        gen_segs = [s for s in segments if s["span"] == index]
        assert all(s["kind"] == "generated" for s in gen_segs)
        assert "".join(child["text"][s["start"]:s["end"]] for s in gen_segs) == child["variables"][span["name"]]
        assert sum(s["num_tokens"] for s in gen_segs) == meta["completion_tokens"] == span["params"]["max_new_tokens"]
        per_token = [s for s in gen_segs if s.get("token_id") is not None]
        assert [s["token_id"] for s in per_token] == [t[1] for t in meta["output_token_logprobs"]][:len(per_token)]
        for seg, (lp, _, _) in zip(per_token, meta["output_token_logprobs"]):
            assert seg["logprob"] == pytest.approx(lp)
            assert len(seg["top"]) == 3
            assert seg["top"][0][1] >= seg["logprob"] - 1e-6  # temperature 0 picks the top token


def test_forked_state_prompt_extends_the_committed_prefix(engine, backend, fork_program, run_traced):
    snap = wait_finished(run_traced(fork_program, topic="glaciers"))
    for child in snap["children"]:
        segments = mark_tokens(child, engine.tokenizer)
        intro = child["spans"][0]
        index, fact = _spans(child)[1]
        meta = fact["meta_info"]
        assert meta["cached_tokens"] > 0
        assert child["fork_start"] == intro["end"]
        region = _region(segments, intro["end"], fact["start"])
        # the fork committed the shared prefix, so the cache boundary lies inside the child's own text: the
        # region holds the computed tokens, and cached ones only where a sibling's prompt got there first
        assert region["computed"] == meta["prompt_tokens"] - meta["cached_tokens"]
        num_prefix = len(engine.tokenizer.encode(child["text"][:child["fork_start"]]))
        assert meta["cached_tokens"] >= num_prefix
        assert region["cache"] == meta["cached_tokens"] - num_prefix


def test_select_and_tail_marks(engine, backend, fork_program, run_traced):
    snap = wait_finished(run_traced(fork_program, topic="bridges"))
    segments = mark_tokens(snap, engine.tokenizer)
    _covers(segments, snap["text"])
    index, select = _spans(snap, "select")[0]
    [chosen] = [s for s in segments if s["span"] == index]
    assert chosen["kind"] == "generated"
    assert snap["text"][chosen["start"]:chosen["end"]] == snap["variables"]["verdict"] in ("yes", "no")
    tail = segments[-1]
    assert tail["kind"] == "unsent" and tail["start"] == select["end"]  # the closing chat-template suffix


def test_streaming_gen_is_marked_while_it_runs(engine, backend, run_traced):
    import sgnb as sgl

    @sgl.function
    def longer(s):
        s += "A list of twenty animals:" + sgl.gen("animals", max_tokens=40, ignore_eos=True)

    state = run_traced(longer)
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        snap = state.snapshot()
        if snap["is_finished"]:
            break
        segments = mark_tokens(snap, engine.tokenizer)
        _covers(segments, snap["text"])
        live = [s for s in segments if s.get("streaming")]
        if live:
            assert live[0]["var"] == "animals" and segments[-1] is live[0]
            assert snap["text"][live[0]["start"]:] == snap["partial_variables"]["animals"]
            seen.append((segments[0]["kind"], live[0]["end"] - live[0]["start"]))
        time.sleep(0.05)
    snap = wait_finished(state)
    assert len({n for _, n in seen}) >= 2, f"expected to observe the gen growing, saw {seen}"
    assert all(kind == "pending" for kind, _ in seen)  # cache status arrives with the gen's meta_info
    final = mark_tokens(snap, engine.tokenizer)
    assert not any(s.get("streaming") for s in final)
    assert count_marks(final)["generated"] == 40


def test_without_a_tokenizer_the_cache_boundary_is_estimated(engine, backend, fork_program, run_traced):
    snap = wait_finished(run_traced(fork_program, topic="otters"))
    segments = mark_tokens(snap)
    _covers(segments, snap["text"])
    prompt = [s for s in segments if s["span"] is None and s["kind"] in ("cache", "computed")]
    assert prompt and all(s["approximate"] for s in prompt)


def test_overlapping_spans_are_refused():
    snap = {"text": "abcdef", "spans": [{"name": "a", "kind": "gen", "start": 0, "end": 4, "meta_info": {}},
                                        {"name": "b", "kind": "gen", "start": 2, "end": 6, "meta_info": {}}]}
    with pytest.raises(ValueError, match="span 1 .'b'. has offsets"):
        mark_tokens(snap)


def test_forced_tokens_come_from_the_constraint_trace():
    # a regex gen: two forced chains around two sampled digits; logprobs exist for sampled tokens only
    trace = [
        {"state": 0, "num_allowed": 1, "token_id": 90, "token": '{"', "forced": True, "masked_top": []},
        {"state": 2, "num_allowed": 1, "token_id": 64, "token": 'a": ', "forced": True, "masked_top": []},
        {"state": 6, "num_allowed": 10, "token_id": 19, "token": "4", "forced": False, "masked_top": []},
        {"state": 7, "num_allowed": 11, "token_id": 20, "token": "2", "forced": False, "masked_top": []},
        {"state": 7, "num_allowed": 1, "token_id": 95, "token": "}", "forced": True, "masked_top": []},
    ]
    meta = {"prompt_tokens": 2, "cached_tokens": 0, "completion_tokens": 5, "constraint_trace": trace,
            "output_token_logprobs": [[-0.5, 19, "4"], [-0.25, 20, "2"]]}
    text = "JSON: " + '{"a": 42}'
    snap = {"text": text, "is_finished": True, "partial_variables": {},
            "spans": [{"name": "j", "kind": "gen", "start": 6, "end": len(text), "meta_info": meta}]}
    segments = mark_tokens(snap)
    out = [(text[s["start"]:s["end"]], s["kind"], s.get("logprob")) for s in segments if s["span"] == 0]
    assert out == [('{"', "forced", None), ('a": ', "forced", None), ("4", "generated", -0.5),
                   ("2", "generated", -0.25), ("}", "forced", None)]
    assert count_marks(segments)["forced"] == 3


def test_text_before_a_fork_counts_as_sent_even_without_a_later_gen(engine, backend, run_traced):
    import sgnb as sgl

    @sgl.function
    def fork_only(s):
        s += "Two animals:"
        forks = s.fork(2)
        for f in forks:
            f += " a" + sgl.gen("animal", max_tokens=3, ignore_eos=True)
        forks.join()
        s += " The end."

    snap = wait_finished(run_traced(fork_only))
    segments = mark_tokens(snap, engine.tokenizer)
    fork_at = snap["children"][0]["fork_start"]
    assert [(s["kind"], s["start"], s["end"]) for s in segments] == [
        ("prompt", 0, fork_at), ("unsent", fork_at, len(snap["text"]))]


def test_a_commit_span_marks_the_prefix_it_sent():
    # what the interpreter can record for a fork's commit: the prefix request's cache accounting
    text = "Shared prefix. Then more"
    snap = {"text": text, "is_finished": True, "partial_variables": {}, "children": [],
            "spans": [{"name": None, "kind": "commit", "start": 14, "end": 14,
                       "meta_info": {"prompt_tokens": 3, "cached_tokens": 0}}]}
    segments = mark_tokens(snap)
    assert [(s["kind"], text[s["start"]:s["end"]]) for s in segments] == [
        ("computed", "Shared prefix."), ("unsent", " Then more")]
