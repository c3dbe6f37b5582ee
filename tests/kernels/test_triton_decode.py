"""Triton split-KV decode attention (interpreted on the CPU, fp32) against the torch reference."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed; the Triton kernel tests need it")

from paged_cases import indptr, make_decode_case, pair_pool  # noqa: E402

from sgnb.kernels import torch_ref  # noqa: E402
from sgnb.kernels.triton_decode import decode_attention, default_num_kv_splits  # noqa: E402

# 1 token, a block boundary (64 / 65), and a long-ish 200-token sequence
SEQ_LENS = [1, 7, 64, 65, 200]


@pytest.mark.parametrize("num_heads, num_kv_heads", [(4, 2), (4, 1), (3, 3)])
def test_ragged_batch_with_gqa_matches_reference(num_heads: int, num_kv_heads: int) -> None:
    case = make_decode_case(SEQ_LENS, num_heads, num_kv_heads, head_dim=32, seed=num_heads + num_kv_heads)
    out = decode_attention(*case.args(), num_kv_splits=3)
    torch.testing.assert_close(out, torch_ref.decode_attention(*case.args()), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("num_kv_splits", [1, 2, 5, 16])
def test_any_number_of_kv_splits_gives_the_same_attention(num_kv_splits: int) -> None:
    # 16 splits over 1- and 7-token sequences leave most splits empty; stage 2 must skip them
    case = make_decode_case(SEQ_LENS, num_heads=4, num_kv_heads=2, head_dim=16, seed=20)
    out = decode_attention(*case.args(), num_kv_splits=num_kv_splits)
    torch.testing.assert_close(out, torch_ref.decode_attention(*case.args()), atol=2e-5, rtol=2e-5)


def test_non_power_of_two_head_dim_and_int32_indices_match_reference() -> None:
    case = make_decode_case([3, 90], num_heads=2, num_kv_heads=1, head_dim=20, seed=21, index_dtype=torch.int32)
    out = decode_attention(*case.args(), num_kv_splits=4)
    torch.testing.assert_close(out, torch_ref.decode_attention(*case.args()), atol=2e-5, rtol=2e-5)


def test_default_split_count_on_cpu_matches_reference() -> None:
    case = make_decode_case([5, 130], num_heads=4, num_kv_heads=2, head_dim=16, seed=22)
    assert default_num_kv_splits(2, 2, case.q.device) == 4
    torch.testing.assert_close(decode_attention(*case.args()), torch_ref.decode_attention(*case.args()),
                               atol=2e-5, rtol=2e-5)


def test_kv_indices_longer_than_the_batch_needs_are_ignored() -> None:
    # a CUDA-graph static buffer: entries past kv_indptr[-1] hold stale slot ids
    case = make_decode_case([9, 30], num_heads=2, num_kv_heads=1, head_dim=16, seed=23)
    expected = torch_ref.decode_attention(*case.args())
    case.kv_indices = torch.cat([case.kv_indices, case.kv_indices.flip(0)])
    torch.testing.assert_close(decode_attention(*case.args(), num_kv_splits=2), expected, atol=2e-5, rtol=2e-5)


def test_empty_sequence_gives_zeros_and_leaves_neighbours_exact() -> None:
    case = make_decode_case([6, 0, 40], num_heads=2, num_kv_heads=1, head_dim=16, seed=24)
    out = decode_attention(*case.args(), num_kv_splits=4)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    expected = torch_ref.decode_attention(*case.args())
    torch.testing.assert_close(out[[0, 2]], expected[[0, 2]], atol=2e-5, rtol=2e-5)


def test_validation_names_the_problem() -> None:
    case = make_decode_case([3, 4], num_heads=4, num_kv_heads=2, head_dim=16)
    q, k_buffer, v_buffer, kv_indptr, kv_indices, sm_scale = case.args()
    with pytest.raises(ValueError, match="kv_indptr has 2 entries; expected batch \\+ 1 = 3"):
        decode_attention(q, k_buffer, v_buffer, indptr([7]), kv_indices, sm_scale)
    with pytest.raises(ValueError, match="num_kv_splits"):
        decode_attention(*case.args(), num_kv_splits=0)
    with pytest.raises(ValueError, match="num_kv_splits"):
        decode_attention(*case.args(), num_kv_splits=17)
    with pytest.raises(ValueError, match="must share a dtype"):
        decode_attention(q.half(), k_buffer, v_buffer, kv_indptr, kv_indices, sm_scale)
    with pytest.raises(ValueError, match="kv_indices has dtype"):
        decode_attention(q, k_buffer, v_buffer, kv_indptr, kv_indices.float(), sm_scale)
    with pytest.raises(ValueError, match="kv_indices must be contiguous"):
        decode_attention(q, k_buffer, v_buffer, kv_indptr, torch.arange(28)[::4], sm_scale)
    with pytest.raises(ValueError, match="k_buffer must have 3 dims"):
        decode_attention(q, k_buffer.view(-1, 32), v_buffer, kv_indptr, kv_indices, sm_scale)


def test_paired_pool_views_match_reference() -> None:
    # KVPool's layout: K and V of a layer are strided views of one [slots, 2, heads, head_dim] tensor
    case = make_decode_case([3, 70, 65], num_heads=4, num_kv_heads=2, head_dim=16, seed=23)
    expected = torch_ref.decode_attention(*case.args())
    pair_pool(case)
    torch.testing.assert_close(decode_attention(*case.args()), expected, atol=2e-5, rtol=2e-5)
