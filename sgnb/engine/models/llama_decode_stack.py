"""A Llama model's decode steps in one C++ call (`csrc/decode_stack.cpp`), where the model allows it.

    stack = build_decode_stack(model)       # None unless every layer is plain Llama on packed weights
    x, residual = stack.forward(x, positions, cos, sin, k_buffers, v_buffers, out_cache_loc, kv_indptr,
                                kv_indices, sm_scale)
    logits = stack.forward_logits(...)      # the same, then the final norm and the packed LM head

The stack runs exactly `DecoderLayer.forward_fused` per layer (the same C++ ops in the same order, so the
same bits) without a Python call per op, in one parallel region per step where the int8 path serves
(`csrc/decode_stack.cpp` says why): on a 2-core CPU a packed decode step at batch 1 spends more time in
those calls than in the layers' non-matmul work. Families that change a layer (Qwen3's q/k norms) or dense
projections keep the per-layer path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sgnb.engine.models.llama import LlamaForCausalLM


def build_decode_stack(model: LlamaForCausalLM) -> Any | None:
    """The extension's `DecodeStack` over the model's layers, or None where a layer needs the Python path."""
    from sgnb.engine.models.base import LM_HEAD
    from sgnb.engine.models.llama import MLP, Attention, DecoderLayer
    from sgnb.kernels.cpu_extension import load_cpu_extension

    if model.fused is None or model.fused.name != "cpp":
        return None
    ext = load_cpu_extension()
    if ext is None:
        return None
    packed, layers = model.packed_weights, []
    for i, layer in enumerate(model.layers):
        attn, mlp = layer.self_attn, layer.mlp
        is_plain = (type(layer).forward_fused is DecoderLayer.forward_fused
                    and type(attn).forward is Attention.forward and type(attn).attend_fused is Attention.attend_fused
                    and type(attn).normalize_qk_ is Attention.normalize_qk_ and type(mlp).forward is MLP.forward)
        projections = {"qkv": (f"layers.{i}.self_attn.qkv_proj.weight", attn.qkv_proj),
                       "o": (f"layers.{i}.self_attn.o_proj.weight", attn.o_proj),
                       "gate_up": (f"layers.{i}.mlp.gate_up_proj.weight", mlp.gate_up_proj),
                       "down": (f"layers.{i}.mlp.down_proj.weight", mlp.down_proj)}
        if not is_plain or any(name not in packed for name, _ in projections.values()):
            return None
        linears = {key: ext.PackedLinear(packed[name].qs, packed[name].scales, packed[name].mins, packed[name].qtype,
                                         packed[name].out_features, module.bias)
                   for key, (name, module) in projections.items()}
        layers.append(ext.LayerWeights(layer.input_layernorm.weight, layer.post_attention_layernorm.weight,
                                       **linears))
    cfg = model.cfg
    head = packed.get(LM_HEAD)             # a packed LM head joins the stack (forward_logits); a dense one does not
    lm_head = None if head is None else ext.PackedLinear(head.qs, head.scales, head.mins, head.qtype,
                                                         head.out_features, None)
    return ext.DecodeStack(layers, cfg.rms_norm_eps, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                           final_norm=None if head is None else model.norm.weight, lm_head=lm_head)
