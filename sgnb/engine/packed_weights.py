"""Which of a model's weights are packed into 4/8-bit blocks (`sgnb.kernels.quant_weights`), and how.

The loader (`sgnb.engine.weights`) fills the model, keeping a .gguf's Q4_0/Q4_1/Q8_0 matrices packed
(`quantization="gguf"`); `finish_packing` then applies the rest of the rules:

- "q8_0" | "q4_0" | "q4_1": every projection of the text layers (`CausalLM.projection_names`) is quantized
  from its dense weight, by GGUF's rounding rules;
- the LM head stays at 8 bits: q8_0 of it when it is dense or 4-bit (a 4-bit head keeps the top-1 token only
  ~77% of the time); a tied head keeps its dense embedding for the lookup, and runs on the packed copy;
- a packed projection keeps no dense copy (its parameter is left empty);
- without the C++ kernels, every packed weight is dequantized back into its parameter: dense weights with the
  packed values, today's path.

Packed weights are keyed by parameter name; `LM_HEAD` is the output projection's (tied or not).
"""

from __future__ import annotations

import torch

from sgnb.engine.models.base import LM_HEAD, CausalLM
from sgnb.kernels.quant_weights import QTYPES, PackedWeight, concat_rows, quantize_weight

HEAD_QTYPE = "q8_0"         # the LM head's packing when the layers' is 4-bit or the head is dense


def concat_parts(parts: list[torch.Tensor | PackedWeight]) -> torch.Tensor | PackedWeight:
    """A fused projection's shards (q/k/v, gate/up) in order: packed rows when all are packed with one qtype;
    else a dense concatenation (any packed part dequantized, without loss)."""
    if all(isinstance(p, PackedWeight) for p in parts) and len({p.qtype for p in parts}) == 1:
        return concat_rows(parts)
    return torch.cat([p.dequantize() if isinstance(p, PackedWeight) else p for p in parts], dim=0)


def free(param: torch.nn.Parameter) -> None:
    """Drop a packed projection's dense values (its packed form is what runs)."""
    param.data = torch.empty(0, dtype=param.dtype, device=param.device)


def finish_packing(model: CausalLM, packed: dict[str, PackedWeight], quantization: str | None,
                   keep_packed: bool) -> dict[str, PackedWeight]:
    """Apply the module's rules to a filled model and the packed weights the checkpoint came with; returns
    the packed weights the model runs on (empty when not `keep_packed`)."""
    params = dict(model.named_parameters())
    projections = model.projection_names()
    head = model.lm_head_weight
    is_head_tied = not any(params[name] is head for name in projections)   # the embedding, kept for lookups
    if quantization in QTYPES:
        for name in projections:
            if params[name] is not head and name not in packed:
                packed[name] = quantize_weight(params[name].detach(), quantization)
                free(params[name])
    head_packed = packed.get(LM_HEAD)
    if head_packed is None and quantization in QTYPES:
        packed[LM_HEAD] = quantize_weight(head.detach(), HEAD_QTYPE)
    elif head_packed is not None and head_packed.qtype != HEAD_QTYPE:
        packed[LM_HEAD] = quantize_weight(head_packed.dequantize(), HEAD_QTYPE)
    if LM_HEAD in packed and head.numel() and not is_head_tied:
        free(head)                              # an untied head quantized from its dense weight
    if keep_packed:
        return packed
    for name, weight in packed.items():
        target = head if name == LM_HEAD else params[name]
        if target.numel() == 0:                 # a tied head's embedding already holds dense values
            target.data = weight.dequantize().to(device=target.device, dtype=target.dtype)
    return {}
