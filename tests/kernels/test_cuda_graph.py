"""Decode CUDA-graph runner: refused on the CPU; its static-input padding keeps real rows exact."""

from __future__ import annotations

import pytest
import torch
from paged_cases import make_decode_case

from sgnb.kernels import torch_ref
from sgnb.kernels.cuda_graph import DecodeGraphRunner, StaticDecodeInputs


def never_called(*args: torch.Tensor) -> torch.Tensor:
    raise AssertionError("the runner must refuse the CPU before calling forward")


def test_constructing_the_runner_on_cpu_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device, got cpu"):
        DecodeGraphRunner(never_called, [1, 2, 4], max_num_kv=64, device="cpu")


def test_padded_static_inputs_leave_real_rows_exact_and_touch_only_the_padding_slot() -> None:
    seq_lens = [5, 1, 70]
    case = make_decode_case(seq_lens, num_heads=4, num_kv_heads=2, head_dim=16, seed=50)
    static = StaticDecodeInputs.allocate(max_batch=8, max_num_kv=128, device="cpu")
    static.kv_indices.fill_(77)                               # stale ids from an earlier step
    out_cache_loc = case.kv_indices[torch.tensor([4, 5, 75])]  # each request's newest slot
    static.fill(8, torch.tensor([11, 12, 13]), torch.tensor([4, 0, 69]), out_cache_loc,
                case.kv_indptr, case.kv_indices)

    input_ids, positions, loc, kv_indptr, kv_indices = static.args(8)
    assert input_ids.tolist() == [11, 12, 13, 0, 0, 0, 0, 0]
    assert positions.tolist() == [4, 0, 69, 0, 0, 0, 0, 0]
    assert loc.tolist() == out_cache_loc.tolist() + [0] * 5
    assert kv_indptr.tolist() == [0, 5, 6, 76, 77, 78, 79, 80, 81]
    assert kv_indices[76:81].tolist() == [0] * 5 and kv_indices.shape[0] == 128

    q = torch.cat([case.q, torch.randn(5, 4, 16)])           # padding rows' queries are arbitrary
    padded = torch_ref.decode_attention(q, case.k_buffer, case.v_buffer, kv_indptr, kv_indices, case.sm_scale)
    torch.testing.assert_close(padded[:3], torch_ref.decode_attention(*case.args()))


def test_padded_decode_through_triton_matches_unpadded() -> None:
    pytest.importorskip("triton", reason="triton is not installed")
    from sgnb.kernels.triton_decode import decode_attention
    case = make_decode_case([9, 33], num_heads=2, num_kv_heads=1, head_dim=16, seed=51)
    static = StaticDecodeInputs.allocate(max_batch=4, max_num_kv=96, device="cpu", index_dtype=torch.int32)
    static.fill(4, torch.tensor([1, 2]), torch.tensor([8, 32]), torch.tensor([3, 4]), case.kv_indptr, case.kv_indices)
    *_, kv_indptr, kv_indices = static.args(4)
    q = torch.cat([case.q, torch.zeros(2, 2, 16)])
    out = decode_attention(q, case.k_buffer, case.v_buffer, kv_indptr, kv_indices, case.sm_scale, num_kv_splits=2)
    torch.testing.assert_close(out[:2], torch_ref.decode_attention(*case.args()), atol=2e-5, rtol=2e-5)


def test_fill_rejects_batches_and_sequences_the_buffers_cannot_hold() -> None:
    static = StaticDecodeInputs.allocate(max_batch=2, max_num_kv=10, device="cpu")
    ids = torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match="cannot pad a batch of 3 to 2"):
        static.fill(2, ids, ids, ids, torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="11 kv indices \\(\\+1 padding\\) exceed the static buffer of 10"):
        static.fill(2, ids[:1], ids[:1], ids[:1], torch.tensor([0, 11]), torch.arange(11))
    with pytest.raises(ValueError, match="inconsistent decode inputs"):
        static.fill(2, ids[:2], ids[:1], ids[:2], torch.tensor([0, 1, 2]), torch.tensor([1, 2]))
