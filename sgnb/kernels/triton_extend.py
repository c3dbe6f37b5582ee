"""Triton extend (prefill) attention over the paged pool; same signature as `torch_ref.extend_attention`.

One program handles BLOCK_M new tokens of one request and one query head. It runs an online
softmax over two key ranges in position order:
  1. the request's cached prefix, read through `kv_indices` (any slots, in position order);
  2. the request's own new tokens from `k_extend` / `v_extend`, causally (query j sees 0..j).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sgnb.kernels.validation import (check_indptr_pair, check_index_vector, check_last_dim_contiguous,
                                     check_pool, check_query, check_rank, check_same_device,
                                     check_sm_scale, check_triton_device, is_interpreted)

_LOG2E = 1.4426950408889634


@triton.jit
def _extend_kernel(
    q, k_extend, v_extend, k_buffer, v_buffer, o,
    qo_indptr, kv_indptr, kv_indices,
    qk_scale,  # sm_scale * log2(e): the softmax runs in base 2
    stride_q_t, stride_q_h, stride_ke_t, stride_ke_h, stride_ve_t, stride_ve_h,
    stride_kb_s, stride_kb_h, stride_vb_s, stride_vb_h, stride_o_t, stride_o_h,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, INPUT_PRECISION: tl.constexpr,
):
    req = tl.program_id(0)
    head = tl.program_id(1)
    m_block = tl.program_id(2)
    kv_head = head // GROUP

    q_start = tl.load(qo_indptr + req).to(tl.int64)
    extend_len = tl.load(qo_indptr + req + 1).to(tl.int64) - q_start
    if m_block * BLOCK_M >= extend_len:
        return
    kv_start = tl.load(kv_indptr + req).to(tl.int64)
    prefix_len = tl.load(kv_indptr + req + 1).to(tl.int64) - kv_start

    offs_m = m_block * BLOCK_M + tl.arange(0, BLOCK_M)              # position among the new tokens
    mask_m = offs_m < extend_len
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    q_tile = tl.load(q + (q_start + offs_m)[:, None] * stride_q_t + head * stride_q_h + offs_d[None, :],
                     mask=mask_m[:, None] & mask_d[None, :], other=0.0)   # [BLOCK_M, BLOCK_D]

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)       # running row max (base 2)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)                     # running row sum
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    # 1. cached prefix through the page table. Every row sees every prefix key, so each block
    #    has at least one unmasked column per row and m_i is finite after the first block.
    for start in range(0, prefix_len, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        mask_n = offs_n < prefix_len
        slots = tl.load(kv_indices + kv_start + offs_n, mask=mask_n, other=0).to(tl.int64)
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k_tile = tl.load(k_buffer + slots[:, None] * stride_kb_s + kv_head * stride_kb_h + offs_d[None, :],
                         mask=kv_mask, other=0.0)                    # [BLOCK_N, BLOCK_D]
        qk = tl.dot(q_tile, tl.trans(k_tile), input_precision=INPUT_PRECISION) * qk_scale
        qk = tl.where(mask_n[None, :], qk, float("-inf"))            # [BLOCK_M, BLOCK_N]
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v_tile = tl.load(v_buffer + slots[:, None] * stride_vb_s + kv_head * stride_vb_h + offs_d[None, :],
                         mask=kv_mask, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v_tile.dtype), v_tile, input_precision=INPUT_PRECISION)
        m_i = m_new

    # 2. the new tokens, causally. Column 0 is visible to every row and comes first, so m_i is
    #    finite after the first block even without a prefix; later fully masked rows get p = 0.
    block_end = tl.minimum(extend_len, (m_block + 1) * BLOCK_M)
    for start in range(0, block_end, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        mask_n = offs_n < extend_len
        rows = q_start + offs_n
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k_tile = tl.load(k_extend + rows[:, None] * stride_ke_t + kv_head * stride_ke_h + offs_d[None, :],
                         mask=kv_mask, other=0.0)
        qk = tl.dot(q_tile, tl.trans(k_tile), input_precision=INPUT_PRECISION) * qk_scale
        visible = mask_n[None, :] & (offs_n[None, :] <= offs_m[:, None])
        qk = tl.where(visible, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v_tile = tl.load(v_extend + rows[:, None] * stride_ve_t + kv_head * stride_ve_h + offs_d[None, :],
                         mask=kv_mask, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v_tile.dtype), v_tile, input_precision=INPUT_PRECISION)
        m_i = m_new

    out = acc / l_i[:, None]
    tl.store(o + (q_start + offs_m)[:, None] * stride_o_t + head * stride_o_h + offs_d[None, :],
             out.to(o.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])


def _block_sizes(head_dim: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps); tl.dot needs every tile dim >= 16."""
    if head_dim <= 128:
        return 64, 64, 4
    return 32, 32, 4


def extend_attention(q: torch.Tensor, k_extend: torch.Tensor, v_extend: torch.Tensor,
                     k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                     qo_indptr: torch.Tensor, kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
                     sm_scale: float, *, max_extend_len: int | None = None) -> torch.Tensor:
    """Attention of new tokens over their cached prefix (through kv_indices) and, causally, each other.

    q: [num_tokens, num_heads, head_dim]; k_extend, v_extend: [num_tokens, num_kv_heads, head_dim].
    kv_indptr / kv_indices cover the cached prefix only. Returns [num_tokens, num_heads, head_dim].
    `max_extend_len` (the longest request's new-token count) sizes the grid; pass it from host data
    to avoid a device sync, otherwise it is read from qo_indptr.
    """
    _, num_kv_heads, head_dim = check_pool(k_buffer, v_buffer)
    num_heads = check_query(q, k_buffer, num_kv_heads, head_dim)
    num_tokens = q.shape[0]
    for name, x in (("k_extend", k_extend), ("v_extend", v_extend)):
        check_rank(name, x, 3)
        if tuple(x.shape) != (num_tokens, num_kv_heads, head_dim):
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected "
                             f"[num_tokens={num_tokens}, num_kv_heads={num_kv_heads}, head_dim={head_dim}]")
        if x.dtype != q.dtype:
            raise ValueError(f"{name} ({x.dtype}) and q ({q.dtype}) must share a dtype")
        check_last_dim_contiguous(name, x)
    batch = check_indptr_pair("qo_indptr", qo_indptr, "kv_indptr", kv_indptr)
    check_index_vector("kv_indices", kv_indices)
    sm_scale = check_sm_scale(sm_scale)
    device = check_same_device(q=q, k_extend=k_extend, v_extend=v_extend, k_buffer=k_buffer,
                               v_buffer=v_buffer, qo_indptr=qo_indptr, kv_indptr=kv_indptr,
                               kv_indices=kv_indices)
    check_triton_device(device, is_interpreted(_extend_kernel))

    o = torch.empty((num_tokens, num_heads, head_dim), dtype=q.dtype, device=q.device)
    if batch == 0 or num_tokens == 0:
        return o
    if max_extend_len is None:
        max_extend_len = int((qo_indptr[1:] - qo_indptr[:-1]).max())
    if max_extend_len <= 0:
        return o
    block_m, block_n, num_warps = _block_sizes(head_dim)
    grid = (batch, num_heads, triton.cdiv(max_extend_len, block_m))
    _extend_kernel[grid](
        q, k_extend, v_extend, k_buffer, v_buffer, o,
        qo_indptr, kv_indptr, kv_indices,
        sm_scale * _LOG2E,
        q.stride(0), q.stride(1), k_extend.stride(0), k_extend.stride(1),
        v_extend.stride(0), v_extend.stride(1),
        k_buffer.stride(0), k_buffer.stride(1), v_buffer.stride(0), v_buffer.stride(1),
        o.stride(0), o.stride(1),
        GROUP=num_heads // num_kv_heads, HEAD_DIM=head_dim,
        BLOCK_D=max(16, triton.next_power_of_2(head_dim)),
        BLOCK_M=block_m, BLOCK_N=block_n,
        INPUT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        num_warps=num_warps,
    )
    return o
