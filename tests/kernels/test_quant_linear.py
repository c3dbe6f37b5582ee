"""The packed 4/8-bit matmul: the C++ kernel against `quant_linear_ref` on every ISA path this CPU has,
the torch fallback, stream_bytes, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgnb.kernels.quant_linear import make_quant_linear, quant_linear_ref
from sgnb.kernels.quant_weights import QTYPES, pack_gguf, quantize_weight
from tests.kernels.conftest import CPU_ISAS
from tests.kernels.gguf_cases import smollm2_gguf_tensors

ROWS = (1, 2, 3, 7, 8, 12, 13, 16, 22, 33, 64, 65, 200)  # groups of 8 rows + every tail; 65, 200: prefill

# the fixtures `ext` (the built extension, else skip) and `isa` (each ISA path this CPU has) are in conftest.py


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.float() - expected.float()).norm() / expected.float().norm()).item()


def check_against_reference(weight, bias, rows: int, dtype: torch.dtype, seed: int = 0) -> None:
    x = torch.randn(rows, weight.in_features, generator=torch.Generator().manual_seed(seed)).to(dtype)
    actual = make_quant_linear(weight, bias)(x)
    assert actual.dtype == dtype and tuple(actual.shape) == (rows, weight.out_features)
    # fp32 activations keep fp32 accuracy (avx512_vnni: three int8 levels of each activation, at most 6e-8 of
    # its block's max off); bf16 differs from the reference by bf16 rounding (the reference also rounds the
    # weights to bf16, the kernel keeps them exact)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2
    assert relative_error(actual, quant_linear_ref(x, weight, bias)) < tolerance, (rows, dtype)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_matches_reference_for_every_row_count(isa, qtype, dtype):
    torch.manual_seed(0)
    weight = quantize_weight(torch.randn(37, 96), qtype)      # out_features not a multiple of the 16-row tile
    bias = torch.randn(37)
    for rows in ROWS:
        check_against_reference(weight, bias if rows % 2 else None, rows, dtype, seed=rows)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_matches_reference_on_smollm2_shapes(isa, qtype, dtype):
    torch.manual_seed(1)
    # fused qkv (9 + 2 * 3 heads of 64) with a bias, gate_up, down
    for out_features, in_features, bias in ((960, 576, torch.randn(960)), (3072, 576, None), (576, 1536, None)):
        weight = quantize_weight(torch.randn(out_features, in_features) * 0.05, qtype)
        for rows in (1, 8, 65):
            check_against_reference(weight, bias, rows, dtype, seed=rows)


def test_real_gguf_layers_match_reference(ext):
    tensors = smollm2_gguf_tensors(["blk.3.ffn_gate.weight", "blk.3.attn_output.weight"])
    for raw, qtype, out_features, in_features in tensors.values():
        weight = pack_gguf(raw, qtype, out_features, in_features)
        for rows in (1, 8, 64, 65):
            check_against_reference(weight, None, rows, torch.float32, seed=rows)


def test_vector_paths_agree_with_the_scalar_path(ext):
    weight = quantize_weight(torch.randn(50, 128), "q4_1")
    x = torch.randn(5, 128)
    linear = make_quant_linear(weight)
    previous = ext.set_isa_cap("scalar")
    try:
        scalar = linear(x)
        for isa in CPU_ISAS[CPU_ISAS.index(ext.detected_isa()):-1]:
            ext.set_isa_cap(isa)
            assert relative_error(linear(x), scalar) < 1e-5, isa
    finally:
        ext.set_isa_cap(previous)


@pytest.mark.parametrize("qtype", QTYPES)
def test_zero_tiny_and_huge_activations_keep_their_accuracy(isa, qtype):
    # the int8 path scales each 32-activation block by its own max: rows far from 1 in either direction, and a
    # row with a block of zeros next to blocks of very different sizes, keep their relative accuracy
    weight = quantize_weight(torch.randn(24, 128), qtype)
    x = torch.randn(4, 128)
    x[0, 0:32] = 0.0
    x[1] *= 1e-20
    x[2] *= 1e20
    x[3, 0:32] = 0.0
    x[3, 32:64] *= 1e-3
    x[3, 64:96] *= 1e3
    actual = make_quant_linear(weight)(x)
    expected = (x.double() @ weight.dequantize().double().T).float()
    for row in range(4):
        assert relative_error(actual[row], expected[row]) < 1e-5, (row, isa)


@pytest.mark.parametrize("qtype", QTYPES)
def test_non_finite_activations_give_non_finite_outputs(isa, qtype):
    # a NaN anywhere in a block (vector max may drop it) or an inf must reach every output of its row
    weight = quantize_weight(torch.randn(20, 64), qtype)
    x = torch.randn(1 + 64 + 1, 64)
    for pos in range(64):
        x[1 + pos, pos] = float("nan")
    x[65, 40] = float("inf")
    linear = make_quant_linear(weight)
    for y in (linear(x), torch.cat([linear(x[:33]), linear(x[33:])])):    # 66 rows: prefill; 33: the GEMV
        assert torch.isfinite(y[0]).all()
        assert not torch.isfinite(y[1:]).any(dim=1).any(), isa


def test_torch_path_without_the_extension_matches_reference_exactly():
    weight = quantize_weight(torch.randn(40, 64), "q4_0")
    bias = torch.randn(40)
    linear = make_quant_linear(weight, bias, use_cpp=False)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(3, 64).to(dtype)
        torch.testing.assert_close(linear(x), quant_linear_ref(x, weight, bias), rtol=0, atol=0)


def test_stream_bytes_reads_every_byte(ext):
    tensors = [torch.randint(0, 256, (n,), dtype=torch.uint8) for n in (8, 4096, 1 << 20, 24)]
    expected = sum(int(t.numpy().view(np.uint64).astype(object).sum()) for t in tensors) % (1 << 64)
    assert ext.stream_bytes(tensors) == float(expected)
    tensors[2][100] ^= 1                     # one changed bit in the middle changes the checksum
    assert ext.stream_bytes(tensors) != float(expected)


def test_bad_input_is_rejected_with_a_clear_message(ext):
    weight = quantize_weight(torch.randn(20, 96), "q4_1")
    linear = make_quant_linear(weight)
    with pytest.raises(ValueError, match=r"x must be \[num_rows, 96\]"):
        linear(torch.randn(2, 64))
    with pytest.raises(ValueError, match="x must be a CPU fp32 or bf16 tensor"):
        linear(torch.randn(2, 96).half())
    with pytest.raises(ValueError, match="x must be contiguous"):
        linear(torch.randn(96, 2).t())
    with pytest.raises(ValueError, match=r"bias must have shape \(20,\)"):
        make_quant_linear(weight, torch.randn(21))
    with pytest.raises(ValueError, match="qtype must be q4_0, q4_1 or q8_0"):
        ext.quant_linear(torch.randn(1, 96), weight.qs, weight.scales, weight.mins, "q5_0", 20, None)
    with pytest.raises(ValueError, match="mins must be given for q4_1 only"):
        ext.quant_linear(torch.randn(1, 96), weight.qs, weight.scales, None, "q4_1", 20, None)
    with pytest.raises(ValueError, match="out_features 40 does not fit 2 tiles"):
        ext.quant_linear(torch.randn(1, 96), weight.qs, weight.scales, weight.mins, "q4_1", 40, None)
