"""The SigLIP vision tower as Idefics3 / SmolVLM use it: patch embedding, learned positions, the ViT encoder,
a final LayerNorm; no class token and no pooling head.

Idefics3's variant takes images of any size up to `image_size` (a padded batch with a pixel mask): an
image of h x w real patches gets the positions of an h x w grid spread evenly over the learned
`num_patches_per_side`^2 table, and its padding patches are masked out as attention keys. A full-size
image gets the plain row-major positions 0 .. num_patches - 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sgnb.engine.models.vision_encoder import VisionConfig, VisionEncoder

# Idefics3VisionConfig's defaults, for the keys a checkpoint's vision_config leaves out
SIGLIP_DEFAULTS: dict[str, Any] = dict(hidden_size=1152, intermediate_size=3072, num_hidden_layers=12,
                                       num_attention_heads=16, num_channels=3, image_size=224, patch_size=32,
                                       layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh")


class SiglipEmbeddings(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.patch_size, self.num_patches_per_side = cfg.patch_size, cfg.num_patches_per_side
        self.patch_embedding = nn.Conv2d(cfg.num_channels, cfg.hidden_size, kernel_size=cfg.patch_size,
                                         stride=cfg.patch_size)
        self.position_embedding = nn.Embedding(cfg.num_patches_per_side ** 2, cfg.hidden_size)

    def positions(self, patch_mask: torch.Tensor) -> torch.Tensor:
        """patch_mask: [num_images, rows, cols] bool, True on real patches (a top-left block) -> position ids
        [num_images, rows * cols]: each real patch's fractional coordinates within its image, bucketed into
        the learned grid; 0 on padding."""
        side = self.num_patches_per_side
        # the same float32 arithmetic as the reference implementation, so that bucket edges fall alike
        edges = torch.arange(1 / side, 1.0, 1 / side, device=patch_mask.device)
        num_rows = patch_mask[:, :, 0].sum(dim=1)                      # real patch rows per image
        num_cols = patch_mask[:, 0, :].sum(dim=1)
        rows = torch.arange(patch_mask.shape[1], device=patch_mask.device, dtype=torch.float32)
        cols = torch.arange(patch_mask.shape[2], device=patch_mask.device, dtype=torch.float32)
        row_ids = torch.bucketize((rows[None] * (1.0 / num_rows)[:, None]).clamp(max=1 - 1e-6), edges, right=True)
        col_ids = torch.bucketize((cols[None] * (1.0 / num_cols)[:, None]).clamp(max=1 - 1e-6), edges, right=True)
        ids = row_ids[:, :, None] * side + col_ids[:, None, :]         # [num_images, rows, cols]
        return torch.where(patch_mask, ids, 0).flatten(1)

    def forward(self, pixel_values: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """pixel_values: [num_images, channels, height, width] -> [num_images, num_patches, hidden]."""
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        return patches + self.position_embedding(self.positions(patch_mask))


class SiglipVisionTower(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = SiglipEmbeddings(cfg)
        self.encoder = VisionEncoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> torch.Tensor:
        """pixel_values: [num_images, channels, height, width] (height and width multiples of the patch size,
        at most image_size); pixel_mask: [num_images, height, width], True on real pixels (None: all real).
        Returns the last hidden states [num_images, num_patches, hidden]."""
        num_images, _, height, width = pixel_values.shape
        p = self.cfg.patch_size
        if height % p or width % p or max(height, width) > self.cfg.image_size:
            raise ValueError(f"pixel_values: {height}x{width} images do not fit this vision tower "
                             f"(multiples of {p}, at most {self.cfg.image_size})")
        if pixel_mask is None:
            patch_mask = torch.ones(num_images, height // p, width // p, dtype=torch.bool, device=pixel_values.device)
        else:   # a patch is real when any of its pixels is
            patch_mask = pixel_mask.bool().view(num_images, height // p, p, width // p, p).any(dim=4).any(dim=2)
        x = self.embeddings(pixel_values, patch_mask)
        key_mask = None if bool(patch_mask.all()) else patch_mask.view(num_images, 1, 1, -1)
        return self.post_layernorm(self.encoder(x, key_mask)[0])
