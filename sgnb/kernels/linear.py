"""The model's matmuls: `x @ weight.T (+ bias)`, chosen once per weight when the model is loaded.

    linear = make_linear(weight, bias, prepack=True)     # at load time
    y = linear(x)                                        # x: [num_tokens, in_features] -> [num_tokens, out_features]

Two implementations of one signature:
- `F.linear`, the reference, on any device;
- oneDNN with the weight prepacked into its blocked layout (CPU, fp32 / bf16). On a 2-core Sapphire
  Rapids, one pass over SmolLM2's weights takes 1.5x less time in bf16 at 1 to 128 rows (24 -> 16 ms
  at one row: unpacked bf16 runs slower than fp32), and 1.1-1.3x less in fp32 from 4 rows up; with
  fewer than 4 rows fp32 stays with `F.linear` (MKL's GEMV streams the weight faster there).
  Both keep the weight: the reference path still serves the small fp32 batches, and tests compare the two.

`bench/decode.py` times both over the whole model and takes the faster as its floor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Linear = Callable[[torch.Tensor], torch.Tensor]

# fp32 batches with fewer rows than this stay on F.linear (see the module docstring)
FP32_PACKED_MIN_ROWS = 4
# the row count oneDNN lays the packed weight out for; any row count runs on it
_PACK_ROWS_HINT = 32


def can_prepack(weight: torch.Tensor) -> bool:
    """Whether oneDNN can take this weight prepacked: a CPU fp32 / bf16 matrix, on a torch built with it."""
    return (weight.device.type == "cpu" and weight.dim() == 2 and weight.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def make_linear(weight: torch.Tensor, bias: torch.Tensor | None = None, prepack: bool = True) -> Linear:
    """x -> x @ weight.T + bias, by the faster implementation for weight's device and dtype."""
    if not (prepack and can_prepack(weight)):
        return lambda x: F.linear(x, weight, bias)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, _PACK_ROWS_HINT)
    run_packed = torch.ops.mkldnn._linear_pointwise
    if weight.dtype == torch.bfloat16:
        return lambda x: run_packed(x, packed, bias, "none", [], "")
    return lambda x: (run_packed(x, packed, bias, "none", [], "") if x.shape[0] >= FP32_PACKED_MIN_ROWS
                      else F.linear(x, weight, bias))
