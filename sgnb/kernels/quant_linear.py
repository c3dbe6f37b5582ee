"""Matmuls with packed 4/8-bit weights: `x @ weight.T (+ bias)` where weight is a `PackedWeight`.

    linear = make_quant_linear(packed, bias)     # chosen once, at load
    y = linear(x)                                # x: [num_rows, in_features] fp32|bf16 -> [num_rows, out_features]

Two implementations of one signature:
- `quant_linear_ref`: dequantize to fp32 (exactly gguf's values), cast to x's dtype, `F.linear`;
- the C++ kernel: on avx512_vnni CPUs (`csrc/quant_vnni.cpp`) int8 dot products straight on the packed quants,
  each activation taken as three int8 levels (fp32 accuracy), for any number of fp32 rows and up to 64 bf16
  ones; elsewhere (`csrc/quant_gemm.cpp`) 1-64 rows stream the packed weights once per call with fp32 FMAs. More
  rows there, and bf16 prefills, dequantize slabs of output rows and run them through `at::mm`.
Without the extension (or with use_cpp=False) the weight is dequantized once and served by `F.linear`.

Measured on the shared 2-core AMD EPYC (Zen 4), one pass over SmolLM2's 210 layer matmuls and its Q8_0 head
(92 MiB packed, 30 distinct copies of the layers, fp32, median): 1 row 3.5-5.0 ms, 72-97% of `stream_bytes` over
the same bytes; 8 rows 7.8-12.7 ms and 32 rows 30-45 ms, 1.6-2.5x the fp32-FMA path; 501 rows 1.3-2x the
dequantize-and-`at::mm` path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from sgnb.kernels.quant_weights import PackedWeight

QuantLinear = Callable[[torch.Tensor], torch.Tensor]


def quant_linear_ref(x: torch.Tensor, weight: PackedWeight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The reference: F.linear(x, dequantized weight in x's dtype, bias)."""
    return F.linear(x, weight.dequantize().to(x.dtype), bias.to(x.dtype) if bias is not None else None)


def make_quant_linear(weight: PackedWeight, bias: torch.Tensor | None = None, use_cpp: bool = True) -> QuantLinear:
    """x -> x @ weight.T + bias: the C++ kernel where use_cpp and the extension loads, else the torch path."""
    if bias is not None and tuple(bias.shape) != (weight.out_features,):
        raise ValueError(f"bias must have shape ({weight.out_features},), got {tuple(bias.shape)}")
    ext = None
    if use_cpp:
        from sgnb.kernels.cpu_extension import load_cpu_extension

        ext = load_cpu_extension()
    if ext is None:
        dense = weight.dequantize()       # [out, in] fp32, once

        def run_dense(x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, dense if x.dtype == dense.dtype else dense.to(x.dtype),
                            bias.to(x.dtype) if bias is not None else None)

        return run_dense
    run = ext.quant_linear
    qs, scales, mins, qtype, out_features = weight.qs, weight.scales, weight.mins, weight.qtype, weight.out_features
    return lambda x: run(x, qs, scales, mins, qtype, out_features, bias)
