"""The model interface: what every architecture family gives the engine.

The weight loader (`sgnb.engine.weights`) and the model runner talk to a model only through
`CausalLM`; nothing outside `sgnb/engine/models/` knows a family's layers. A family is one
module here plus one line in the registry (`sgnb.engine.models`). Its life in the engine:

    cfg = Family.config_type.from_dict(hf_config)
    with torch.device("meta"):
        model = Family(cfg)                    # parameters without storage
    model = model.to_empty(device=device)
    for hf_name, tensor in checkpoint:
        target = model.checkpoint_name_map(hf_name)   # None: a tensor the model does not load
        ...                                    # copied (or concatenated into a fused parameter)
    model.build_buffers(device)                # tables it computes itself (RoPE cos/sin)
    model.bind_kernels(prepack)                # matmul per projection, derived norm weights
    logits = model(input_ids, positions, ctx, logit_rows)
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from sgnb.engine.attention import AttentionContext
from sgnb.engine.model_config import ModelConfig


class CausalLM(nn.Module):
    """A decoder-only language model whose attention goes through the engine's paged KV pool."""

    # the config class `from_dict` builds for this family (a ModelConfig subclass may add fields)
    config_type: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: AttentionContext,
                logit_rows: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, positions: [num_tokens]; logit_rows: rows to project ([num_rows]), None = all.

        Every layer calls `ctx.attend(layer_id, q, k, v)` once. Returns fp32 logits [num_rows, vocab_size].
        """
        raise NotImplementedError

    def checkpoint_name_map(self, name: str) -> tuple[str, int | None] | None:
        """An HF checkpoint tensor name -> (our parameter name, shard index within a fused parameter),
        or None for a tensor the model does not load (rotary buffers, the copy of a tied LM head)."""
        raise NotImplementedError

    def build_buffers(self, device: str | torch.device) -> None:
        """Compute the non-persistent tables (no checkpoint holds them) on `device`; the loader calls this
        after `to_empty`, which leaves buffers built on the meta device without values."""

    def bind_kernels(self, prepack: bool) -> None:
        """Attach the kernels each layer runs (`sgnb.kernels.linear` matmuls, derived norm weights);
        called again once weights are loaded. prepack: prepacked CPU matmul weights where faster."""
        raise NotImplementedError

    @property
    def lm_head_weight(self) -> torch.Tensor:
        """[vocab_size, hidden] weight of the output projection (the embedding itself when tied)."""
        raise NotImplementedError
