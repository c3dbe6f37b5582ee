"""The Llama family: Llama 2/3, Mistral, Qwen2 and SmolLM2.

RMSNorm, RoPE (with scaling), grouped-query attention over the paged KV pool,
SwiGLU MLP, optional q/k/v bias (Qwen2) and tied embeddings. Q/K/V and gate/up
projections are fused into single matmuls when the weights are loaded; each projection
runs through the matmul `sgnb.kernels.linear` picked for it, or `sgnb.kernels.quant_linear`'s
for a packed weight (`bind_kernels`).

With the fused ops (`sgnb.kernels.fused_ops`, the C++ CPU kernels) the layers keep a residual stream:
each layer's first op adds the previous layer's output into it and normalizes (add_rms_norm), q/k rotate
and k/v reach the KV pool in one op (rope_store_kv), and the MLP's activation is one op (silu_mul).
Without them the layers run today's eager torch ops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from sgnb.engine.attention import AttentionContext, ForwardMode
from sgnb.engine.model_config import ModelConfig, rope_inv_freq
from sgnb.engine.models.base import LM_HEAD, CausalLM
from sgnb.engine.models.llama_decode_stack import build_decode_stack
from sgnb.kernels.linear import make_linear

if TYPE_CHECKING:
    from sgnb.kernels.fused_ops import FusedOps


# fp32 prefills of at least this many rows normalize with F.rms_norm: 2x faster than the fused LayerNorm
# below at 300-700 rows, but 3% slower over a whole decode step (its separate ops start cache-cold)
RMS_NORM_MIN_ROWS = 64


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps
        self.bind()

    def bind(self) -> None:
        """Derive the layer-norm weight from `weight`; call again after loading weights."""
        self.doubled_weight = torch.cat([self.weight.detach(), self.weight.detach()])     # [2 * dim]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = x.shape[-1]
        if x.dtype == torch.float32 and x.shape[0] >= RMS_NORM_MIN_ROWS:
            return F.rms_norm(x, (dim,), self.weight, self.eps)
        # bf16 / fp16: RMSNorm as torch's fused LayerNorm kernel over [x, -x]: that row has mean 0 and variance
        # mean(x^2), so its first half is x * rsqrt(mean(x^2) + eps) * weight, exactly. One fused kernel (fp32
        # statistics) instead of F.rms_norm's upcasting ops: 1 ms less per bf16 decode step, because every op
        # after a weight-streaming matmul starts with cold caches.
        return F.layer_norm(torch.cat([x, x.neg()], dim=-1), (2 * dim,), self.doubled_weight, None,
                            self.eps)[..., :dim]


class Rotary(nn.Module):
    """cos/sin tables for every position up to the context length (HF rotate-half layout)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        inv_freq = torch.tensor(rope_inv_freq(cfg), dtype=torch.float64)
        t = torch.arange(cfg.max_context_len, dtype=torch.float64)
        freqs = torch.outer(t, inv_freq)                       # [max_pos, head_dim // 2]
        self.register_buffer("cos", torch.cat([freqs, freqs], dim=-1).cos().float(), persistent=False)
        # rotate_half(x) * sin == cat(x2, x1) * cat(-sin, sin): the sign lives in the table, not in a neg per layer
        self.register_buffer("sin", torch.cat([-freqs, freqs], dim=-1).sin().float(), persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, signed sin for the batch's positions: [num_tokens, 1, head_dim], computed once per forward."""
        return self.cos[positions].unsqueeze(1).to(dtype), self.sin[positions].unsqueeze(1).to(dtype)


class RopeTables(NamedTuple):
    """What the fused path's rope_store_kv reads: the batch's positions [num_tokens] and the whole cos and
    signed sin tables [max_pos, head_dim] (`Rotary`)."""

    positions: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor


def apply_rotary_(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """x * cos + (-x2, x1) * sin, the rotate-half layout, written into `out` (default: x itself, in place;
    either may be a strided view).

    x, out: [num_tokens, num_heads, head_dim]. Both operands are fresh tensors before the write, so
    writing the result over x is safe.
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.addcmul(x * cos, torch.cat((x2, x1), dim=-1), signed_sin, out=x if out is None else out)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_id: int):
        super().__init__()
        self.layer_id = layer_id
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_size = self.num_heads * self.head_dim
        self.kv_size = self.num_kv_heads * self.head_dim
        self.qkv_proj = nn.Linear(cfg.hidden_size, self.q_size + 2 * self.kv_size, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(self.q_size, cfg.hidden_size, bias=False)
        self.fused: FusedOps | None = None                     # set by bind_kernels

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | RopeTables,
                ctx: AttentionContext) -> torch.Tensor:
        """rope: (cos, signed sin) of the batch's positions [num_tokens, 1, head_dim]; `RopeTables` with the
        fused ops."""
        qkv = self.qkv_proj.run(x)                             # [num_tokens, q_size + 2 * kv_size]
        if self.fused is not None:
            return self.o_proj.run(self.attend_fused(qkv, rope, ctx).reshape(-1, self.q_size))
        qk, v = qkv.split([self.q_size + self.kv_size, self.kv_size], dim=-1)
        # q and k heads rotate together, in place: [num_tokens, num_heads + num_kv_heads, head_dim]. New K
        # and V thus stay side by side in each row of qkv, as the KV pool keeps them (one copy stores both)
        qk = self.position_qk(qk.view(-1, self.num_heads + self.num_kv_heads, self.head_dim), rope)
        q, k = qk.split([self.num_heads, self.num_kv_heads], dim=1)
        v = v.view(-1, self.num_kv_heads, self.head_dim)
        o = ctx.attend(self.layer_id, q, k, v)                 # [num_tokens, num_heads, head_dim]
        return self.o_proj.run(o.reshape(-1, self.q_size))

    def attend_fused(self, qkv: torch.Tensor, rope: RopeTables, ctx: AttentionContext) -> torch.Tensor:
        """The fused path: q/k rotated in place and k/v stored into the pool by one op, then attention over
        the pool. Returns [num_tokens, num_heads, head_dim]."""
        heads = qkv.view(-1, self.num_heads + 2 * self.num_kv_heads, self.head_dim)
        self.normalize_qk_(heads[:, :self.num_heads + self.num_kv_heads])
        self.fused.rope_store_kv(qkv, rope.positions, rope.cos, rope.sin, self.num_heads, self.num_kv_heads,
                                 ctx.k_buffers[self.layer_id], ctx.v_buffers[self.layer_id], ctx.out_cache_loc)
        q, k, v = heads.split([self.num_heads, self.num_kv_heads, self.num_kv_heads], dim=1)
        return ctx.attend_stored(self.layer_id, q, k, v)

    def position_qk(self, qk: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Position-encode the q and k heads [num_tokens, num_heads + num_kv_heads, head_dim], a view of
        the projection's output, in place (so new K stays next to V); returns that view."""
        return apply_rotary_(qk, *rope)

    def normalize_qk_(self, qk: torch.Tensor) -> None:
        """The fused path's hook before RoPE, in place on the q and k heads (a family's per-head norms)."""


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_up_proj = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.fused: FusedOps | None = None                     # set by bind_kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = self.gate_up_proj.run(x)                     # [num_tokens, 2 * intermediate]
        if self.fused is not None:
            return self.down_proj.run(self.fused.silu_mul(gate_up))
        gate, up = gate_up.chunk(2, dim=-1)
        return self.down_proj.run(F.silu(gate).mul_(up))


class DecoderLayer(nn.Module):
    attention_type: ClassVar[type[Attention]] = Attention

    def __init__(self, cfg: ModelConfig, layer_id: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = self.attention_type(cfg, layer_id)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, rope, ctx):
        # modules are called through .forward: the hot path skips nn.Module's hook dispatch
        x = x + self.self_attn.forward(self.input_layernorm.forward(x), rope, ctx)
        return x + self.mlp.forward(self.post_attention_layernorm.forward(x))

    def forward_fused(self, x: torch.Tensor, residual: torch.Tensor | None, rope: RopeTables,
                      ctx: AttentionContext, fused: FusedOps) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused path: x is the previous layer's output [num_tokens, hidden] (the embeddings for the first
        layer, whose residual is None); it joins the residual stream here. Returns (output, residual)."""
        norm1, norm2 = self.input_layernorm, self.post_attention_layernorm
        if residual is None:
            residual, h = x, fused.rms_norm(x, norm1.weight, norm1.eps)   # x becomes the stream (updated in place)
        else:
            h = fused.add_rms_norm(x, residual, norm1.weight, norm1.eps)  # residual += x; h = norm(residual)
        h = fused.add_rms_norm(self.self_attn.forward(h, rope, ctx), residual, norm2.weight, norm2.eps)
        return self.mlp.forward(h), residual


class LlamaForCausalLM(CausalLM):
    """Token ids in, logits of the selected rows out; all K/V go through the paged pool."""

    layer_type: ClassVar[type[DecoderLayer]] = DecoderLayer

    # HF checkpoint names whose tensors are concatenated into one fused parameter
    fused_params = {
        "q_proj": ("qkv_proj", 0), "k_proj": ("qkv_proj", 1), "v_proj": ("qkv_proj", 2),
        "gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1),
    }

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(self.layer_type(cfg, i) for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = Rotary(cfg)
        self.lm_head = None if cfg.tie_word_embeddings else nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.bind_kernels(prepack=False)

    @property
    def lm_head_weight(self) -> torch.Tensor:
        return self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def build_buffers(self, device: str | torch.device) -> None:
        self.rotary = Rotary(self.cfg).to(device)

    def bind_kernels(self, prepack: bool, fused: FusedOps | None = None) -> None:
        """Give every projection its `run` (`sgnb.kernels.linear`, or `quant_linear` for a packed weight),
        every norm its derived weight and the layers the fused ops (None: eager torch); call again once
        weights are loaded."""
        packed = self.packed_weights
        if packed:
            from sgnb.kernels.quant_linear import make_quant_linear
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and f"{name}.weight" in packed:
                module.run = make_quant_linear(packed[f"{name}.weight"], module.bias)
            elif isinstance(module, nn.Linear):
                module.run = make_linear(module.weight, module.bias, prepack)
            elif isinstance(module, RMSNorm):
                module.bind()
            elif isinstance(module, (Attention, MLP)):
                module.fused = fused
        self.fused = fused
        head = packed.get(LM_HEAD)
        self.logits_run = (make_linear(self.lm_head_weight, None, prepack) if head is None
                           else make_quant_linear(head))
        self.decode_stack = build_decode_stack(self)

    def projection_names(self) -> list[str]:
        names = [f"layers.{name}.weight" for name, module in self.layers.named_modules()
                 if isinstance(module, nn.Linear)]
        return names + ([] if self.lm_head is None else ["lm_head.weight"])

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: AttentionContext,
                logit_rows: torch.Tensor | None = None, input_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, positions: [num_tokens]; logit_rows: rows to project ([num_rows]), None = all;
        input_embeds: [num_tokens, hidden] instead of the embeddings of input_ids (a vision-language model's
        image rows). Returns fp32 logits [num_rows, vocab_size].
        """
        x = self.embed_tokens(input_ids) if input_embeds is None else input_embeds   # [num_tokens, hidden]
        if self.fused is not None:
            return self.forward_fused(x, positions, ctx, logit_rows)
        rope = self.rotary(positions, x.dtype)
        for layer in self.layers:
            x = layer.forward(x, rope, ctx)
        if logit_rows is not None:
            x = x[logit_rows]
        return self.logits_run(self.norm(x)).float()

    def forward_fused(self, x: torch.Tensor, positions: torch.Tensor, ctx: AttentionContext,
                      logit_rows: torch.Tensor | None) -> torch.Tensor:
        """`forward` on the fused ops, from the input embeddings x [num_tokens, hidden] (a fresh tensor: it
        becomes the residual stream, updated in place)."""
        rope = RopeTables(positions, self.rotary.cos, self.rotary.sin)
        if self.decode_stack is not None and ctx.mode is ForwardMode.DECODE and ctx.ops.name == "cpu":
            # the same layers, one C++ call (`llama_decode_stack`); with every row projected, the LM head too
            args = (x, positions, rope.cos, rope.sin, ctx.k_buffers, ctx.v_buffers, ctx.out_cache_loc,
                    ctx.kv_indptr, ctx.kv_indices, ctx.sm_scale)
            if logit_rows is None and self.decode_stack.has_lm_head:
                return self.decode_stack.forward_logits(*args).float()
            x, residual = self.decode_stack.forward(*args)
        else:
            residual = None
            for layer in self.layers:
                x, residual = layer.forward_fused(x, residual, rope, ctx, self.fused)
        if logit_rows is not None:
            x, residual = x[logit_rows], residual[logit_rows]
        return self.logits_run(self.fused.add_rms_norm(x, residual, self.norm.weight, self.norm.eps)).float()

    def checkpoint_name_map(self, name: str) -> tuple[str, int | None] | None:
        if "rotary_emb" in name:
            return None                  # RoPE tables: `build_buffers` computes them
        name = name.removeprefix("model.")
        if name.startswith("lm_head."):
            return None if self.lm_head is None else (name, None)   # tied: the checkpoint may carry a copy
        for hf, (ours, shard) in self.fused_params.items():
            if f".{hf}." in name:
                return name.replace(f".{hf}.", f".{ours}."), shard
        return name, None
