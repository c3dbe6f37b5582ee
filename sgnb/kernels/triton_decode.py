"""Triton split-KV (flash-decoding) attention over the paged pool; same signature as
`torch_ref.decode_attention`.

Stage 1, grid (batch, num_kv_heads, num_kv_splits): one program takes every query head of one
KV group (so K/V are read once per group) and one contiguous slice of the sequence, and writes
the slice's normalised partial output and its log-sum-exp (base 2).
Stage 2, grid (batch, num_heads): merges the splits' partials by their log-sum-exp.

The launch depends on tensor shapes only (no value is read on the host), so the wrapper can be
captured in a CUDA graph.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from sgnb.kernels.validation import (check_index_vector, check_pool, check_query, check_same_device,
                                     check_sm_scale, check_triton_device, is_interpreted)

_LOG2E = 1.4426950408889634
_MAX_KV_SPLITS = 16


@triton.jit
def _decode_stage1_kernel(
    q, k_buffer, v_buffer, kv_indptr, kv_indices,
    mid_o, mid_lse,   # [batch, num_heads, num_splits, head_dim], [batch, num_heads, num_splits] fp32
    qk_scale, num_splits,
    stride_q_b, stride_q_h, stride_kb_s, stride_kb_h, stride_vb_s, stride_vb_h,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, INPUT_PRECISION: tl.constexpr,
):
    req = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    num_heads = tl.num_programs(1) * GROUP

    kv_start = tl.load(kv_indptr + req).to(tl.int64)
    seq_len = tl.load(kv_indptr + req + 1).to(tl.int64) - kv_start
    split_len = tl.cdiv(seq_len, num_splits)
    split_start = split * split_len
    split_end = tl.minimum(split_start + split_len, seq_len)
    if split_start >= split_end:      # stage 2 skips this split by the same rule
        return

    offs_g = tl.arange(0, BLOCK_H)
    mask_h = offs_g < GROUP
    heads = kv_head * GROUP + offs_g
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    q_tile = tl.load(q + req * stride_q_b + heads[:, None] * stride_q_h + offs_d[None, :],
                     mask=mask_h[:, None] & mask_d[None, :], other=0.0)   # [BLOCK_H, BLOCK_D]

    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_D], dtype=tl.float32)
    for start in range(split_start, split_end, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        mask_n = offs_n < split_end
        slots = tl.load(kv_indices + kv_start + offs_n, mask=mask_n, other=0).to(tl.int64)
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k_tile = tl.load(k_buffer + slots[:, None] * stride_kb_s + kv_head * stride_kb_h + offs_d[None, :],
                         mask=kv_mask, other=0.0)                    # [BLOCK_N, BLOCK_D]
        qk = tl.dot(q_tile, tl.trans(k_tile), input_precision=INPUT_PRECISION) * qk_scale
        qk = tl.where(mask_n[None, :], qk, float("-inf"))            # [BLOCK_H, BLOCK_N]
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v_tile = tl.load(v_buffer + slots[:, None] * stride_vb_s + kv_head * stride_vb_h + offs_d[None, :],
                         mask=kv_mask, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v_tile.dtype), v_tile, input_precision=INPUT_PRECISION)
        m_i = m_new

    row = (req * num_heads + heads).to(tl.int64) * num_splits + split   # index into [batch, heads, splits]
    tl.store(mid_o + row[:, None] * HEAD_DIM + offs_d[None, :], acc / l_i[:, None],
             mask=mask_h[:, None] & mask_d[None, :])
    tl.store(mid_lse + row, m_i + tl.log2(l_i), mask=mask_h)


@triton.jit
def _decode_stage2_kernel(
    mid_o, mid_lse, o, kv_indptr, num_splits,
    stride_o_b, stride_o_h,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
):
    req = tl.program_id(0)
    head = tl.program_id(1)
    num_heads = tl.num_programs(1)
    seq_len = tl.load(kv_indptr + req + 1).to(tl.int64) - tl.load(kv_indptr + req).to(tl.int64)
    split_len = tl.cdiv(seq_len, num_splits)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    base = (req * num_heads + head).to(tl.int64) * num_splits

    m = float("-inf")
    l = 0.0
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for split in range(0, num_splits):
        if split * split_len < seq_len:      # non-empty split (stage 1 wrote it)
            lse = tl.load(mid_lse + base + split)
            part = tl.load(mid_o + (base + split) * HEAD_DIM + offs_d, mask=mask_d, other=0.0)
            m_new = tl.maximum(m, lse)
            alpha = tl.exp2(m - m_new)
            weight = tl.exp2(lse - m_new)
            acc = acc * alpha + part * weight
            l = l * alpha + weight
            m = m_new
    l = tl.where(l > 0.0, l, 1.0)            # an empty sequence gives zeros, not NaN
    tl.store(o + req * stride_o_b + head * stride_o_h + offs_d, (acc / l).to(o.dtype.element_ty), mask=mask_d)


@functools.lru_cache(maxsize=None)
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def default_num_kv_splits(batch: int, num_kv_heads: int, device: torch.device) -> int:
    """Enough stage-1 programs for about four per SM, from shapes alone (no device sync)."""
    if device.type != "cuda":
        return 4
    num_sms = _num_sms(device.index if device.index is not None else torch.cuda.current_device())
    groups = max(1, batch * num_kv_heads)
    return max(1, min(_MAX_KV_SPLITS, triton.cdiv(4 * num_sms, groups)))


def decode_attention(q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                     kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
                     sm_scale: float, *, num_kv_splits: int | None = None) -> torch.Tensor:
    """One query token per request ([batch, num_heads, head_dim]) over its whole paged sequence.

    kv_indptr: [batch + 1]; kv_indices: slot ids, in position order, current token included.
    `num_kv_splits` (1..16) defaults to a choice from the shapes and the GPU's SM count.
    A request with an empty sequence gets a zero output row.
    """
    _, num_kv_heads, head_dim = check_pool(k_buffer, v_buffer)
    num_heads = check_query(q, k_buffer, num_kv_heads, head_dim)
    batch = q.shape[0]
    check_index_vector("kv_indptr", kv_indptr)
    if kv_indptr.numel() != batch + 1:
        raise ValueError(f"kv_indptr has {kv_indptr.numel()} entries; expected batch + 1 = {batch + 1}")
    check_index_vector("kv_indices", kv_indices)
    sm_scale = check_sm_scale(sm_scale)
    device = check_same_device(q=q, k_buffer=k_buffer, v_buffer=v_buffer,
                               kv_indptr=kv_indptr, kv_indices=kv_indices)
    check_triton_device(device, is_interpreted(_decode_stage1_kernel))
    if num_kv_splits is None:
        num_kv_splits = default_num_kv_splits(batch, num_kv_heads, device)
    if not isinstance(num_kv_splits, int) or not 1 <= num_kv_splits <= _MAX_KV_SPLITS:
        raise ValueError(f"num_kv_splits must be an int in 1..{_MAX_KV_SPLITS}, got {num_kv_splits!r}")

    o = torch.empty((batch, num_heads, head_dim), dtype=q.dtype, device=q.device)
    if batch == 0:
        return o
    mid_o = torch.empty((batch, num_heads, num_kv_splits, head_dim), dtype=torch.float32, device=q.device)
    mid_lse = torch.empty((batch, num_heads, num_kv_splits), dtype=torch.float32, device=q.device)
    group = num_heads // num_kv_heads
    block_d = max(16, triton.next_power_of_2(head_dim))
    input_precision = "ieee" if q.dtype == torch.float32 else "tf32"
    _decode_stage1_kernel[(batch, num_kv_heads, num_kv_splits)](
        q, k_buffer, v_buffer, kv_indptr, kv_indices,
        mid_o, mid_lse,
        sm_scale * _LOG2E, num_kv_splits,
        q.stride(0), q.stride(1), k_buffer.stride(0), k_buffer.stride(1),
        v_buffer.stride(0), v_buffer.stride(1),
        GROUP=group, HEAD_DIM=head_dim, BLOCK_D=block_d,
        BLOCK_H=max(16, triton.next_power_of_2(group)), BLOCK_N=64 if head_dim <= 128 else 32,
        INPUT_PRECISION=input_precision,
        num_warps=4,
    )
    _decode_stage2_kernel[(batch, num_heads)](
        mid_o, mid_lse, o, kv_indptr, num_kv_splits,
        o.stride(0), o.stride(1),
        HEAD_DIM=head_dim, BLOCK_D=block_d,
        num_warps=1 if head_dim <= 128 else 2,
    )
    return o
