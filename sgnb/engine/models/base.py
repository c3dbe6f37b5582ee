"""The model interface: what every architecture family gives the engine.

The weight loader (`sgnb.engine.weights`) and the model runner talk to a model only through
`CausalLM`; nothing outside `sgnb/engine/models/` knows a family's layers. A family is one
module here plus one line in the registry (`sgnb.engine.models`). Its life in the engine:

    cfg = Family.config_type.from_dict(hf_config)
    with torch.device("meta"):
        model = Family(cfg)                    # parameters without storage
    model = model.to_empty(device=device)
    for hf_name, tensor in checkpoint:
        target = model.checkpoint_name_map(hf_name)   # None: a tensor the model does not load
        ...                                    # copied (or concatenated into a fused parameter)
    model.packed_weights = ...                 # projections packed in 4/8-bit blocks (`projection_names`)
    model.build_buffers(device)                # tables it computes itself (RoPE cos/sin)
    model.bind_kernels(prepack, fused)         # matmul per projection, derived norm weights, fused ops
    logits = model(input_ids, positions, ctx, logit_rows)

A vision-language model (`VisionLanguageModel`) also turns an image's pixels into rows of input embeddings
(`encode_images`); the runner scatters them into the token embeddings (`embed_tokens`) at the image's
placeholder positions and passes the result as `input_embeds`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from sgnb.engine.attention import AttentionContext
from sgnb.engine.model_config import ModelConfig

if TYPE_CHECKING:
    from sgnb.kernels.fused_ops import FusedOps
    from sgnb.kernels.quant_weights import PackedWeight


# the `packed_weights` key of the output projection (tied to the embedding or not)
LM_HEAD = "lm_head"


class CausalLM(nn.Module):
    """A decoder-only language model whose attention goes through the engine's paged KV pool."""

    # the config class `from_dict` builds for this family (a ModelConfig subclass may add fields)
    config_type: ClassVar[type[ModelConfig]] = ModelConfig
    # whether the model takes images (a `VisionLanguageModel`)
    is_multimodal: ClassVar[bool] = False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        # parameter name (or LM_HEAD, the output projection) -> its packed weight, which `bind_kernels` runs
        # instead of the parameter (left empty); set by the loader (`sgnb.engine.packed_weights`)
        self.packed_weights: dict[str, PackedWeight] = {}

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: AttentionContext,
                logit_rows: torch.Tensor | None = None, input_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, positions: [num_tokens]; logit_rows: rows to project ([num_rows]), None = all;
        input_embeds: [num_tokens, hidden] used instead of the embeddings of input_ids when given.

        Every layer calls `ctx.attend(layer_id, q, k, v)` (or `attend_stored`) once. Returns fp32 logits
        [num_rows, vocab_size].
        """
        raise NotImplementedError

    def checkpoint_name_map(self, name: str) -> tuple[str, int | None] | None:
        """An HF checkpoint tensor name -> (our parameter name, shard index within a fused parameter),
        or None for a tensor the model does not load (rotary buffers, the copy of a tied LM head)."""
        raise NotImplementedError

    def build_buffers(self, device: str | torch.device) -> None:
        """Compute the non-persistent tables (no checkpoint holds them) on `device`; the loader calls this
        after `to_empty`, which leaves buffers built on the meta device without values."""

    def bind_kernels(self, prepack: bool, fused: FusedOps | None = None) -> None:
        """Attach the kernels each layer runs (`sgnb.kernels.linear` matmuls, or `sgnb.kernels.quant_linear`
        ones for `packed_weights`; derived norm weights); called again once weights are loaded.
        prepack: prepacked CPU matmul weights where faster. fused: the fused decode-step ops
        (`sgnb.kernels.fused_ops`) the layers run, None for their eager torch ops."""
        raise NotImplementedError

    def projection_names(self) -> list[str]:
        """Names of the parameters used only as matmul weights (the text layers' projections, an untied LM
        head): what quantization may pack."""
        raise NotImplementedError

    @property
    def lm_head_weight(self) -> torch.Tensor:
        """[vocab_size, hidden] weight of the output projection (the embedding itself when tied)."""
        raise NotImplementedError


class VisionLanguageModel(CausalLM):
    """A `CausalLM` that also reads images: each image's placeholder tokens (`image_token_id` in the prompt)
    become rows of image embeddings in its `input_embeds`.

    Besides the `CausalLM` interface it has `image_token_id: int` (the placeholder token) and
    `embed_tokens`, a callable `input_ids [num_tokens] -> [num_tokens, hidden]` (the token embedding).
    """

    is_multimodal: ClassVar[bool] = True
    image_token_id: int
    # HF checkpoint name prefix -> ours: a name is rewritten by the first prefix it starts with, then mapped by
    # the text family's `checkpoint_name_map` (a family lists its text-model class after this one in its bases)
    checkpoint_prefixes: ClassVar[dict[str, str]] = {}

    def checkpoint_name_map(self, name: str) -> tuple[str, int | None] | None:
        for hf, ours in self.checkpoint_prefixes.items():
            if name.startswith(hf):
                name = ours + name.removeprefix(hf)
                break
        return super().checkpoint_name_map(name)

    def encode_images(self, pixel_values: torch.Tensor, **extras: torch.Tensor) -> torch.Tensor:
        """One image's preprocessed pixels ([num_crops, channels, height, width], the family's processor
        output for that image; `extras` its other tensors, e.g. Idefics3's `pixel_attention_mask`) ->
        its embedding rows [num_image_tokens, hidden], in the order its placeholder rows appear in the prompt."""
        raise NotImplementedError
