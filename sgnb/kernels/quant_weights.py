"""Packed 4/8-bit weights: GGUF's Q4_0, Q4_1 and Q8_0 blocks, laid out for the CPU matmul kernels.

    packed = pack_gguf(raw, "q4_1", out_features, in_features)   # a GGUF tensor's blocks, lossless
    packed = quantize_weight(weight, "q8_0")                      # an fp32/bf16 [out, in] weight, GGUF's rounding
    packed.dequantize()                                           # fp32 [out, in], bit for bit gguf.dequantize

Every 32 consecutive weights of a row form a block with an fp16 scale `d` (and for Q4_1 an fp16 offset `m`):
Q4_0: w = d * (q - 8), q in 0..15; Q4_1: w = d * q + m, q in 0..15; Q8_0: w = d * q, q in -128..127.
The scales stay fp16 as in the file (exact, and as few bytes to stream as the GGUF itself).

Packed layout (what `csrc/quant_gemm.cpp` reads): output rows are grouped in tiles of 16 (the last tile padded
with zero rows), so that one SIMD lane of a 16-wide fp32 vector is one output row.
- `qs` uint8 [num_tiles, num_blocks, 256 (4-bit) | 512 (8-bit)]: for each block of a tile, the 16 rows' quants
  interleaved by pairs of columns. Byte p of 32-byte chunk c holds row p // 2:
  4-bit: low nibble = column 2c + p % 2, high nibble = column 16 + 2c + p % 2 (8 chunks);
  8-bit: the int8 of column 2c + p % 2 (16 chunks).
- `scales` fp16 [num_tiles, num_blocks, 16]: d of each row's block; `mins` likewise for Q4_1's m (else None).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

QTYPES = ("q4_0", "q4_1", "q8_0")
BLOCK_SIZE = 32            # weights per block (GGUF's QK4_0 = QK4_1 = QK8_0)
TILE_ROWS = 16             # output rows per packed tile: one fp32 SIMD lane each (AVX512)
# bytes one GGUF block takes in the file: fp16 d [+ fp16 m] + the quants
GGUF_BLOCK_BYTES = {"q4_0": 18, "q4_1": 20, "q8_0": 34}


def _check_qtype(qtype: str) -> None:
    if qtype not in QTYPES:
        raise ValueError(f"qtype must be one of {QTYPES}, got {qtype!r}")


def _check_in_features(in_features: int) -> None:
    if in_features <= 0 or in_features % BLOCK_SIZE:
        raise ValueError(f"in_features must be a positive multiple of {BLOCK_SIZE}, got {in_features}")


@dataclass(slots=True)
class PackedWeight:
    """A [out_features, in_features] weight in 4/8-bit blocks, packed for the kernels (layout: module doc)."""

    qtype: str
    out_features: int
    in_features: int
    qs: torch.Tensor                    # uint8 [num_tiles, num_blocks, 256 | 512]
    scales: torch.Tensor                # fp16 [num_tiles, num_blocks, TILE_ROWS]
    mins: torch.Tensor | None = None    # fp16 [num_tiles, num_blocks, TILE_ROWS], Q4_1 only

    def __post_init__(self) -> None:
        _check_qtype(self.qtype)
        _check_in_features(self.in_features)
        if self.out_features <= 0:
            raise ValueError(f"out_features must be positive, got {self.out_features}")
        shape = (self.num_tiles, self.in_features // BLOCK_SIZE)
        quant_bytes = 512 if self.qtype == "q8_0" else 256
        if self.qs.dtype != torch.uint8 or tuple(self.qs.shape) != (*shape, quant_bytes):
            raise ValueError(f"qs must be uint8 {(*shape, quant_bytes)}, got {self.qs.dtype} {tuple(self.qs.shape)}")
        for name, tensor in (("scales", self.scales), ("mins", self.mins)):
            if tensor is None:
                continue
            if tensor.dtype != torch.float16 or tuple(tensor.shape) != (*shape, TILE_ROWS):
                raise ValueError(f"{name} must be fp16 {(*shape, TILE_ROWS)}, "
                                 f"got {tensor.dtype} {tuple(tensor.shape)}")
        if (self.mins is not None) != (self.qtype == "q4_1"):
            raise ValueError(f"mins must be given for q4_1 and only for it (qtype {self.qtype!r})")

    @property
    def num_tiles(self) -> int:
        return -(-self.out_features // TILE_ROWS)

    @property
    def nbytes(self) -> int:
        """Bytes one pass over the weight streams (padding rows included)."""
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def tensors(self) -> list[torch.Tensor]:
        """The packed buffers."""
        return [self.qs, self.scales] + ([self.mins] if self.mins is not None else [])

    def dequantize(self) -> torch.Tensor:
        """fp32 [out_features, in_features], the same values as gguf.dequantize of the original blocks."""
        q, d, m = _unpack_rows(self)
        d = d.float().repeat_interleave(BLOCK_SIZE, dim=1)           # [out, in]
        if self.qtype == "q4_1":
            return d * q.float() + m.float().repeat_interleave(BLOCK_SIZE, dim=1)
        if self.qtype == "q4_0":
            return d * (q.to(torch.int8) - 8).float()
        return q.float() * d


def _pack_rows(qtype: str, q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None) -> PackedWeight:
    """PackedWeight from per-row quants q [out, in] (uint8 0..15 for 4-bit, int8 for Q8_0), d / m fp16 [out, nb]."""
    out_features, in_features = q.shape
    num_tiles, num_blocks = -(-out_features // TILE_ROWS), in_features // BLOCK_SIZE
    pad = num_tiles * TILE_ROWS - out_features

    def tiles(t: torch.Tensor) -> torch.Tensor:    # [out, ...] -> [num_tiles, TILE_ROWS, ...], zero padding rows
        t = torch.cat([t, t.new_zeros((pad, *t.shape[1:]))]) if pad else t
        return t.reshape(num_tiles, TILE_ROWS, *t.shape[1:])

    def block_major(t: torch.Tensor) -> torch.Tensor:   # [out, nb] -> [num_tiles, nb, TILE_ROWS]
        return tiles(t).transpose(1, 2).contiguous()

    # q as [tile, row, block, column] -> the columns split as (half, chunk, parity) / (chunk, parity)
    q = tiles(q.view(torch.uint8)).reshape(num_tiles, TILE_ROWS, num_blocks, BLOCK_SIZE)
    if qtype == "q8_0":
        q = q.reshape(num_tiles, TILE_ROWS, num_blocks, 16, 2)          # column = 2 * chunk + parity
        qs = q.permute(0, 2, 3, 1, 4).reshape(num_tiles, num_blocks, 512)
    else:
        q = q.reshape(num_tiles, TILE_ROWS, num_blocks, 2, 8, 2)        # column = 16 * half + 2 * chunk + parity
        q = q.permute(0, 2, 4, 1, 5, 3)                                 # [tile, block, chunk, row, parity, half]
        qs = (q[..., 0] | (q[..., 1] << 4)).reshape(num_tiles, num_blocks, 256)
    return PackedWeight(qtype, out_features, in_features, qs.contiguous(), block_major(d),
                        block_major(m) if m is not None else None)


def _unpack_rows(weight: PackedWeight) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The inverse of _pack_rows: q [out, in] (uint8; int8 for Q8_0), d and m fp16 [out, nb]."""
    num_tiles, num_blocks = weight.qs.shape[:2]
    out = weight.out_features

    def rows(t: torch.Tensor) -> torch.Tensor:          # [num_tiles, nb, TILE_ROWS] -> [out, nb]
        return t.transpose(1, 2).reshape(num_tiles * TILE_ROWS, num_blocks)[:out]

    if weight.qtype == "q8_0":
        q = weight.qs.reshape(num_tiles, num_blocks, 16, TILE_ROWS, 2).permute(0, 3, 1, 2, 4).view(torch.int8)
    else:
        packed = weight.qs.reshape(num_tiles, num_blocks, 8, TILE_ROWS, 2)
        q = torch.stack([packed & 0x0F, packed >> 4], dim=-1)          # [tile, block, chunk, row, parity, half]
        q = q.permute(0, 3, 1, 5, 2, 4)                                 # [tile, row, block, half, chunk, parity]
    q = q.reshape(num_tiles * TILE_ROWS, weight.in_features)[:out]
    return q, rows(weight.scales), rows(weight.mins) if weight.mins is not None else None


def pack_gguf(raw: np.ndarray | torch.Tensor, qtype: str, out_features: int, in_features: int) -> PackedWeight:
    """Pack a GGUF tensor's blocks (uint8 [out_features, in_features // 32 * block bytes]) without loss."""
    _check_qtype(qtype)
    _check_in_features(in_features)
    # numpy: a copy (a GGUF reader's memory map is read-only)
    raw = torch.from_numpy(np.array(raw)) if isinstance(raw, np.ndarray) else raw.contiguous()
    num_blocks, block_bytes = in_features // BLOCK_SIZE, GGUF_BLOCK_BYTES[qtype]
    if raw.dtype != torch.uint8 or raw.numel() != out_features * num_blocks * block_bytes:
        raise ValueError(f"raw must be uint8 with {out_features} x {num_blocks * block_bytes} bytes for a "
                         f"{qtype} [{out_features}, {in_features}] weight, got {raw.dtype} {tuple(raw.shape)}")
    blocks = raw.reshape(out_features, num_blocks, block_bytes)
    d = blocks[..., 0:2].contiguous().view(torch.float16).squeeze(-1)            # [out, nb]
    if qtype == "q8_0":
        return _pack_rows(qtype, blocks[..., 2:].contiguous().view(torch.int8).reshape(out_features, -1), d, None)
    m = blocks[..., 2:4].contiguous().view(torch.float16).squeeze(-1) if qtype == "q4_1" else None
    nibbles = blocks[..., block_bytes - 16:]                                      # [out, nb, 16]
    q = torch.cat([nibbles & 0x0F, nibbles >> 4], dim=-1)                         # column j, then j + 16
    return _pack_rows(qtype, q.reshape(out_features, in_features), d, m)


def quantize_weight(weight: torch.Tensor, qtype: str) -> PackedWeight:
    """Quantize an fp32/bf16 [out, in] weight to qtype by GGUF's own rounding rules (`gguf.quantize`)."""
    import gguf

    _check_qtype(qtype)
    if weight.dim() != 2 or not (weight.is_floating_point()):
        raise ValueError(f"weight must be a floating-point [out, in] matrix, got {weight.dtype} "
                         f"{tuple(weight.shape)}")
    out_features, in_features = weight.shape
    _check_in_features(in_features)
    raw = gguf.quantize(weight.detach().float().cpu().numpy(), gguf.GGMLQuantizationType[qtype.upper()])
    return pack_gguf(raw, qtype, out_features, in_features)


def concat_rows(parts: list[PackedWeight]) -> PackedWeight:
    """One packed weight whose rows are the parts' rows in order (a fused qkv or gate_up projection)."""
    if not parts:
        raise ValueError("parts must hold at least one PackedWeight")
    qtype, in_features = parts[0].qtype, parts[0].in_features
    if any(p.qtype != qtype or p.in_features != in_features for p in parts):
        raise ValueError("parts must share one qtype and in_features, got "
                         f"{[(p.qtype, p.in_features) for p in parts]}")
    unpacked = [_unpack_rows(p) for p in parts]
    q, d = torch.cat([u[0] for u in unpacked]), torch.cat([u[1] for u in unpacked])
    m = torch.cat([u[2] for u in unpacked]) if qtype == "q4_1" else None
    return _pack_rows(qtype, q, d, m)
