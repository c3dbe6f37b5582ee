"""Torch implementations of the paged-attention kernels.

These are the reference for the Triton kernels and the backend the engine uses
on the CPU. Every function has the same signature as its Triton twin in this
package; `sgnb.kernels.get_attention_ops` picks one set once, at engine start.

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


def _expand_kv(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    # [kv_len, num_kv_heads, head_dim] -> [num_heads, kv_len, head_dim]
    group = num_heads // x.shape[1]
    x = x.transpose(0, 1)
    return x.repeat_interleave(group, dim=0) if group > 1 else x


def extend_attention(q: torch.Tensor, k_extend: torch.Tensor, v_extend: torch.Tensor,
                     k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                     qo_indptr: torch.Tensor, kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
                     sm_scale: float) -> torch.Tensor:
    """Attention of new tokens over their cached prefix (through kv_indices) and, causally, each other.

    k_extend, v_extend: [num_tokens, num_kv_heads, head_dim], the new tokens' own K and V.
    kv_indptr / kv_indices cover the cached prefix only. Returns [num_tokens, num_heads, head_dim].
    """
    num_heads = q.shape[1]
    out = torch.empty_like(q)
    qo = qo_indptr.tolist()
    kvp = kv_indptr.tolist()
    for i in range(len(qo) - 1):
        q0, q1 = qo[i], qo[i + 1]
        if q1 == q0:
            continue
        prefix = kv_indices[kvp[i]:kvp[i + 1]]
        prefix_len, extend_len = prefix.numel(), q1 - q0
        k = torch.cat([k_buffer[prefix].to(q.dtype), k_extend[q0:q1]], dim=0)
        v = torch.cat([v_buffer[prefix].to(q.dtype), v_extend[q0:q1]], dim=0)
        qi = q[q0:q1].transpose(0, 1)                       # [num_heads, extend_len, head_dim]
        ki, vi = _expand_kv(k, num_heads), _expand_kv(v, num_heads)
        if prefix_len == 0:
            o = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, scale=sm_scale)
        else:
            # query j sits at position prefix_len + j and sees keys 0..prefix_len + j
            rows = torch.arange(extend_len, device=q.device).unsqueeze(1) + prefix_len
            cols = torch.arange(prefix_len + extend_len, device=q.device).unsqueeze(0)
            o = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=cols <= rows, scale=sm_scale)
        out[q0:q1] = o.transpose(0, 1)
    return out


def decode_attention(q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                     kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
                     sm_scale: float) -> torch.Tensor:
    """One query token per request ([batch, num_heads, head_dim]) over its whole paged sequence.

    The batch is padded to the longest sequence and computed in one SDPA call.
    """
    batch, num_heads, head_dim = q.shape
    num_kv_heads = k_buffer.shape[1]
    slots, mask = _decode_plan(kv_indptr, kv_indices)
    k = k_buffer[slots].to(q.dtype)                         # [batch, max_len, num_kv_heads, head_dim]
    v = v_buffer[slots].to(q.dtype)
    qg = q.view(batch, num_kv_heads, num_heads // num_kv_heads, head_dim)   # one KV group's heads side by side
    o = F.scaled_dot_product_attention(qg, k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3),
                                       attn_mask=mask, scale=sm_scale)
    return o.reshape(batch, num_heads, head_dim)


_last_plan: tuple = (None, None, None, None)


def _decode_plan(kv_indptr: torch.Tensor, kv_indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded slot matrix [batch, max_len] and mask [batch, 1, 1, max_len] for a decode step.

    Every layer of one forward pass passes the same index tensors, so the plan is built once and
    reused while they are the very same objects (a strong reference is held, so identity is safe).
    """
    global _last_plan
    indptr, indices, slots, mask = _last_plan
    if indptr is kv_indptr and indices is kv_indices:
        return slots, mask
    seq_lens = kv_indptr[1:] - kv_indptr[:-1]                # [batch]
    max_len = int(seq_lens.max()) if seq_lens.numel() else 0
    offsets = torch.arange(max_len, device=kv_indptr.device)
    valid = offsets.unsqueeze(0) < seq_lens.unsqueeze(1)    # [batch, max_len]
    idx = (kv_indptr[:-1].unsqueeze(1) + offsets).clamp_(max=max(kv_indices.numel() - 1, 0))
    slots = torch.where(valid, kv_indices[idx], torch.zeros_like(idx))
    mask = valid[:, None, None, :]
    _last_plan = (kv_indptr, kv_indices, slots, mask)
    return slots, mask
