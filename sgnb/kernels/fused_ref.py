"""Torch references of the fused decode-step ops: obviously right, one signature per op.

The C++ kernels (`csrc/fused_ops.cpp`, picked through `sgnb.kernels.fused_ops`) are held to these
functions by the tests. Every op computes in fp32 and rounds a bf16 result once, as the model's torch
path does (RMSNorm with fp32 statistics). Shapes: T tokens, hidden size H, intermediate size I, head_dim D.

This module does not need the C++ extension.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sgnb.kernels import torch_ref


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x [T, H] * rsqrt(mean(x^2) + eps) * weight [H], statistics in fp32; same dtype as x."""
    xf = x.float()
    scale = torch.rsqrt(xf.square().mean(dim=-1, keepdim=True) + eps)
    return (xf * scale * weight.float()).to(x.dtype)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """residual [T, H] += x IN PLACE (in residual's dtype); returns rms_norm(residual)."""
    residual.add_(x)
    return rms_norm(residual, weight, eps)


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """gate_up [T, 2 * I] -> silu(gate_up[:, :I]) * gate_up[:, I:], [T, I], computed in fp32."""
    gate, up = gate_up.float().chunk(2, dim=-1)
    return (F.silu(gate) * up).to(gate_up.dtype)


def rope_store_kv(qkv: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  num_heads: int, num_kv_heads: int, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                  loc: torch.Tensor) -> None:
    """Rotate the q and k heads of qkv [T, (num_heads + 2 * num_kv_heads) * D] IN PLACE, then store k, v.

    positions [T] index the tables cos, sin [max_pos, D]; `sin` is signed (`sgnb.engine.models.llama.Rotary`:
    cat(-sin(f), sin(f))), so a head x becomes x * cos + cat(x2, x1) * sin (HF rotate-half layout).
    The rotated k heads and the v heads go to k_buffer[loc], v_buffer[loc] ([num_slots, num_kv_heads, D]).
    """
    num_tokens, head_dim = qkv.shape[0], cos.shape[1]
    heads = qkv.view(num_tokens, -1, head_dim)               # [T, num_heads + 2 * num_kv_heads, D]
    qk = heads[:, :num_heads + num_kv_heads]
    x = qk.float()
    x1, x2 = x.chunk(2, dim=-1)
    c, s = cos[positions].float().unsqueeze(1), sin[positions].float().unsqueeze(1)   # [T, 1, D]
    qk.copy_(x * c + torch.cat((x2, x1), dim=-1) * s)
    torch_ref.store_kv(k_buffer, v_buffer, loc, heads[:, num_heads:num_heads + num_kv_heads],
                       heads[:, num_heads + num_kv_heads:])
