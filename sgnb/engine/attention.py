"""The engine's attention interface: one call per layer over the paged KV pool.

The model calls `ctx.attend(layer_id, q, k, v)`; the context stores the new K/V into
the pool (or the model did, with a fused op: `attend_stored`) and runs the extend or decode kernel chosen once at engine start
(`sgnb.kernels.get_attention_ops`: `torch_batched` on the CPU, Triton on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from sgnb.kernels.backend import AttentionOps


class ForwardMode(Enum):
    EXTEND = "extend"   # new tokens after a (possibly empty) cached prefix: prefill, chunked prefill, jump-forward
    DECODE = "decode"   # exactly one new token per request


@dataclass(slots=True)
class AttentionContext:
    """Per-forward attention metadata, built once per step and shared by all layers."""

    mode: ForwardMode
    ops: AttentionOps            # store_kv, extend_attention, decode_attention
    k_buffers: list[torch.Tensor]  # per layer [num_slots, num_kv_heads, head_dim]
    v_buffers: list[torch.Tensor]
    out_cache_loc: torch.Tensor  # [num_tokens] slots the new tokens' K/V go to
    qo_indptr: torch.Tensor      # [batch + 1] (extend only)
    kv_indptr: torch.Tensor      # [batch + 1] extend: cached prefix only; decode: whole sequence
    kv_indices: torch.Tensor     # [total_kv] slot ids in position order
    sm_scale: float

    def attend(self, layer_id: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q: [num_tokens, num_heads, head_dim]; k, v: [num_tokens, num_kv_heads, head_dim]."""
        self.ops.store_kv(self.k_buffers[layer_id], self.v_buffers[layer_id], self.out_cache_loc, k, v)
        return self.attend_stored(layer_id, q, k, v)

    def attend_stored(self, layer_id: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """`attend` for new K/V already in the pool at `out_cache_loc` (a fused op stored them)."""
        k_buf, v_buf = self.k_buffers[layer_id], self.v_buffers[layer_id]
        if self.mode is ForwardMode.DECODE:
            return self.ops.decode_attention(q, k_buf, v_buf, self.kv_indptr, self.kv_indices, self.sm_scale)
        return self.ops.extend_attention(q, k, v, k_buf, v_buf, self.qo_indptr, self.kv_indptr,
                                         self.kv_indices, self.sm_scale)
