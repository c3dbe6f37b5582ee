"""Packed 4/8-bit weights: lossless GGUF packing, GGUF's quantization, row concatenation, bad input."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from sgnb.kernels.quant_weights import (GGUF_BLOCK_BYTES, QTYPES, TILE_ROWS, PackedWeight, concat_rows, pack_gguf,
                                        quantize_weight)
from tests.kernels.gguf_cases import smollm2_gguf_tensors


def gguf_blocks(weight: np.ndarray, qtype: str) -> np.ndarray:
    return gguf.quantize(weight, gguf.GGMLQuantizationType[qtype.upper()])


def gguf_values(raw: np.ndarray, qtype: str) -> np.ndarray:
    return gguf.dequantize(raw, gguf.GGMLQuantizationType[qtype.upper()])


def random_weight(out_features: int, in_features: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((out_features, in_features)).astype(np.float32)
    weight[0, :32] = 0.0                             # an all-zero block: d = 0
    weight[-1, -32:] = np.abs(weight[-1, -32:])      # a block of one sign: Q4_1's offset m > 0
    return weight


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("shape", [(16, 32), (37, 96), (1, 64), (576, 576)])
def test_pack_gguf_dequantizes_bit_for_bit_like_gguf(qtype, shape):
    raw = gguf_blocks(random_weight(*shape), qtype)
    packed = pack_gguf(raw, qtype, *shape)
    values = packed.dequantize()
    assert values.dtype == torch.float32 and tuple(values.shape) == shape
    np.testing.assert_array_equal(values.numpy().view(np.uint32), gguf_values(raw, qtype).view(np.uint32))


def test_real_gguf_tensors_pack_without_loss():
    tensors = smollm2_gguf_tensors(["blk.0.attn_q.weight", "blk.0.ffn_down.weight", "token_embd.weight"])
    qtypes = set()
    for name, (raw, qtype, out_features, in_features) in tensors.items():
        if name == "token_embd.weight":                  # 49152 rows: the first 1000 are enough
            raw, out_features = raw[:1000], 1000
        values = pack_gguf(raw, qtype, out_features, in_features).dequantize().numpy()
        np.testing.assert_array_equal(values.view(np.uint32), gguf_values(raw, qtype).view(np.uint32), err_msg=name)
        qtypes.add(qtype)
    assert qtypes == {"q4_1", "q8_0"}


@pytest.mark.parametrize("qtype", QTYPES)
def test_nbytes_equals_the_gguf_blocks_when_rows_fill_tiles(qtype):
    raw = gguf_blocks(random_weight(64, 128), qtype)
    packed = pack_gguf(raw, qtype, 64, 128)
    assert packed.nbytes == raw.nbytes == 64 * 4 * GGUF_BLOCK_BYTES[qtype]
    assert sum(t.numel() * t.element_size() for t in packed.tensors()) == packed.nbytes
    padded = pack_gguf(raw[:17], qtype, 17, 128)         # 2 tiles: 15 zero rows of padding
    assert padded.nbytes == 2 * TILE_ROWS * 4 * GGUF_BLOCK_BYTES[qtype]


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantize_weight_follows_gguf_rounding(qtype, dtype):
    weight = torch.from_numpy(random_weight(40, 128, seed=1)).to(dtype)
    packed = quantize_weight(weight, qtype)
    assert (packed.qtype, packed.out_features, packed.in_features) == (qtype, 40, 128)
    expected = gguf_values(gguf_blocks(weight.float().numpy(), qtype), qtype)
    np.testing.assert_array_equal(packed.dequantize().numpy(), expected)


@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_weight_error_stays_within_half_a_step(qtype):
    weight = torch.from_numpy(random_weight(48, 256, seed=2))
    error = (quantize_weight(weight, qtype).dequantize() - weight).abs().reshape(48, 8, 32)
    blocks = weight.reshape(48, 8, 32)
    amax, span = blocks.abs().amax(-1), blocks.amax(-1) - blocks.amin(-1)
    # the step: Q8_0 amax / 127, Q4_1 (max - min) / 15; Q4_0 amax / 8, whose clipped top code errs a whole step
    step, allowed = {"q8_0": (amax / 127, 0.6), "q4_1": (span / 15, 0.6), "q4_0": (amax / 8, 1.01)}[qtype]
    assert (error.amax(-1) <= allowed * step + 1e-3 * amax).all()
    assert error.amax() > 0                              # it did quantize


@pytest.mark.parametrize("qtype", QTYPES)
def test_concat_rows_stacks_the_parts_rows_in_order(qtype):
    parts_np = [random_weight(n, 64, seed=n) for n in (9, 16, 23)]     # tile boundaries fall inside parts
    parts = [pack_gguf(gguf_blocks(w, qtype), qtype, w.shape[0], 64) for w in parts_np]
    fused = concat_rows(parts)
    assert (fused.qtype, fused.out_features, fused.in_features) == (qtype, 48, 64)
    torch.testing.assert_close(fused.dequantize(), torch.cat([p.dequantize() for p in parts]), rtol=0, atol=0)


def test_concat_rows_rejects_mixed_parts():
    a = quantize_weight(torch.randn(16, 64), "q4_0")
    with pytest.raises(ValueError, match="qtype and in_features"):
        concat_rows([a, quantize_weight(torch.randn(16, 64), "q8_0")])
    with pytest.raises(ValueError, match="qtype and in_features"):
        concat_rows([a, quantize_weight(torch.randn(16, 96), "q4_0")])
    with pytest.raises(ValueError, match="at least one"):
        concat_rows([])


def test_bad_input_is_rejected_with_the_parameter_named():
    with pytest.raises(ValueError, match="in_features must be a positive multiple of 32"):
        quantize_weight(torch.randn(8, 48), "q8_0")
    with pytest.raises(ValueError, match="qtype must be one of"):
        quantize_weight(torch.randn(8, 64), "q5_0")
    with pytest.raises(ValueError, match="weight must be a floating-point"):
        quantize_weight(torch.ones(8, 64, dtype=torch.int32), "q8_0")
    raw = gguf_blocks(random_weight(8, 64), "q4_1")
    with pytest.raises(ValueError, match="raw must be uint8 with 8 x 40 bytes"):
        pack_gguf(raw[:, :-1], "q4_1", 8, 64)
    with pytest.raises(ValueError, match="in_features must be"):
        pack_gguf(raw, "q4_1", 8, 40)
    packed = pack_gguf(raw, "q4_1", 8, 64)
    with pytest.raises(ValueError, match="mins must be given for q4_1"):
        PackedWeight("q4_1", 8, 64, packed.qs, packed.scales, None)
    with pytest.raises(ValueError, match="qs must be uint8"):
        PackedWeight("q4_1", 40, 64, packed.qs, packed.scales, packed.mins)
