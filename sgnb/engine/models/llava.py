"""LLaVA: a CLIP vision tower, a two-layer MLP projector and a Llama text model.

An image's features are the tower's hidden states of `vision_feature_layer` (one layer, or several
concatenated along the features), without the class token under the "default"
`vision_feature_select_strategy` ("full" keeps it): one image token per patch. The projector maps them to
the text model's hidden size. The text model is `LlamaForCausalLM` itself (this class is one).
"""

from __future__ import annotations

import torch
from torch import nn

from sgnb.engine.model_config import ModelConfig
from sgnb.engine.models.base import VisionLanguageModel
from sgnb.engine.models.clip_vision import CLIP_DEFAULTS, ClipVisionTower
from sgnb.engine.models.llama import LlamaForCausalLM
from sgnb.engine.models.vision_encoder import VisionConfig, activation

SELECT_STRATEGIES = ("default", "full")


class LlavaProjector(nn.Module):
    def __init__(self, in_features: int, hidden: int, bias: bool, act: str):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, hidden, bias=bias)
        self.act = activation(act, "projector_hidden_act")
        self.linear_2 = nn.Linear(hidden, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [num_tokens, in_features] -> [num_tokens, hidden]."""
        return self.linear_2.run(self.act(self.linear_1.run(x)))


class LlavaForConditionalGeneration(VisionLanguageModel, LlamaForCausalLM):
    # transformers 5 saves `model.language_model.*`; llava-hf checkpoints (and transformers' own save of
    # this model) use `language_model.model.*` and a tower under `vision_model.`
    checkpoint_prefixes = {
        "model.language_model.": "",
        "language_model.model.": "",
        "language_model.lm_head.": "lm_head.",
        "model.vision_tower.vision_model.": "vision_tower.",
        "vision_tower.vision_model.": "vision_tower.",
    }

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        raw = cfg.raw
        # LlavaConfig saves `image_token_index` (32000 by default)
        self.image_token_id = int(raw.get("image_token_index", raw.get("image_token_id", 32000)))
        layers = raw.get("vision_feature_layer", -2)
        self.feature_layers = [layers] if isinstance(layers, int) else list(layers)
        self.select_strategy = raw.get("vision_feature_select_strategy", "default")
        if self.select_strategy not in SELECT_STRATEGIES:
            raise ValueError(f"model config: vision_feature_select_strategy {self.select_strategy!r} is not "
                             f"supported (supported: {', '.join(SELECT_STRATEGIES)})")
        vision = VisionConfig.from_dict(raw.get("vision_config") or {}, CLIP_DEFAULTS)
        self.vision_tower = ClipVisionTower(vision)
        self.vision_tower.encoder.check_states(self.feature_layers, "vision_feature_layer")
        self.multi_modal_projector = LlavaProjector(
            vision.hidden_size * len(self.feature_layers), cfg.hidden_size,
            bias=bool(raw.get("multimodal_projector_bias", True)), act=raw.get("projector_hidden_act", "gelu"))
        self.bind_kernels(prepack=False)               # the Llama init bound only the text model's layers

    def checkpoint_name_map(self, name: str) -> tuple[str, int | None] | None:
        target = super().checkpoint_name_map(name)
        if target is not None and (target[0].startswith("vision_tower.post_layernorm.")
                                   or target[0].endswith("position_ids")):
            return None                  # the final LayerNorm LLaVA's features skip; CLIP's position-id table
        return target

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: [num_images, channels, image_size, image_size] (one image: num_images 1) ->
        [num_images * num_patches (+1 each under "full"), hidden], image by image, patches row-major."""
        weight = self.multi_modal_projector.linear_1.weight
        pixels = pixel_values.reshape(-1, *pixel_values.shape[-3:]).to(device=weight.device, dtype=weight.dtype)
        states = self.vision_tower(pixels, self.feature_layers)
        if self.select_strategy == "default":
            states = [s[:, 1:] for s in states]                   # drop the class token
        features = torch.cat(states, dim=-1)                     # [num_images, tokens_per_image, in_features]
        return self.multi_modal_projector(features.reshape(-1, features.shape[-1]))
