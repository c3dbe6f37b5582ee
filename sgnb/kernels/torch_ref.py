"""Reference implementations of the paged-attention kernels: one request at a time, obviously right.

Every kernel backend has the same signatures (see `sgnb.kernels.backend`); tests hold the Triton
kernels and the batched CPU backend (`torch_batched`) to these functions.

Shapes (one layer):
    k_buffer, v_buffer: [num_slots, num_kv_heads, head_dim]   the paged KV pool
    q:                  [num_tokens, num_heads, head_dim]
    qo_indptr:          [batch + 1]  query rows of request i are q[qo_indptr[i]:qo_indptr[i+1]]
    kv_indptr:          [batch + 1]  KV slots of request i are kv_indices[kv_indptr[i]:kv_indptr[i+1]]
    kv_indices:         [total_kv]   slot ids into k_buffer / v_buffer, in position order
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def store_kv(k_buffer: torch.Tensor, v_buffer: torch.Tensor, loc: torch.Tensor,
             k: torch.Tensor, v: torch.Tensor) -> None:
    """Write k, v ([num_tokens, num_kv_heads, head_dim]) into the pool rows `loc` ([num_tokens])."""
    k_buffer[loc] = k.to(k_buffer.dtype)
    v_buffer[loc] = v.to(v_buffer.dtype)


def extend_attention(q: torch.Tensor, k_extend: torch.Tensor, v_extend: torch.Tensor,
                     k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                     qo_indptr: torch.Tensor, kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
                     sm_scale: float) -> torch.Tensor:
    """Attention of new tokens over their cached prefix (through kv_indices) and, causally, each other.

    k_extend, v_extend: [num_tokens, num_kv_heads, head_dim], the new tokens' own K and V.
    kv_indptr / kv_indices cover the cached prefix only. Returns [num_tokens, num_heads, head_dim].
    """
    out = torch.empty_like(q)
    qo, kvp = qo_indptr.tolist(), kv_indptr.tolist()
    for i in range(len(qo) - 1):
        if qo[i + 1] > qo[i]:
            extend_one(out, q, k_extend, v_extend, k_buffer, v_buffer, qo[i], qo[i + 1],
                       kv_indices[kvp[i]:kvp[i + 1]], sm_scale)
    return out


def extend_one(out: torch.Tensor, q: torch.Tensor, k_extend: torch.Tensor, v_extend: torch.Tensor,
               k_buffer: torch.Tensor, v_buffer: torch.Tensor, q0: int, q1: int, prefix: torch.Tensor,
               sm_scale: float) -> None:
    """out[q0:q1] = attention of query rows q0..q1 over `prefix` (pool slots) and, causally, themselves."""
    num_heads = q.shape[1]
    prefix_len, extend_len = prefix.numel(), q1 - q0
    k = torch.cat([k_buffer[prefix].to(q.dtype), k_extend[q0:q1]], dim=0)
    v = torch.cat([v_buffer[prefix].to(q.dtype), v_extend[q0:q1]], dim=0)
    qi = q[q0:q1].transpose(0, 1)                           # [num_heads, extend_len, head_dim]
    ki, vi = _expand_kv(k, num_heads), _expand_kv(v, num_heads)
    if prefix_len == 0:
        o = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, scale=sm_scale)
    else:
        # query j sits at position prefix_len + j and sees keys 0..prefix_len + j
        rows = torch.arange(extend_len, device=q.device).unsqueeze(1) + prefix_len
        cols = torch.arange(prefix_len + extend_len, device=q.device).unsqueeze(0)
        o = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=cols <= rows, scale=sm_scale)
    out[q0:q1] = o.transpose(0, 1)


def decode_attention(q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                     kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
                     sm_scale: float) -> torch.Tensor:
    """One query token per request ([batch, num_heads, head_dim]) over its whole paged sequence."""
    num_heads = q.shape[1]
    out = torch.empty_like(q)
    kvp = kv_indptr.tolist()
    for i in range(q.shape[0]):
        slots = kv_indices[kvp[i]:kvp[i + 1]]
        ki = _expand_kv(k_buffer[slots].to(q.dtype), num_heads)    # [num_heads, seq_len, head_dim]
        vi = _expand_kv(v_buffer[slots].to(q.dtype), num_heads)
        out[i] = F.scaled_dot_product_attention(q[i].unsqueeze(1), ki, vi, scale=sm_scale).squeeze(1)
    return out


def _expand_kv(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    # [kv_len, num_kv_heads, head_dim] -> [num_heads, kv_len, head_dim]
    group = num_heads // x.shape[1]
    x = x.transpose(0, 1)
    return x.repeat_interleave(group, dim=0) if group > 1 else x
