"""Random paged-attention inputs for the kernel tests: a KV pool whose used slots are shuffled and
non-contiguous (slot 0, the padding slot, is never handed out), and ragged batches over it."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(slots=True)
class ExtendCase:
    q: torch.Tensor            # [num_tokens, num_heads, head_dim]
    k_extend: torch.Tensor     # [num_tokens, num_kv_heads, head_dim]
    v_extend: torch.Tensor
    k_buffer: torch.Tensor     # [num_slots, num_kv_heads, head_dim]
    v_buffer: torch.Tensor
    qo_indptr: torch.Tensor    # [batch + 1]
    kv_indptr: torch.Tensor    # [batch + 1], prefix only
    kv_indices: torch.Tensor   # [total_prefix]
    sm_scale: float

    def args(self) -> tuple:
        return (self.q, self.k_extend, self.v_extend, self.k_buffer, self.v_buffer,
                self.qo_indptr, self.kv_indptr, self.kv_indices, self.sm_scale)


@dataclass(slots=True)
class DecodeCase:
    q: torch.Tensor            # [batch, num_heads, head_dim]
    k_buffer: torch.Tensor
    v_buffer: torch.Tensor
    kv_indptr: torch.Tensor    # [batch + 1]
    kv_indices: torch.Tensor   # [total_kv]
    sm_scale: float

    def args(self) -> tuple:
        return self.q, self.k_buffer, self.v_buffer, self.kv_indptr, self.kv_indices, self.sm_scale


def indptr(lengths: list[int], dtype: torch.dtype = torch.int64) -> torch.Tensor:
    out = [0]
    for n in lengths:
        out.append(out[-1] + n)
    return torch.tensor(out, dtype=dtype)


def make_pool(num_slots: int, num_kv_heads: int, head_dim: int, gen: torch.Generator,
              dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (num_slots, num_kv_heads, head_dim)
    return (torch.randn(shape, generator=gen).to(dtype), torch.randn(shape, generator=gen).to(dtype))


def shuffled_slots(count: int, num_slots: int, gen: torch.Generator) -> torch.Tensor:
    """`count` distinct slot ids from 1..num_slots-1 in random order."""
    if count > num_slots - 1:
        raise ValueError(f"pool of {num_slots} slots cannot hold {count} tokens")
    return (torch.randperm(num_slots - 1, generator=gen)[:count] + 1).to(torch.int64)


def make_extend_case(prefix_lens: list[int], extend_lens: list[int], num_heads: int, num_kv_heads: int,
                     head_dim: int, *, seed: int = 0, dtype: torch.dtype = torch.float32,
                     index_dtype: torch.dtype = torch.int64, spare_slots: int = 37) -> ExtendCase:
    gen = torch.Generator().manual_seed(seed)
    num_slots = sum(prefix_lens) + spare_slots + 1
    k_buffer, v_buffer = make_pool(num_slots, num_kv_heads, head_dim, gen, dtype)
    num_tokens = sum(extend_lens)
    return ExtendCase(
        q=torch.randn(num_tokens, num_heads, head_dim, generator=gen).to(dtype),
        k_extend=torch.randn(num_tokens, num_kv_heads, head_dim, generator=gen).to(dtype),
        v_extend=torch.randn(num_tokens, num_kv_heads, head_dim, generator=gen).to(dtype),
        k_buffer=k_buffer, v_buffer=v_buffer,
        qo_indptr=indptr(extend_lens, index_dtype),
        kv_indptr=indptr(prefix_lens, index_dtype),
        kv_indices=shuffled_slots(sum(prefix_lens), num_slots, gen).to(index_dtype),
        sm_scale=head_dim ** -0.5,
    )


def make_decode_case(seq_lens: list[int], num_heads: int, num_kv_heads: int, head_dim: int, *,
                     seed: int = 0, dtype: torch.dtype = torch.float32,
                     index_dtype: torch.dtype = torch.int64, spare_slots: int = 37) -> DecodeCase:
    gen = torch.Generator().manual_seed(seed)
    num_slots = sum(seq_lens) + spare_slots + 1
    k_buffer, v_buffer = make_pool(num_slots, num_kv_heads, head_dim, gen, dtype)
    return DecodeCase(
        q=torch.randn(len(seq_lens), num_heads, head_dim, generator=gen).to(dtype),
        k_buffer=k_buffer, v_buffer=v_buffer,
        kv_indptr=indptr(seq_lens, index_dtype),
        kv_indices=shuffled_slots(sum(seq_lens), num_slots, gen).to(index_dtype),
        sm_scale=head_dim ** -0.5,
    )


def share_leading_slots(kv_indptr: torch.Tensor, kv_indices: torch.Tensor, shared_len: int) -> torch.Tensor:
    """kv_indices where every request starts with request 0's first `shared_len` slots, as requests
    behind one radix-cache prefix do. Every request must hold at least `shared_len` slots."""
    out = kv_indices.clone()
    starts = kv_indptr[:-1].tolist()
    lens = (kv_indptr[1:] - kv_indptr[:-1]).tolist()
    if min(lens) < shared_len:
        raise ValueError(f"a request holds {min(lens)} slots, fewer than the {shared_len} to share")
    for start in starts[1:]:
        out[start:start + shared_len] = kv_indices[starts[0]:starts[0] + shared_len]
    return out


def in_allocation_order(case: ExtendCase | DecodeCase) -> None:
    """Renumber the case's slots 1, 2, 3, ... in order of first use, moving the pool rows along, as a
    fresh allocator hands them out: each request's prefix is then a run of consecutive slots."""
    order: dict[int, int] = {}
    for slot in case.kv_indices.tolist():
        order.setdefault(slot, len(order) + 1)
    old = torch.tensor(list(order), dtype=torch.int64)
    for name in ("k_buffer", "v_buffer"):
        buffer = getattr(case, name)
        moved = torch.zeros_like(buffer)
        moved[1:len(order) + 1] = buffer[old]
        setattr(case, name, moved)
    case.kv_indices = torch.tensor([order[s] for s in case.kv_indices.tolist()], dtype=case.kv_indices.dtype)


def pair_pool(case: ExtendCase | DecodeCase) -> None:
    """Give the case KVPool's layout: K and V as two views of one [num_slots, 2, heads, head_dim] tensor."""
    kv = torch.stack([case.k_buffer, case.v_buffer], dim=1)
    case.k_buffer, case.v_buffer = kv[:, 0], kv[:, 1]
