"""The C++ paged decode attention and KV store, and the "cpu" attention backend, against `torch_ref`."""

from __future__ import annotations

import pytest
import torch
from paged_cases import in_allocation_order, indptr, make_decode_case, make_extend_case, pair_pool

from sgnb.kernels import get_attention_ops, torch_batched, torch_ref

DTYPES = (torch.float32, torch.bfloat16)
# (num_heads, num_kv_heads): GQA ratios 1, 3 (SmolLM2) and 4
HEADS = ((4, 4), (9, 3), (8, 2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("num_heads", "num_kv_heads"), HEADS)
@pytest.mark.parametrize("seq_lens", [[1], [300], [1, 37, 64, 65, 129, 5]])
def test_decode_attention_matches_reference_on_scattered_slots(ext, isa, dtype, num_heads, num_kv_heads,
                                                                seq_lens) -> None:
    case = make_decode_case(seq_lens, num_heads, num_kv_heads, 64, seed=len(seq_lens), dtype=dtype)
    out = ext.decode_attention(*case.args())
    assert out.shape == case.q.shape and out.dtype == dtype
    torch.testing.assert_close(out, torch_ref.decode_attention(*case.args()))


@pytest.mark.parametrize("head_dim", [24, 128])
def test_decode_attention_handles_head_dims_off_the_vector_width(ext, isa, head_dim) -> None:
    case = make_decode_case([3, 70], 6, 2, head_dim, seed=head_dim)
    torch.testing.assert_close(ext.decode_attention(*case.args()), torch_ref.decode_attention(*case.args()))


@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_attention_reads_the_kv_pools_strided_views_and_int32_indices(ext, isa, dtype) -> None:
    case = make_decode_case([17, 300, 2], 9, 3, 64, seed=3, dtype=dtype, index_dtype=torch.int32)
    pair_pool(case)
    in_allocation_order(case)
    case.kv_indptr, case.kv_indices = case.kv_indptr.int(), case.kv_indices.int()
    torch.testing.assert_close(ext.decode_attention(*case.args()), torch_ref.decode_attention(*case.args()))


def test_decode_attention_takes_fp32_queries_over_a_bf16_pool(ext, isa) -> None:
    case = make_decode_case([40, 9], 9, 3, 64, seed=4, dtype=torch.bfloat16)
    case.q = case.q.float()
    torch.testing.assert_close(ext.decode_attention(*case.args()), torch_ref.decode_attention(*case.args()))


def test_decode_attention_over_many_requests_spreads_over_threads_and_still_matches(ext) -> None:
    case = make_decode_case([300] * 32, 9, 3, 64, seed=5)
    torch.testing.assert_close(ext.decode_attention(*case.args()), torch_ref.decode_attention(*case.args()))


def test_decode_attention_is_softmax_stable_for_large_scores(ext, isa) -> None:
    case = make_decode_case([100], 4, 4, 64, seed=6)
    case.q *= 40                                    # scores of a few hundred: exp would overflow without the max
    out = ext.decode_attention(*case.args())
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch_ref.decode_attention(*case.args()))


def test_decode_attention_rejects_bad_layouts(ext) -> None:
    case = make_decode_case([3, 4], 9, 3, 64, seed=7)
    with pytest.raises(RuntimeError, match="request 1 has 0 KV slots"):
        ext.decode_attention(case.q, case.k_buffer, case.v_buffer, indptr([3, 0]), case.kv_indices[:3],
                             case.sm_scale)
    bad = case.kv_indices.clone()
    bad[2] = case.k_buffer.shape[0]
    with pytest.raises(RuntimeError, match=r"kv_indices\[2\] = .* is out of range"):
        ext.decode_attention(case.q, case.k_buffer, case.v_buffer, case.kv_indptr, bad, case.sm_scale)
    with pytest.raises(RuntimeError, match="multiple of the pool's KV heads"):
        ext.decode_attention(case.q[:, :8], case.k_buffer, case.v_buffer, case.kv_indptr, case.kv_indices,
                             case.sm_scale)


@pytest.mark.parametrize(("dtype", "pool_dtype"), [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
                                                   (torch.bfloat16, torch.float32)])
@pytest.mark.parametrize("num_tokens", [1, 3, 100])
def test_store_kv_matches_reference_into_the_pools_strided_views(ext, isa, dtype, pool_dtype, num_tokens) -> None:
    gen = torch.Generator().manual_seed(num_tokens)
    num_slots, num_kv_heads, d = num_tokens + 9, 3, 64
    kv = torch.randn(num_slots, 2, num_kv_heads, d, generator=gen).to(pool_dtype)
    expected = kv.clone()
    # the new k and v are views of the projection's output rows (q heads first), as the model passes them
    qkv = torch.randn(num_tokens, 15, d, generator=gen).to(dtype)
    k, v = qkv[:, 9:12], qkv[:, 12:]
    loc = torch.randperm(num_slots - 1, generator=gen)[:num_tokens] + 1
    ext.store_kv(kv[:, 0], kv[:, 1], loc, k, v)
    torch_ref.store_kv(expected[:, 0], expected[:, 1], loc, k, v)
    assert torch.equal(kv, expected)


def test_store_kv_rejects_a_slot_outside_the_pool(ext) -> None:
    kv = torch.zeros(4, 2, 3, 64)
    k = torch.zeros(1, 3, 64)
    with pytest.raises(RuntimeError, match=r"loc\[0\] = -1 is out of range"):
        ext.store_kv(kv[:, 0], kv[:, 1], torch.tensor([-1]), k, k)


# ------------------------------------------------------------------ the "cpu" backend


def test_cpu_backend_is_the_cpp_decode_and_store_with_torch_batched_extend(ext) -> None:
    ops = get_attention_ops("cpu", "cpu")
    assert ops.name == "cpu" and not ops.is_graph_safe and ops.max_decode_form_extend > 0
    assert (ops.store_kv, ops.decode_attention) == (ext.store_kv, ext.decode_attention)
    assert ops.extend_attention is torch_batched.extend_attention


def test_cpu_backend_runs_short_extends_as_decode_queries_like_the_reference(ext) -> None:
    """The model runner's decode form: each new token is a query over the pool up to and including itself."""
    ops = get_attention_ops("cpu", "cpu")
    prefix_lens, extend_lens = [30, 0, 7], [ops.max_decode_form_extend, 1, 5]
    case = make_extend_case(prefix_lens, extend_lens, 9, 3, 64, seed=8, spare_slots=sum(extend_lens) + 5)
    pair_pool(case)
    expected = torch_ref.extend_attention(*case.args())

    used = set(case.kv_indices.tolist())
    free = [s for s in range(1, case.k_buffer.shape[0]) if s not in used]
    new_slots = torch.tensor(free[:sum(extend_lens)])
    ops.store_kv(case.k_buffer, case.v_buffer, new_slots, case.k_extend, case.v_extend)
    rows, kvp = [], case.kv_indptr.tolist()
    new = 0
    for i, n in enumerate(extend_lens):
        prefix = case.kv_indices[kvp[i]:kvp[i + 1]]
        for j in range(n):
            rows.append(torch.cat([prefix, new_slots[new:new + j + 1]]))
        new += n
    out = ops.decode_attention(case.q, case.k_buffer, case.v_buffer, indptr([len(r) for r in rows]),
                               torch.cat(rows), case.sm_scale)
    torch.testing.assert_close(out, expected)
