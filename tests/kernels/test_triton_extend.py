"""Triton extend attention (interpreted on the CPU, fp32) against the torch reference."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed; the Triton kernel tests need it")

from paged_cases import make_extend_case, pair_pool  # noqa: E402

from sgnb.kernels import torch_ref  # noqa: E402
from sgnb.kernels.triton_extend import extend_attention  # noqa: E402


def assert_matches_reference(case) -> torch.Tensor:
    out = extend_attention(*case.args())
    torch.testing.assert_close(out, torch_ref.extend_attention(*case.args()), atol=2e-5, rtol=2e-5)
    return out


@pytest.mark.parametrize("num_heads, num_kv_heads", [(4, 2), (4, 1), (2, 2)])
def test_ragged_batch_with_gqa_matches_reference(num_heads: int, num_kv_heads: int) -> None:
    # prefixes of 0, 1 and 150 (three 64-key blocks) slots; 70 new tokens span two query blocks
    case = make_extend_case([0, 1, 150], [70, 9, 3], num_heads, num_kv_heads, head_dim=32, seed=num_heads)
    assert_matches_reference(case)


def test_every_prefix_length_from_zero_to_n_matches_reference() -> None:
    prefix_lens = list(range(0, 9)) + [63, 64, 65, 129]
    extend_lens = [1 + (i * 5) % 11 for i in range(len(prefix_lens))]
    case = make_extend_case(prefix_lens, extend_lens, num_heads=2, num_kv_heads=1, head_dim=16, seed=7)
    assert_matches_reference(case)


def test_batch_without_any_cached_prefix_matches_reference() -> None:
    case = make_extend_case([0, 0], [3, 40], num_heads=4, num_kv_heads=1, head_dim=16, seed=13)
    assert case.kv_indices.numel() == 0
    assert_matches_reference(case)


def test_requests_without_new_tokens_are_skipped_and_neighbours_match() -> None:
    case = make_extend_case([4, 10, 0, 6], [3, 0, 5, 0], num_heads=2, num_kv_heads=1, head_dim=16, seed=8)
    assert_matches_reference(case)


def test_non_power_of_two_head_dim_and_int32_indices_match_reference() -> None:
    case = make_extend_case([12, 0, 33], [5, 17, 2], num_heads=3, num_kv_heads=1, head_dim=24,
                            seed=9, index_dtype=torch.int32)
    assert_matches_reference(case)


def test_strided_query_view_of_fused_projection_matches_contiguous_query() -> None:
    case = make_extend_case([20, 5], [6, 11], num_heads=4, num_kv_heads=2, head_dim=16, seed=10)
    num_tokens = case.q.shape[0]
    fused = torch.randn(num_tokens, 8 * 16)                 # q heads then k, v heads, as from a QKV linear
    fused[:, :4 * 16] = case.q.reshape(num_tokens, -1)
    case.q = fused[:, :4 * 16].view(num_tokens, 4, 16)      # row stride 128, not 64
    assert not case.q.is_contiguous()
    assert_matches_reference(case)


def test_explicit_max_extend_len_gives_the_same_output() -> None:
    case = make_extend_case([3, 70], [66, 4], num_heads=2, num_kv_heads=2, head_dim=16, seed=11)
    expected = assert_matches_reference(case)
    torch.testing.assert_close(extend_attention(*case.args(), max_extend_len=66), expected)


def test_new_tokens_never_see_later_tokens() -> None:
    # changing the last new token's key and value leaves every earlier output unchanged
    case = make_extend_case([5], [8], num_heads=2, num_kv_heads=1, head_dim=16, seed=12)
    before = extend_attention(*case.args())
    case.k_extend[-1].mul_(-3.0)
    case.v_extend[-1].add_(5.0)
    after = extend_attention(*case.args())
    torch.testing.assert_close(after[:-1], before[:-1])
    assert not torch.allclose(after[-1], before[-1])


def test_validation_names_the_problem() -> None:
    case = make_extend_case([3], [2], num_heads=4, num_kv_heads=2, head_dim=16)
    args = list(case.args())

    def call_with(index: int, value, match: str) -> None:
        bad = list(args)
        bad[index] = value
        with pytest.raises(ValueError, match=match):
            extend_attention(*bad)

    call_with(0, case.q.double(), "dtype")                                    # q float64
    call_with(0, torch.randn(2, 3, 16), "multiple of num_kv_heads")            # 3 heads over 2 kv heads
    call_with(0, torch.randn(2, 4, 8), "head_dim")
    call_with(1, torch.randn(3, 2, 16), "k_extend has shape")
    call_with(2, case.v_extend.half(), "v_extend .* must share a dtype")
    call_with(4, torch.randn(5, 2, 16), "same shape")                          # v_buffer != k_buffer
    call_with(5, torch.tensor([0.0, 2.0]), "qo_indptr has dtype")
    call_with(6, torch.tensor([0, 1, 3]), "batch \\+ 1")                        # kv_indptr too long
    call_with(7, case.kv_indices.view(1, -1), "kv_indices must have 1 dims")
    call_with(8, -1.0, "sm_scale")
    call_with(0, torch.randn(2, 16, 4).transpose(1, 2), "contiguous in its last dim")


def test_paired_pool_views_match_reference() -> None:
    # KVPool's layout: K and V of a layer are strided views of one [slots, 2, heads, head_dim] tensor
    case = make_extend_case([0, 5, 40], [9, 1, 20], num_heads=4, num_kv_heads=2, head_dim=16, seed=23)
    expected = torch_ref.extend_attention(*case.args())
    pair_pool(case)
    torch.testing.assert_close(extend_attention(*case.args()), expected, atol=2e-5, rtol=2e-5)
