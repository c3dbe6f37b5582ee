"""Optional attention backend over vllm-flash-attn; same signatures as `sgnb.kernels.torch_ref`.

Package: `vllm-flash-attn` on PyPI, imported as `vllm_flash_attn`. Version 2.6.2 is a CUDA-only wheel
that pins torch==2.4.0, so installing it replaces any other torch: use it only in an environment
built around torch 2.4 (`pip install torch==2.4.0 vllm-flash-attn==2.6.2`). sgnb never requires it;
`get_attention_ops("flash")` raises BackendUnavailableError when it does not import, and "auto"
never picks it.

Fit with our pool: flash-attn's paged-KV path (`block_table`) wants pages of many tokens, while
our pool pages are single tokens. So both ops gather K/V through `kv_indices` into flash-attn's
packed varlen layout and call `flash_attn_varlen_func`:
  - extend: per request, [cached prefix | new tokens] packed, causal=True. flash-attn (>= 2.1)
    aligns the causal mask to the bottom-right corner, so new token j sees the prefix and 0..j.
  - decode: one query per request over its gathered sequence, causal=False.
The gather costs one extra read and write of the KV per call, and the host reads the max
lengths (a device sync), so these ops are not CUDA-graph safe. Triton is the default on CUDA;
this backend is here for comparison. fp16 / bf16 only (flash-attn has no fp32 kernels).
"""

from __future__ import annotations

import torch

from sgnb.kernels.errors import BackendUnavailableError
from sgnb.kernels.torch_ref import store_kv  # noqa: F401  (a plain index_put is all a store needs)
from sgnb.kernels.validation import (check_indptr_pair, check_index_vector, check_pool, check_query,
                                     check_same_device, check_sm_scale)

_FLASH_DTYPES = (torch.float16, torch.bfloat16)


def require() -> None:
    """Raise BackendUnavailableError unless vllm-flash-attn imports."""
    try:
        import vllm_flash_attn  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(
            "attention_backend='flash' needs the optional vllm-flash-attn package (CUDA only; "
            f"vllm-flash-attn 2.6.2 pins torch==2.4.0); it does not import here: {exc}") from exc


def _varlen_func():
    require()
    from vllm_flash_attn import flash_attn_varlen_func
    return flash_attn_varlen_func


def _check_flash_inputs(q: torch.Tensor, device: torch.device) -> None:
    if q.dtype not in _FLASH_DTYPES:
        raise ValueError(f"the flash backend needs float16 or bfloat16 tensors, got {q.dtype}")
    if device.type != "cuda":
        raise ValueError(f"the flash backend needs CUDA tensors, got {device}")


def pack_extend_kv(k_extend: torch.Tensor, v_extend: torch.Tensor, k_buffer: torch.Tensor,
                   v_buffer: torch.Tensor, qo_indptr: torch.Tensor, kv_indptr: torch.Tensor,
                   kv_indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pack each request's [cached prefix | new tokens] K/V back to back (flash-attn's varlen layout).

    Returns k, v: [total_prefix + num_tokens, num_kv_heads, head_dim] and cu_seqlens_k: [batch + 1]
    int32. Reads the total length on the host (one sync).
    """
    prefix_lens = kv_indptr[1:] - kv_indptr[:-1]                   # [batch]
    extend_lens = qo_indptr[1:] - qo_indptr[:-1]
    seq_lens = (prefix_lens + extend_lens).to(torch.int64)
    cu_seqlens_k = torch.cat([seq_lens.new_zeros(1), torch.cumsum(seq_lens, dim=0)])   # [batch + 1]
    total_prefix = int(kv_indptr[-1])
    total = total_prefix + k_extend.shape[0]
    batch = qo_indptr.numel() - 1
    req = torch.repeat_interleave(torch.arange(batch, device=qo_indptr.device), seq_lens,
                                  output_size=total)                            # [total] request id
    local = torch.arange(total, device=qo_indptr.device) - cu_seqlens_k[req]   # position in request
    is_prefix = local < prefix_lens[req]
    # rows of cat([gathered prefix, k_extend]): prefix rows keep kv order, new rows follow
    src = torch.where(is_prefix, kv_indptr[req] + local,
                      total_prefix + qo_indptr[req] + local - prefix_lens[req])
    slots = kv_indices[:total_prefix]
    k = torch.cat([k_buffer[slots], k_extend.to(k_buffer.dtype)])[src]
    v = torch.cat([v_buffer[slots], v_extend.to(v_buffer.dtype)])[src]
    return k, v, cu_seqlens_k.to(torch.int32)


def extend_attention(q: torch.Tensor, k_extend: torch.Tensor, v_extend: torch.Tensor,
                     k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                     qo_indptr: torch.Tensor, kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
                     sm_scale: float) -> torch.Tensor:
    """See `torch_ref.extend_attention`."""
    _, num_kv_heads, head_dim = check_pool(k_buffer, v_buffer)
    check_query(q, k_buffer, num_kv_heads, head_dim)
    check_indptr_pair("qo_indptr", qo_indptr, "kv_indptr", kv_indptr)
    check_index_vector("kv_indices", kv_indices)
    sm_scale = check_sm_scale(sm_scale)
    device = check_same_device(q=q, k_extend=k_extend, v_extend=v_extend, k_buffer=k_buffer,
                               v_buffer=v_buffer, qo_indptr=qo_indptr, kv_indptr=kv_indptr,
                               kv_indices=kv_indices)
    _check_flash_inputs(q, device)
    varlen = _varlen_func()
    k, v, cu_seqlens_k = pack_extend_kv(k_extend, v_extend, k_buffer, v_buffer, qo_indptr, kv_indptr, kv_indices)
    max_seqlen_q = int((qo_indptr[1:] - qo_indptr[:-1]).max())
    max_seqlen_k = int((cu_seqlens_k[1:] - cu_seqlens_k[:-1]).max())
    return varlen(q.contiguous(), k, v, qo_indptr.to(torch.int32), cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                  softmax_scale=sm_scale, causal=True)


def decode_attention(q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                     kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
                     sm_scale: float) -> torch.Tensor:
    """See `torch_ref.decode_attention`."""
    _, num_kv_heads, head_dim = check_pool(k_buffer, v_buffer)
    check_query(q, k_buffer, num_kv_heads, head_dim)
    check_index_vector("kv_indptr", kv_indptr)
    check_index_vector("kv_indices", kv_indices)
    if kv_indptr.numel() != q.shape[0] + 1:
        raise ValueError(f"kv_indptr has {kv_indptr.numel()} entries; expected batch + 1 = {q.shape[0] + 1}")
    sm_scale = check_sm_scale(sm_scale)
    device = check_same_device(q=q, k_buffer=k_buffer, v_buffer=v_buffer, kv_indptr=kv_indptr,
                               kv_indices=kv_indices)
    _check_flash_inputs(q, device)
    varlen = _varlen_func()
    batch = q.shape[0]
    slots = kv_indices[:int(kv_indptr[-1])]             # kv_indices may be a longer (static) buffer
    cu_seqlens_q = torch.arange(batch + 1, dtype=torch.int32, device=q.device)
    max_seqlen_k = int((kv_indptr[1:] - kv_indptr[:-1]).max())
    return varlen(q.contiguous(), k_buffer[slots], v_buffer[slots], cu_seqlens_q, kv_indptr.to(torch.int32),
                  1, max_seqlen_k, softmax_scale=sm_scale, causal=False)
