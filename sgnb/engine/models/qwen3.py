"""Qwen3: the Llama layers plus a per-head RMSNorm on q and k before RoPE.

Its `head_dim` is its own (num_heads * head_dim may differ from hidden_size), it has no q/k/v bias,
and its embeddings may be tied; the Llama classes already take all three from the config.
"""

from __future__ import annotations

import torch

from sgnb.engine.model_config import ModelConfig
from sgnb.engine.models.llama import Attention, DecoderLayer, LlamaForCausalLM, RMSNorm, apply_rotary_


class Qwen3Attention(Attention):
    def __init__(self, cfg: ModelConfig, layer_id: int):
        super().__init__(cfg, layer_id)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps)   # over each head's head_dim
        self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps)

    def position_qk(self, qk: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Normalize each q and k head, then rotate, writing the result back into the qk view."""
        return apply_rotary_(self.normalized_qk(qk), *rope, out=qk)

    def normalize_qk_(self, qk: torch.Tensor) -> None:
        qk.copy_(self.normalized_qk(qk))        # the fused path rotates afterwards, with the KV store

    def normalized_qk(self, qk: torch.Tensor) -> torch.Tensor:
        """Each q and k head [num_tokens, num_heads + num_kv_heads, head_dim] RMS-normalized, a new tensor."""
        q, k = qk.split([self.num_heads, self.num_kv_heads], dim=1)
        return torch.cat([self.q_norm.forward(q), self.k_norm.forward(k)], dim=1)


class Qwen3DecoderLayer(DecoderLayer):
    attention_type = Qwen3Attention


class Qwen3ForCausalLM(LlamaForCausalLM):
    layer_type = Qwen3DecoderLayer

    def __init__(self, cfg: ModelConfig):
        if cfg.raw.get("use_sliding_window"):
            raise ValueError("Qwen3 with use_sliding_window=true is not supported (the engine attends to "
                             "the whole context)")
        super().__init__(cfg)
