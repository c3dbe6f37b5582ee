"""The CLIP vision tower as LLaVA uses it: a class token plus patch embeddings, learned positions, a
LayerNorm before the ViT encoder, and the encoder's hidden states (LLaVA projects an inner layer's, so
the tower's final LayerNorm and pooling are never used).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sgnb.engine.models.vision_encoder import VisionConfig, VisionEncoder

# CLIPVisionConfig's defaults, for the keys a checkpoint's vision_config leaves out
CLIP_DEFAULTS: dict[str, Any] = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                     num_attention_heads=12, num_channels=3, image_size=224, patch_size=32,
                                     layer_norm_eps=1e-5, hidden_act="quick_gelu")


class ClipEmbeddings(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.empty(cfg.hidden_size))
        self.patch_embedding = nn.Conv2d(cfg.num_channels, cfg.hidden_size, kernel_size=cfg.patch_size,
                                         stride=cfg.patch_size, bias=False)
        self.position_embedding = nn.Embedding(cfg.num_patches_per_side ** 2 + 1, cfg.hidden_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: [num_images, channels, image_size, image_size] -> [num_images, 1 + num_patches, hidden]
        (the class token first)."""
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight


class ClipVisionTower(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = ClipEmbeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)   # HF's spelling
        self.encoder = VisionEncoder(cfg)

    def forward(self, pixel_values: torch.Tensor, states: Sequence[int]) -> list[torch.Tensor]:
        """pixel_values: [num_images, channels, image_size, image_size] -> the encoder's hidden states that
        `states` picks (0: after the pre-LayerNorm, i: after layer i, negative from the end), each
        [num_images, 1 + num_patches, hidden]."""
        size = self.cfg.image_size
        if tuple(pixel_values.shape[-2:]) != (size, size):
            raise ValueError(f"pixel_values: {tuple(pixel_values.shape[-2:])} images, this vision tower "
                             f"takes {size}x{size}")
        return self.encoder(self.pre_layrnorm(self.embeddings(pixel_values)), states=states)
