"""Postprocessing without a model: sampled tokens, stop conditions, finishing, streaming and delivery.

A real tokenizer, Scheduler, RadixCache and SlotAllocator; the 'forward pass' is a logits tensor whose
favourite token per request is chosen by the test, and requests decode greedily.
"""

from __future__ import annotations

import pytest
import torch

from sgnb.engine import postprocess
from sgnb.engine.counters import Counters
from sgnb.engine.kv_cache import ReqToTokenPool
from sgnb.engine.model_runner import ForwardOutput
from sgnb.engine.postprocess import PostprocessContext
from sgnb.engine.radix_cache import RadixCache
from sgnb.engine.request import Req
from sgnb.engine.sampling_params import SamplingParams
from sgnb.engine.scheduler import ScheduleBatch, Scheduler, SchedulerConfig
from sgnb.engine.slot_allocator import SlotAllocator
from sgnb.engine.tokenizer import load_tokenizer

PROMPT = "The cat sat on"


@pytest.fixture(scope="module")
def tokenizer(smollm2_path):
    return load_tokenizer(smollm2_path)


class Harness:
    def __init__(self, tokenizer, max_context_len: int = 256):
        self.tokenizer = tokenizer
        self.allocator = SlotAllocator(1024)
        self.cache = RadixCache(self.allocator)
        self.scheduler = Scheduler(SchedulerConfig(max_running_requests=4), self.allocator, self.cache,
                                   ReqToTokenPool(5, max_context_len + 1, "cpu"))
        self.ctx = PostprocessContext(tokenizer, (tokenizer.eos_token_id,), max_context_len, Counters(),
                                      self.scheduler, {})

    def submit(self, rid: str, prompt: str = PROMPT, stream: bool = False, **params) -> Req:
        req = Req(rid=rid, input_ids=self.tokenizer.encode(prompt), params=SamplingParams(temperature=0, **params),
                  stream=stream)
        req.detok = postprocess.make_detokenizer(self.tokenizer, req.params)
        self.ctx.reqs[rid] = req
        self.scheduler.add(req)
        return req

    def step(self, picks: dict[Req, int]) -> ScheduleBatch:
        """Schedule one batch and postprocess it as if the model's favourite next token were picks[req]."""
        batch = self.scheduler.schedule()
        logits = torch.zeros(len(batch.reqs), len(self.tokenizer))    # [one row per request, vocab]
        for i, req in enumerate(batch.reqs):
            logits[i, picks[req]] = 10.0
        rows = list(range(len(batch.reqs)))
        postprocess.process_batch(self.ctx, batch, ForwardOutput(logits, rows, rows), [False] * len(rows))
        self.cache.check_integrity(self.scheduler.used_slots())
        return batch

    def generate(self, req: Req, text: str) -> None:
        """Feed the tokens of `text` until they run out or the request finishes."""
        for token in self.tokenizer.encode(text):
            if req.is_finished:
                return
            self.step({req: token})

    def assert_delivered(self, req: Req) -> dict:
        assert req.rid not in self.ctx.reqs and req.sink.is_done and req.sink.error is None
        assert not self.scheduler.has_work() and self.cache.protected_size() == 0
        self.cache.check_integrity()
        return req.sink.result


def test_a_stop_string_finishes_the_request_with_the_text_before_it(tokenizer):
    h = Harness(tokenizer)
    req = h.submit("r", stop=[" the mat"], max_new_tokens=32)
    h.generate(req, " the mat and the dog")
    result = h.assert_delivered(req)
    assert result["meta_info"]["finish_reason"] == {"type": "stop", "matched": " the mat"}
    assert result["text"] == "" and result["output_ids"] == tokenizer.encode(" the mat")
    assert h.ctx.counters.num_finished == 1
    assert h.ctx.counters.num_generated_tokens == len(result["output_ids"])


def test_no_stop_trim_keeps_the_stop_string(tokenizer):
    h = Harness(tokenizer)
    req = h.submit("r", stop=[" mat"], no_stop_trim=True, max_new_tokens=32)
    h.generate(req, " the mat and the dog")
    assert h.assert_delivered(req)["text"] == " the mat"


def test_a_stop_token_id_finishes_the_request_and_is_matched(tokenizer):
    h = Harness(tokenizer)
    dog = tokenizer.encode(" dog")[0]
    req = h.submit("r", stop_token_ids=[dog], max_new_tokens=32)
    h.generate(req, " the big dog ran")
    result = h.assert_delivered(req)
    assert result["meta_info"]["finish_reason"] == {"type": "stop", "matched": dog}
    assert result["output_ids"] == tokenizer.encode(" the big dog") and result["text"] == " the big dog"


def test_eos_finishes_the_request_unless_ignore_eos(tokenizer):
    h = Harness(tokenizer)
    eos = tokenizer.eos_token_id
    plain = h.submit("plain", max_new_tokens=4)
    ignoring = h.submit("ignoring", ignore_eos=True, max_new_tokens=4)
    while h.scheduler.has_work():
        h.step({plain: eos, ignoring: eos})
    assert h.assert_delivered(plain)["meta_info"]["finish_reason"] == {"type": "stop", "matched": eos}
    assert plain.output_ids == [eos]
    assert h.assert_delivered(ignoring)["meta_info"]["finish_reason"] == {"type": "length", "length": 4}


def test_max_new_tokens_finishes_with_reason_length(tokenizer):
    h = Harness(tokenizer)
    req = h.submit("r", max_new_tokens=3)
    h.generate(req, " one two three four five six")
    result = h.assert_delivered(req)
    assert result["meta_info"]["finish_reason"] == {"type": "length", "length": 3}
    assert result["text"] == " one two three"


def test_reaching_the_context_length_finishes_with_reason_length(tokenizer):
    h = Harness(tokenizer, max_context_len=len(tokenizer.encode(PROMPT)) + 2)
    req = h.submit("r", max_new_tokens=32)
    h.generate(req, " one two three four five six")
    assert h.assert_delivered(req)["meta_info"]["finish_reason"] == {"type": "length", "length": 2}


def test_a_prefilled_request_starts_decoding_with_its_prompt_in_the_cache(tokenizer):
    h = Harness(tokenizer)
    req = h.submit("r", max_new_tokens=8)
    assert h.step({req: tokenizer.encode(" the")[0]}).reqs == [req]
    assert h.scheduler.running == [req] and h.scheduler.pending == []
    assert h.cache.match_prefix(req.input_ids, record_hit=False).prefix_len == len(req.input_ids)
    assert req.rid in h.ctx.reqs and not req.sink.is_done


def test_a_streamed_request_gets_deltas_that_add_up_to_the_result(tokenizer):
    h = Harness(tokenizer)
    req = h.submit("r", stream=True, stop=[" and"], max_new_tokens=32)
    h.generate(req, " the mat and the dog")
    result = h.assert_delivered(req)
    deltas = []
    while (delta := req.sink.next_delta(0)) is not None:
        deltas.append(delta)
    assert "".join(d["text"] for d in deltas) == result["text"] == " the mat"
    assert [d["finished"] for d in deltas] == [False] * (len(deltas) - 1) + [True]


def test_delivering_an_aborted_request_hands_over_its_text_so_far(tokenizer):
    h = Harness(tokenizer)
    req = h.submit("r", max_new_tokens=32)
    h.generate(req, " the mat")
    h.scheduler.remove(req)
    req.finish_reason = {"type": "abort", "message": "aborted by the caller"}
    postprocess.deliver(h.ctx, req)
    result = h.assert_delivered(req)
    assert result["text"] == " the mat" and result["meta_info"]["finish_reason"]["type"] == "abort"
    assert h.ctx.counters.num_finished == 0


def test_the_context_rejects_a_non_positive_context_length(tokenizer):
    h = Harness(tokenizer)
    with pytest.raises(ValueError, match="max_context_len"):
        PostprocessContext(tokenizer, (), 0, Counters(), h.scheduler, {})
