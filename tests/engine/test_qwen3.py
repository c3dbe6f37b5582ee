"""Qwen3 through the engine: logits parity with transformers on tiny random configs (fp32)."""

from __future__ import annotations

import pytest
import torch

from sgnb.engine import Engine
from sgnb.engine.models.qwen3 import Qwen3ForCausalLM
from tests.conftest import make_tiny_model
from tests.engine.test_model_parity import _check_parity, _prefill_parity

QWEN3 = {"architecture": "Qwen3ForCausalLM", "head_dim": 24, "attention_bias": False}


@pytest.mark.parametrize("overrides", [
    {},                                                             # 4 q heads x 24 = 96 != hidden 64, GQA 4/2
    {"tie_word_embeddings": True, "num_key_value_heads": 4},        # tied embeddings, MHA
], ids=["qwen3", "qwen3-tied"])
def test_tiny_qwen3_matches_transformers_through_the_paged_pool(tmp_path, smollm2_path, overrides):
    folder = make_tiny_model(tmp_path / "tiny", smollm2_path, **QWEN3, **overrides)
    ids = [int(t) for t in torch.randint(3, 49152, (40,), generator=torch.Generator().manual_seed(2))]
    with Engine(str(folder), dtype="float32", max_total_tokens=512) as engine:
        assert isinstance(engine.model, Qwen3ForCausalLM)
        assert engine.model_config.head_dim * engine.model_config.num_heads != engine.model_config.hidden_size
        _prefill_parity(engine, folder, ids)
        _check_parity(engine, folder, ids, split=17)     # a 20-token extend: the extend kernel
        _check_parity(engine, folder, ids, split=30)     # a 7-token extend: decode-form queries, one per token
        engine.check_integrity()


def test_qwen3_q_k_norms_change_the_logits(tmp_path, smollm2_path):
    """The per-head norms are loaded and applied: scaling one layer's q_norm weight moves the logits."""
    folder = make_tiny_model(tmp_path / "tiny", smollm2_path, **QWEN3)
    ids = [5, 17, 300, 4000, 21, 9]
    with Engine(str(folder), dtype="float32", max_total_tokens=512) as engine:
        before = engine.score(input_ids=ids, logprob_start_len=0)["meta_info"]["input_token_logprobs"]
        norm = engine.model.layers[0].self_attn.k_norm
        with torch.no_grad():
            norm.weight.mul_(3.0)
        norm.bind()
        engine.flush_cache()
        after = engine.score(input_ids=ids, logprob_start_len=0)["meta_info"]["input_token_logprobs"]
        assert [lp for lp, _, _ in before[1:]] != pytest.approx([lp for lp, _, _ in after[1:]], rel=1e-3)
        engine.check_integrity()


def test_qwen3_with_a_sliding_window_is_refused(tmp_path, smollm2_path):
    folder = make_tiny_model(tmp_path / "tiny", smollm2_path, **QWEN3, use_sliding_window=True, sliding_window=8)
    with pytest.raises(ValueError, match="use_sliding_window"):
        Engine(str(folder), dtype="float32", max_total_tokens=512)
