"""Idefics3 and SmolVLM: a SigLIP vision tower, pixel shuffle, a linear connector and a Llama text model.

An image arrives as crops (the processor's row x column tiles plus the global image, each at most the
tower's image_size). Each crop's patch states [rows * cols, vision_hidden] are pixel-shuffled: every
scale_factor x scale_factor block of neighbouring patches becomes one row of scale_factor^2 * vision_hidden
features, so a crop gives rows * cols / scale_factor^2 image tokens, which the connector projects to the
text model's hidden size. The text model is `LlamaForCausalLM` itself (this class is one), so prefill,
extend and decode run its code; only the image rows of `input_embeds` come from here.
"""

from __future__ import annotations

import torch
from torch import nn

from sgnb.engine.model_config import ModelConfig
from sgnb.engine.models.base import VisionLanguageModel
from sgnb.engine.models.llama import LlamaForCausalLM
from sgnb.engine.models.siglip import SIGLIP_DEFAULTS, SiglipVisionTower
from sgnb.engine.models.vision_encoder import VisionConfig


def pixel_shuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    """[num_crops, side * side, dim] patch states (row-major) -> [num_crops, side^2 / scale^2, scale^2 * dim]:
    output row (i, j) is the scale x scale block of patches at rows i*scale.., columns j*scale.., its
    features ordered (row offset, column offset, dim)."""
    num_crops, seq_len, dim = x.shape
    side = int(seq_len ** 0.5)
    if side * side != seq_len or side % scale:
        raise ValueError(f"pixel shuffle: {seq_len} patches are not a square grid divisible by {scale}")
    x = x.view(num_crops, side // scale, scale, side // scale, scale, dim)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(num_crops, seq_len // scale ** 2, scale ** 2 * dim)


class Idefics3ForConditionalGeneration(VisionLanguageModel, LlamaForCausalLM):
    checkpoint_prefixes = {
        "model.text_model.": "",
        "model.connector.modality_projection.proj.": "connector.",
    }

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        raw = cfg.raw
        self.image_token_id = int(raw["image_token_id"])
        self.scale_factor = int(raw.get("scale_factor", 2))
        vision = VisionConfig.from_dict(raw.get("vision_config") or {}, SIGLIP_DEFAULTS)
        if self.scale_factor <= 0 or vision.num_patches_per_side % self.scale_factor:
            raise ValueError(f"model config: scale_factor ({self.scale_factor}) must divide the vision tower's "
                             f"{vision.num_patches_per_side} patches per side")
        self.vision_model = SiglipVisionTower(vision)
        self.connector = nn.Linear(vision.hidden_size * self.scale_factor ** 2, cfg.hidden_size, bias=False)
        self.bind_kernels(prepack=False)               # the Llama init bound only the text model's layers

    def encode_images(self, pixel_values: torch.Tensor,
                      pixel_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """pixel_values: one image's crops [num_crops, channels, height, width]; pixel_attention_mask:
        [num_crops, height, width], nonzero on real pixels (None: all). Returns
        [num_crops * tokens_per_crop, hidden], crop by crop in the processor's order."""
        weight = self.connector.weight
        pixels = pixel_values.reshape(-1, *pixel_values.shape[-3:]).to(device=weight.device, dtype=weight.dtype)
        mask = pixel_attention_mask
        if mask is not None:
            mask = mask.reshape(-1, *mask.shape[-2:]).to(weight.device)
        states = self.vision_model(pixels, mask)                  # [num_crops, num_patches, vision_hidden]
        shuffled = pixel_shuffle(states, self.scale_factor)      # [num_crops, tokens_per_crop, scale^2 * vision_hidden]
        return self.connector.run(shuffled.reshape(-1, shuffled.shape[-1]))
