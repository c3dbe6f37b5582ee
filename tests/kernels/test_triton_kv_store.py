"""Triton KV store (interpreted on the CPU) against the torch reference."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed; the Triton kernel tests need it")

from paged_cases import shuffled_slots  # noqa: E402

from sgnb.kernels import torch_ref  # noqa: E402
from sgnb.kernels.triton_kv_store import store_kv  # noqa: E402


def pools(num_slots: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(num_slots)
    k = torch.randn(num_slots, num_kv_heads, head_dim, generator=gen).to(dtype)
    v = torch.randn(num_slots, num_kv_heads, head_dim, generator=gen).to(dtype)
    return (k, v), (k.clone(), v.clone())


@pytest.mark.parametrize("num_tokens, num_kv_heads, head_dim", [(1, 1, 16), (50, 4, 64), (13, 3, 24)])
def test_scatter_into_shuffled_slots_matches_reference(num_tokens: int, num_kv_heads: int, head_dim: int) -> None:
    # 50 tokens x 256 elements per row span four programs of 16 rows
    gen = torch.Generator().manual_seed(num_tokens)
    (k_buffer, v_buffer), (k_ref, v_ref) = pools(90, num_kv_heads, head_dim)
    loc = shuffled_slots(num_tokens, 90, gen)
    k = torch.randn(num_tokens, num_kv_heads, head_dim, generator=gen)
    v = torch.randn(num_tokens, num_kv_heads, head_dim, generator=gen)
    store_kv(k_buffer, v_buffer, loc, k, v)
    torch_ref.store_kv(k_ref, v_ref, loc, k, v)
    assert torch.equal(k_buffer, k_ref) and torch.equal(v_buffer, v_ref)


def test_float32_rows_are_cast_into_a_float16_pool() -> None:
    (k_buffer, v_buffer), (k_ref, v_ref) = pools(30, 2, 16, torch.float16)
    loc = torch.tensor([29, 3, 17], dtype=torch.int32)
    k, v = torch.randn(3, 2, 16), torch.randn(3, 2, 16)
    store_kv(k_buffer, v_buffer, loc, k, v)
    torch_ref.store_kv(k_ref, v_ref, loc, k, v)
    assert torch.equal(k_buffer, k_ref) and torch.equal(v_buffer, v_ref)


def test_strided_views_of_a_fused_kv_projection_are_stored_row_by_row() -> None:
    (k_buffer, v_buffer), (k_ref, v_ref) = pools(40, 2, 16)
    fused = torch.randn(7, 2, 2, 16)                       # [num_tokens, (k, v), num_kv_heads, head_dim]
    k, v = fused[:, 0], fused[:, 1]
    assert not k.is_contiguous()
    loc = torch.tensor([5, 6, 7, 30, 31, 1, 2])
    store_kv(k_buffer, v_buffer, loc, k, v)
    torch_ref.store_kv(k_ref, v_ref, loc, k, v)
    assert torch.equal(k_buffer, k_ref) and torch.equal(v_buffer, v_ref)


def test_empty_store_changes_nothing() -> None:
    (k_buffer, v_buffer), (k_ref, v_ref) = pools(10, 1, 16)
    store_kv(k_buffer, v_buffer, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 1, 16), torch.zeros(0, 1, 16))
    assert torch.equal(k_buffer, k_ref) and torch.equal(v_buffer, v_ref)


def test_validation_names_the_problem() -> None:
    (k_buffer, v_buffer), _ = pools(10, 2, 16)
    k = v = torch.randn(2, 2, 16)
    loc = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="loc has dtype"):
        store_kv(k_buffer, v_buffer, loc.float(), k, v)
    with pytest.raises(ValueError, match=r"k has shape \(3, 2, 16\); expected \[num_tokens=2"):
        store_kv(k_buffer, v_buffer, loc, torch.randn(3, 2, 16), v)
    with pytest.raises(ValueError, match="v has shape"):
        store_kv(k_buffer, v_buffer, loc, k, torch.randn(2, 1, 16))
    with pytest.raises(ValueError, match="same shape"):
        store_kv(k_buffer, v_buffer[:, :1], loc, k, v)
    with pytest.raises(ValueError, match="share a dtype"):
        store_kv(k_buffer, v_buffer.half(), loc, k, v)
    with pytest.raises(ValueError, match="k has dtype"):
        store_kv(k_buffer, v_buffer, loc, k.to(torch.int32), v)


def test_paired_pool_views_are_stored_like_two_pools() -> None:
    # KVPool's layout: K and V of a layer are views of one [slots, 2, heads, head_dim] tensor
    gen = torch.Generator().manual_seed(7)
    kv = torch.randn(40, 2, 3, 16, generator=gen)
    (k_ref, v_ref) = (kv[:, 0].clone(), kv[:, 1].clone())
    loc = shuffled_slots(9, 40, gen)
    k, v = torch.randn(9, 3, 16, generator=gen), torch.randn(9, 3, 16, generator=gen)
    store_kv(kv[:, 0], kv[:, 1], loc, k, v)
    torch_ref.store_kv(k_ref, v_ref, loc, k, v)
    assert torch.equal(kv[:, 0], k_ref) and torch.equal(kv[:, 1], v_ref)
