"""Triton scatter of new K/V rows into the paged pool; same signature as `torch_ref.store_kv`."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sgnb.kernels.validation import (FLOAT_DTYPES, check_dtype, check_index_vector,
                                     check_last_dim_contiguous, check_pool, check_rank,
                                     check_same_device, check_triton_device, is_interpreted)

# elements of one [BLOCK_T, BLOCK_R] tile; a program copies BLOCK_T whole token rows
_TILE_ELEMENTS = 4096


@triton.jit
def _store_kv_kernel(
    k_buffer, v_buffer, loc, k, v,
    num_tokens,
    stride_kb_s, stride_kb_h, stride_vb_s, stride_vb_h,
    stride_k_t, stride_k_h, stride_v_t, stride_v_h,
    NUM_KV_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr,
):
    # one program: tokens [pid * BLOCK_T, +BLOCK_T), each row flattened over (head, dim)
    pid = tl.program_id(0)
    offs_t = (pid * BLOCK_T + tl.arange(0, BLOCK_T)).to(tl.int64)
    mask_t = offs_t < num_tokens
    slots = tl.load(loc + offs_t, mask=mask_t, other=0).to(tl.int64)
    offs_r = tl.arange(0, BLOCK_R)
    head = offs_r // HEAD_DIM
    dim = offs_r % HEAD_DIM
    mask = mask_t[:, None] & (offs_r < NUM_KV_HEADS * HEAD_DIM)[None, :]

    k_rows = tl.load(k + offs_t[:, None] * stride_k_t + (head * stride_k_h + dim)[None, :], mask=mask)
    tl.store(k_buffer + slots[:, None] * stride_kb_s + (head * stride_kb_h + dim)[None, :],
             k_rows.to(k_buffer.dtype.element_ty), mask=mask)
    v_rows = tl.load(v + offs_t[:, None] * stride_v_t + (head * stride_v_h + dim)[None, :], mask=mask)
    tl.store(v_buffer + slots[:, None] * stride_vb_s + (head * stride_vb_h + dim)[None, :],
             v_rows.to(v_buffer.dtype.element_ty), mask=mask)


def store_kv(k_buffer: torch.Tensor, v_buffer: torch.Tensor, loc: torch.Tensor,
             k: torch.Tensor, v: torch.Tensor) -> None:
    """Write k, v ([num_tokens, num_kv_heads, head_dim]) into the pool rows `loc` ([num_tokens]).

    k / v may have any float dtype; they are cast to the pool's dtype. Duplicate slots in `loc`
    leave one of the written rows (unspecified which), as with torch indexing.
    """
    _, num_kv_heads, head_dim = check_pool(k_buffer, v_buffer)
    check_index_vector("loc", loc)
    for name, x in (("k", k), ("v", v)):
        check_rank(name, x, 3)
        check_dtype(name, x, FLOAT_DTYPES)
        check_last_dim_contiguous(name, x)
        if tuple(x.shape) != (loc.numel(), num_kv_heads, head_dim):
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected "
                             f"[num_tokens={loc.numel()}, num_kv_heads={num_kv_heads}, head_dim={head_dim}]")
    device = check_same_device(k_buffer=k_buffer, v_buffer=v_buffer, loc=loc, k=k, v=v)
    check_triton_device(device, is_interpreted(_store_kv_kernel))
    num_tokens = loc.numel()
    if num_tokens == 0:
        return
    block_r = triton.next_power_of_2(num_kv_heads * head_dim)
    block_t = max(1, _TILE_ELEMENTS // block_r)
    grid = (triton.cdiv(num_tokens, block_t),)
    _store_kv_kernel[grid](
        k_buffer, v_buffer, loc, k, v,
        num_tokens,
        k_buffer.stride(0), k_buffer.stride(1), v_buffer.stride(0), v_buffer.stride(1),
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        NUM_KV_HEADS=num_kv_heads, HEAD_DIM=head_dim,
        BLOCK_T=block_t, BLOCK_R=block_r,
    )
