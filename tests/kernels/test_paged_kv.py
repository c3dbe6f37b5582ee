"""Reading the paged KV pool: which K/V views pair, and which slot lists are runs."""

from __future__ import annotations

import torch

from sgnb.kernels.paged_kv import PoolReader, as_range, kv_pair


def test_kv_pair_only_pairs_side_by_side_rows() -> None:
    kv = torch.zeros(10, 2, 3, 4)
    assert kv_pair(kv[:, 0], kv[:, 1]).data_ptr() == kv.data_ptr()
    assert kv_pair(kv[:, 1], kv[:, 0]) is None  # V before K
    assert kv_pair(torch.zeros(10, 3, 4), torch.zeros(10, 3, 4)) is None  # two tensors
    fused = torch.zeros(5, 7 * 4)  # [q | k | v] of a projection
    k, v = fused[:, 3 * 4:5 * 4].view(5, 2, 4), fused[:, 5 * 4:].view(5, 2, 4)
    assert kv_pair(k, v) is not None
    assert kv_pair(fused[:, :8].view(5, 2, 4), fused[:, 8:16].view(5, 2, 4)) is not None
    assert kv_pair(fused[:, :8].view(5, 2, 4), fused[:, 12:20].view(5, 2, 4)) is None  # a gap
    # one token: its views report different row strides, but the rows still lie side by side
    one = torch.zeros(1, 7 * 4)
    k, v = one[:, :5 * 4].view(-1, 5, 4)[:, 3:], one[:, 5 * 4:].view(-1, 2, 4)
    assert k.stride(0) != v.stride(0) and kv_pair(k, v) is not None


def test_as_range_takes_only_consecutive_ascending_slots() -> None:
    assert as_range(torch.tensor([4, 5, 6, 7])) == slice(4, 8)
    for slots in ([7, 6, 5, 4], [4, 5, 7, 8], [4, 6, 6, 7], [9]):
        assert isinstance(as_range(torch.tensor(slots)), torch.Tensor)


def test_reader_gathers_the_same_rows_from_a_paired_pool_and_from_two_buffers() -> None:
    kv = torch.randn(12, 2, 3, 4)
    two = PoolReader.of(kv[:, 0].clone(), kv[:, 1].clone())
    paired = PoolReader.of(kv[:, 0], kv[:, 1])
    assert two.pair is None and paired.pair is not None
    for slots in (torch.tensor([[3, 9], [1, 1]]), slice(2, 7)):
        for got, expected in zip(paired.gather(slots, torch.float32), two.gather(slots, torch.float32)):
            assert torch.equal(got, expected)
    k, v = paired.gather(slice(2, 7), torch.float32)
    assert k.data_ptr() == kv[2, 0].data_ptr() and torch.equal(v, kv[2:7, 1])  # a run is a view
