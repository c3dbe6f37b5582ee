"""Matmuls with packed 4/8-bit weights: `x @ weight.T (+ bias)` where weight is a `PackedWeight`.

    linear = make_quant_linear(packed, bias)     # chosen once, at load
    y = linear(x)                                # x: [num_rows, in_features] fp32|bf16 -> [num_rows, out_features]

Two implementations of one signature:
- `quant_linear_ref`: dequantize to fp32 (exactly gguf's values), cast to x's dtype, `F.linear`;
- the C++ kernel (`csrc/quant_gemm.cpp`): 1-64 rows stream the packed weights once per call, accumulating in
  fp32 with per-block scales (fp32 accuracy for fp32 activations); more rows (prefill) dequantize slabs of
  output rows and run them through `at::mm`.
Without the extension (or with use_cpp=False) the weight is dequantized once and served by `F.linear`.

Measured on the shared 2-core Sapphire Rapids (one pass over SmolLM2's 210 layer matmuls, packed Q4_1 from the
GGUF, 66 MB; one thread, min of 15): 1 row 5.3-5.6 ms, about 60% of `stream_bytes` of the packed buffers and
3.5x faster than dense bf16 oneDNN (19.4 ms); 8 rows about equal to dense bf16 (22.5 vs 21.6 ms: compute-bound).
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
