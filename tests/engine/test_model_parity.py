"""Logits parity with transformers (same weights, fp32): prefill, extend from a cached prefix, decode."""

from __future__ import annotations

import pytest
import torch

from sgnb.engine import Engine
from sgnb.engine.attention import ForwardMode
from sgnb.engine.request import Req, new_rid
from sgnb.engine.sampling_params import SamplingParams
from tests.conftest import make_tiny_model

RTOL = 1e-3


def _hf_logits(folder, ids: list[int]) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()       # [seq_len, vocab]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _engine_logits(engine: Engine, prefix: list[int], rest: list[int], decode_ids: list[int]):
    """Cache `prefix` through a real request, then drive one request prefix+rest by hand.

    Returns (cached_len, extend logits for the `rest` positions, one logits row per decode step).
    """
    assert engine.flush_cache()
    engine.generate(input_ids=prefix, sampling_params={"max_new_tokens": 1, "temperature": 0})
    with engine._cv:                                    # the loop thread stays idle while we hold the lock
        sched = engine.scheduler
        req = Req(rid=new_rid(), input_ids=prefix + rest, params=SamplingParams(max_new_tokens=64))
        sched.add(req)
        batch = sched.schedule()
        assert batch.mode is ForwardMode.EXTEND and batch.reqs == [req]
        cached_len = req.kv_len
        out = engine.runner.forward(batch, [True])
        extend = out.logits[out.first_row[0]:out.last_row[0] + 1]
        req.kv_len += batch.extend_lens[0]
        sched.start_decoding(req)
        decode = []
        for tok in decode_ids:
            req.output_ids.append(tok)
            batch = sched.schedule()
            assert batch.mode is ForwardMode.DECODE
            out = engine.runner.forward(batch, [False])
            decode.append(out.logits[0])
            req.kv_len += 1
        sched.finish(req)
    engine.check_integrity()
    return cached_len, extend, decode


def _check_parity(engine: Engine, folder, ids: list[int], split: int, num_decode: int = 3) -> None:
    prefix, rest = ids[:split], ids[split:len(ids) - num_decode]
    decode_ids = ids[len(ids) - num_decode:]
    cached_len, extend, decode = _engine_logits(engine, prefix, rest, decode_ids)
    ref = _hf_logits(folder, ids)
    assert cached_len == split, "the extend must start from the prefix cached by the first request"
    # extend rows cover positions cached_len .. len(prefix + rest) - 1
    assert _rel_err(extend, ref[cached_len:len(prefix) + len(rest)]) < RTOL
    for step, row in enumerate(decode):
        pos = len(prefix) + len(rest) + step
        assert _rel_err(row, ref[pos]) < RTOL, f"decode step {step}"


def _prefill_parity(engine: Engine, folder, ids: list[int]) -> None:
    res = engine.score(input_ids=ids, logprob_start_len=0)
    ours = torch.tensor([lp for lp, _, _ in res["meta_info"]["input_token_logprobs"][1:]])
    ref = torch.log_softmax(_hf_logits(folder, ids), dim=-1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    assert _rel_err(ours, ref) < RTOL


@pytest.mark.parametrize("overrides", [
    {},                                                             # Llama, GQA 4/2
    {"architecture": "Qwen2ForCausalLM"},                           # q/k/v bias
    {"tie_word_embeddings": True, "num_key_value_heads": 4},        # tied embeddings, MHA
    {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64}},
    {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
], ids=["llama", "qwen2", "tied", "llama3-rope", "linear-rope"])
def test_tiny_random_model_matches_transformers(tmp_path, smollm2_path, overrides):
    folder = make_tiny_model(tmp_path / "tiny", smollm2_path, **overrides)
    ids = [int(t) for t in torch.randint(3, 49152, (40,), generator=torch.Generator().manual_seed(1))]
    with Engine(str(folder), dtype="float32", max_total_tokens=512) as engine:
        _prefill_parity(engine, folder, ids)
        _check_parity(engine, folder, ids, split=17)     # a 20-token extend: the extend kernel
        _check_parity(engine, folder, ids, split=30)     # a 7-token extend: decode-form queries, one per token


def test_smollm2_matches_transformers(engine, smollm2_path):
    ids = engine.tokenizer.encode(engine.apply_chat_template(
        [{"role": "user", "content": "Name three rivers in Europe and say where each one flows."}]))
    _prefill_parity(engine, smollm2_path, ids)
    _check_parity(engine, smollm2_path, ids + [504, 3575, 282], split=len(ids) - 9)
