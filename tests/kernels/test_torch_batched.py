"""The batched CPU backend against the one-request-at-a-time reference, with and without shared prefixes."""

from __future__ import annotations

import pytest
import torch
from paged_cases import (in_allocation_order, make_decode_case, make_extend_case, pair_pool,
                         share_leading_slots)

from sgnb.kernels import paged_kv, torch_batched, torch_ref

HEADS = [(6, 2), (4, 1), (4, 4)]      # (num_heads, num_kv_heads): GQA groups of 3 and 4, and plain MHA
TOL = {torch.float32: 2e-5, torch.bfloat16: 2e-2}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("heads", HEADS, ids=lambda h: f"{h[0]}q{h[1]}kv")
@pytest.mark.parametrize("seq_lens, shared_len", [
    ([1, 9, 33, 4], 0),                 # ragged, padded, nothing shared
    ([70, 45, 90, 41], 40),             # a shared prefix, then ragged own keys
    ([50, 50], 49),                     # everything shared but each request's own token
    ([100], 0),                         # one request
    ([64, 64, 64], 20),                 # shared, but too short to be worth splitting
], ids=["ragged", "shared", "all-but-own", "single", "short-shared"])
def test_decode_matches_reference(seq_lens, shared_len, heads, dtype) -> None:
    case = make_decode_case(seq_lens, num_heads=heads[0], num_kv_heads=heads[1], head_dim=16, seed=4, dtype=dtype)
    if shared_len:
        case.kv_indices = share_leading_slots(case.kv_indptr, case.kv_indices, shared_len)
    expected = torch_ref.decode_attention(*case.args())
    got = torch_batched.decode_attention(*case.args())
    assert got.dtype == expected.dtype and got.shape == expected.shape
    torch.testing.assert_close(got.float(), expected.float(), atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("heads", HEADS, ids=lambda h: f"{h[0]}q{h[1]}kv")
@pytest.mark.parametrize("prefix_lens, extend_lens, shared_len", [
    ([0, 3, 17, 0, 40], [5, 1, 9, 0, 12], 0),     # all short: one padded call
    ([5, 0, 30, 2], [1, 70, 1, 3], 0),            # a prefill chunk beside short ones: both paths
    ([12], [4], 0),                               # a lone request
    ([0, 0, 0], [1, 1, 1], 0),                    # no prefix anywhere
    ([80, 95, 80, 120], [7, 1, 13, 2], 80),       # few-shot: questions behind one cached prefix
    ([60, 61, 90], [3, 100, 2], 60),              # shared among the short ones, a long one alone
    ([50, 50, 51, 50], [80, 66, 90, 1], 50),      # prefill: long passages behind one prefix, and a rider
], ids=["short", "mixed", "single", "no-prefix", "shared", "shared-mixed", "long"])
def test_extend_matches_reference(prefix_lens, extend_lens, shared_len, heads, dtype) -> None:
    case = make_extend_case(prefix_lens, extend_lens, num_heads=heads[0], num_kv_heads=heads[1], head_dim=16,
                            seed=5, dtype=dtype, index_dtype=torch.int32)
    if shared_len:
        case.kv_indices = share_leading_slots(case.kv_indptr, case.kv_indices, shared_len)
    expected = torch_ref.extend_attention(*case.args())
    got = torch_batched.extend_attention(*case.args())
    torch.testing.assert_close(got.float(), expected.float(), atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_consecutive_slots_are_read_as_a_view_with_the_same_result(dtype) -> None:
    decode = make_decode_case([70, 45, 90], num_heads=6, num_kv_heads=2, head_dim=16, seed=8, dtype=dtype)
    decode.kv_indices = share_leading_slots(decode.kv_indptr, decode.kv_indices, 40)
    extend = make_extend_case([50, 50, 60], [80, 3, 90], num_heads=6, num_kv_heads=2, head_dim=16, seed=9,
                              dtype=dtype)
    extend.kv_indices = share_leading_slots(extend.kv_indptr, extend.kv_indices, 50)
    single = make_decode_case([60], num_heads=6, num_kv_heads=2, head_dim=16, seed=10, dtype=dtype)
    for case in (decode, extend, single):
        in_allocation_order(case)
    assert torch_batched._decode_plan(decode.kv_indptr, decode.kv_indices).shared_slots == slice(1, 41)
    assert torch_batched._decode_plan(single.kv_indptr, single.kv_indices).slots == slice(1, 61)
    plan = torch_batched._extend_plan(extend.qo_indptr, extend.kv_indptr, extend.kv_indices)
    assert [span.prefix for span in plan.long][0] == slice(1, 51)
    for fast, ref, case in ((torch_batched.decode_attention, torch_ref.decode_attention, decode),
                            (torch_batched.decode_attention, torch_ref.decode_attention, single),
                            (torch_batched.extend_attention, torch_ref.extend_attention, extend)):
        torch.testing.assert_close(fast(*case.args()).float(), ref(*case.args()).float(), atol=TOL[dtype],
                                   rtol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_paired_pool_is_read_with_one_gather_and_gives_the_same_result(dtype) -> None:
    decode = make_decode_case([70, 45, 90, 40], num_heads=6, num_kv_heads=2, head_dim=16, seed=11, dtype=dtype)
    decode.kv_indices = share_leading_slots(decode.kv_indptr, decode.kv_indices, 36)
    extend = make_extend_case([50, 50, 60, 0], [80, 3, 90, 2], num_heads=6, num_kv_heads=2, head_dim=16,
                              seed=12, dtype=dtype)
    for case, fast, ref in ((decode, torch_batched.decode_attention, torch_ref.decode_attention),
                            (extend, torch_batched.extend_attention, torch_ref.extend_attention)):
        expected = ref(*case.args())
        pair_pool(case)
        assert paged_kv.kv_pair(case.k_buffer, case.v_buffer) is not None
        torch.testing.assert_close(fast(*case.args()).float(), expected.float(), atol=TOL[dtype], rtol=TOL[dtype])


def test_shared_prefix_is_detected_and_split_off() -> None:
    case = make_decode_case([70, 45, 90], num_heads=4, num_kv_heads=1, head_dim=8, seed=6)
    case.kv_indices = share_leading_slots(case.kv_indptr, case.kv_indices, 44)
    plan = torch_batched._decode_plan(case.kv_indptr, case.kv_indices)
    assert plan.shared_slots is not None and plan.shared_slots.numel() == 44
    assert plan.slots.shape == (3, 90 - 44)                       # only the keys after the prefix are padded


def test_plan_is_built_once_per_forward_and_rebuilt_for_new_indices() -> None:
    case = make_decode_case([5, 9], num_heads=4, num_kv_heads=2, head_dim=8, seed=7)
    first = torch_batched._cached(torch_batched._decode_plan, case.kv_indptr, case.kv_indices)
    assert torch_batched._cached(torch_batched._decode_plan, case.kv_indptr, case.kv_indices) is first
    other = torch_batched._cached(torch_batched._decode_plan, case.kv_indptr.clone(), case.kv_indices)
    assert other is not first


@pytest.mark.parametrize("loc_dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("pool_dtype", [torch.float32, torch.bfloat16], ids=["fp32-pool", "bf16-pool"])
@pytest.mark.parametrize("is_paired", [False, True], ids=["two-pools", "paired-pool"])
def test_store_writes_the_same_rows_as_the_reference(pool_dtype, loc_dtype, is_paired) -> None:
    pools = [[torch.zeros(40, 2, 16, dtype=pool_dtype) for _ in range(2)] for _ in range(2)]
    if is_paired:
        kv = torch.zeros(40, 2, 2, 16, dtype=pool_dtype)
        pools[0] = [kv[:, 0], kv[:, 1]]
    fused = torch.randn(5, 2, 2, 16)                       # strided k, v views of one projection, fp32
    loc = torch.tensor([39, 1, 17, 2, 30], dtype=loc_dtype)
    torch_batched.store_kv(*pools[0], loc, fused[:, 0], fused[:, 1])
    torch_ref.store_kv(*pools[1], loc, fused[:, 0], fused[:, 1])
    for got, expected in zip(pools[0], pools[1]):
        assert torch.equal(got, expected)
    assert pools[0][0][loc.long()].abs().sum() > 0 and pools[0][0][0].abs().sum() == 0
