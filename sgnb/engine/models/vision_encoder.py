"""The ViT encoder that the SigLIP and CLIP vision towers share.

Pre-norm layers of bidirectional multi-head attention and a two-layer MLP, over a batch of images
(or crops) at once: x [num_images, seq_len, hidden]. q/k/v are one fused projection (as in the Llama
layers), each projection runs through its `sgnb.kernels.linear` matmul (`run`, bound by the model's
`bind_kernels`), attention is torch's SDPA. Checkpoint names follow HF's (`encoder.layers.N.self_attn.*`,
`layer_norm1`, `mlp.fc1`, ...), so a model's `checkpoint_name_map` only rewrites the tower's prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "quick_gelu": _quick_gelu,
}


def activation(name: str, param: str = "hidden_act") -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation an HF config names (`param` is the config key, for the error)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"model config: {param} {name!r} is not supported "
                         f"(supported: {', '.join(sorted(ACTIVATIONS))})") from None


@dataclass(slots=True)
class VisionConfig:
    """A vision tower's shape, read from an HF `vision_config`."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    image_size: int
    patch_size: int
    num_channels: int
    layer_norm_eps: float
    hidden_act: str

    def __post_init__(self) -> None:
        for name in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "image_size", "patch_size",
                     "num_channels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"vision config: {name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"vision config: hidden_size ({self.hidden_size}) is not a multiple of "
                             f"num_attention_heads ({self.num_heads})")
        if self.image_size % self.patch_size:
            raise ValueError(f"vision config: image_size ({self.image_size}) is not a multiple of "
                             f"patch_size ({self.patch_size})")
        activation(self.hidden_act)

    @property
    def num_patches_per_side(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_dict(cls, cfg: dict[str, Any], defaults: dict[str, Any]) -> VisionConfig:
        """cfg: the HF `vision_config`; defaults: the tower's HF defaults for the keys a config may leave out."""
        cfg = {**defaults, **cfg}
        return cls(hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
                   num_layers=cfg["num_hidden_layers"], num_heads=cfg["num_attention_heads"],
                   image_size=cfg["image_size"], patch_size=cfg["patch_size"], num_channels=cfg["num_channels"],
                   layer_norm_eps=cfg["layer_norm_eps"], hidden_act=cfg["hidden_act"])


class VisionAttention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.hidden_size // cfg.num_heads
        self.qkv_proj = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.out_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """x: [num_images, seq_len, hidden]; key_mask: [num_images, 1, 1, seq_len] bool (True: attend), or None.
        The matmuls take rows: [num_images * seq_len, features]."""
        num_images, seq_len, hidden = x.shape
        qkv = self.qkv_proj.run(x.reshape(-1, hidden)).view(num_images, seq_len, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)       # each [num_images, num_heads, seq_len, head_dim]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        return self.out_proj.run(o.transpose(1, 2).reshape(-1, hidden)).view_as(x)


class VisionMLP(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.act = activation(cfg.hidden_act)
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., hidden], run as rows."""
        return self.fc2.run(self.act(self.fc1.run(x.reshape(-1, x.shape[-1])))).view_as(x)


class VisionEncoderLayer(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = VisionAttention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = VisionMLP(cfg)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), key_mask)
        return x + self.mlp(self.layer_norm2(x))


class VisionEncoder(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(VisionEncoderLayer(cfg) for _ in range(cfg.num_layers))

    def check_states(self, indices: Sequence[int], param: str) -> None:
        """ValueError naming `param` unless every index picks a hidden state (see `forward`)."""
        num_states = len(self.layers) + 1
        bad = [i for i in indices if not -num_states <= i < num_states]
        if bad or not indices:
            raise ValueError(f"model config: {param} {list(indices)} must pick hidden states of a "
                             f"{len(self.layers)}-layer vision tower (-{num_states} .. {num_states - 1})")

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None,
                states: Sequence[int] = (-1,)) -> list[torch.Tensor]:
        """x: [num_images, seq_len, hidden] -> the hidden states `states` picks, as HF numbers them (0: the
        input, i: after layer i, negative from the end); runs only the layers they need."""
        num_states = len(self.layers) + 1
        wanted = [i % num_states for i in states]
        kept = {}
        for i in range(max(wanted) + 1):
            if i:
                x = self.layers[i - 1](x, key_mask)
            if i in wanted:
                kept[i] = x
        return [kept[i] for i in wanted]
