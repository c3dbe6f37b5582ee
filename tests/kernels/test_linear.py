"""Prepacked oneDNN matmuls against F.linear, over the row counts where the choice between them flips."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sgnb.kernels.linear import FP32_PACKED_MIN_ROWS, can_prepack, make_linear

TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("num_rows", [1, FP32_PACKED_MIN_ROWS - 1, FP32_PACKED_MIN_ROWS, 32, 300])
@pytest.mark.parametrize("has_bias", [False, True], ids=["no-bias", "bias"])
def test_prepacked_linear_matches_f_linear(dtype, num_rows, has_bias) -> None:
    gen = torch.Generator().manual_seed(num_rows)
    weight = torch.randn(200, 96, generator=gen).to(dtype)
    bias = torch.randn(200, generator=gen).to(dtype) if has_bias else None
    x = torch.randn(num_rows, 96, generator=gen).to(dtype)
    linear = make_linear(weight, bias)
    got, expected = linear(x), F.linear(x, weight, bias)
    assert got.dtype == dtype and got.shape == (num_rows, 200)
    torch.testing.assert_close(got.float(), expected.float(), atol=TOL[dtype], rtol=TOL[dtype])


def test_strided_rows_are_read_as_their_values() -> None:
    weight = torch.randn(64, 48)
    wide = torch.randn(8, 100)
    x = wide[:, 10:58]                                   # not contiguous
    torch.testing.assert_close(make_linear(weight)(x), F.linear(x, weight), atol=1e-4, rtol=1e-4)


def test_only_cpu_fp32_and_bf16_matrices_are_prepacked() -> None:
    assert can_prepack(torch.zeros(4, 4)) and can_prepack(torch.zeros(4, 4, dtype=torch.bfloat16))
    assert not can_prepack(torch.zeros(4, 4, dtype=torch.float16))
    assert not can_prepack(torch.zeros(4, 4, device="meta"))
    assert not can_prepack(torch.zeros(4))


def test_without_prepacking_the_weight_is_read_live() -> None:
    weight = torch.zeros(3, 2)
    linear = make_linear(weight, prepack=False)
    weight.fill_(1.0)                                    # the reference path packs nothing: it sees the change
    assert torch.equal(linear(torch.ones(1, 2)), torch.full((1, 3), 2.0))
