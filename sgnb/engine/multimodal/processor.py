"""The image processor interface: a prompt with image placeholders plus its images -> the expanded token ids
and, per image, the pixels its model encodes and where its embedding rows sit.

Each family's processor matches its transformers processor (PIL backend) exactly: the same expanded ids and
the same `pixel_values`. A family supplies `process(image)`: the text that replaces the image's placeholder
and its pixels; everything else (placeholder counting, text- or token-level expansion, spans, hashes) is here.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sgnb.engine.multimodal.image_hash import image_hash, pad_id
from sgnb.engine.multimodal.image_input import load_image

if TYPE_CHECKING:
    import torch
    from PIL import Image

# HF `architectures` name -> "module:class" of its processor
PROCESSORS = {
    "Idefics3ForConditionalGeneration": "sgnb.engine.multimodal.idefics3_processor:Idefics3ImageProcessor",
    "SmolVLMForConditionalGeneration": "sgnb.engine.multimodal.idefics3_processor:Idefics3ImageProcessor",
    "LlavaForConditionalGeneration": "sgnb.engine.multimodal.llava_processor:LlavaImageProcessor",
}


@dataclass(slots=True)
class ImageItem:
    """One image of a prompt. `spans` are (start, length) runs of its embedding rows in the expanded ids
    (those positions hold the image token id there); their total is the number of rows that
    `encode_images(pixel_values, **extras)` returns, in the same order."""

    hash: int
    pad_id: int
    pixel_values: torch.Tensor          # [num_crops, 3, height, width] float32
    extras: dict[str, Any]
    spans: list[tuple[int, int]]

    @property
    def num_image_tokens(self) -> int:
        return sum(length for _, length in self.spans)


@dataclass(slots=True)
class ExpandedPrompt:
    """A prompt's ids with every image placeholder expanded, and its images in prompt order."""

    input_ids: list[int]
    items: list[ImageItem] = field(default_factory=list)


@dataclass(slots=True)
class ProcessedImage:
    """What a family makes of one image: the text replacing its placeholder and the model's inputs."""

    replacement: str                    # holds the image token once per embedding row
    pixel_values: torch.Tensor          # [num_crops, 3, height, width] float32
    extras: dict[str, Any] = field(default_factory=dict)


class ImageProcessor(ABC):
    """Expands image placeholders in prompts for one model family.

    `image_token` is the placeholder text a prompt holds once per image (and its expansion once per
    embedding row); `image_token_id` its token id.
    """

    image_token: str
    image_token_id: int

    def __init__(self, tokenizer: Any, image_token: str) -> None:
        self.tokenizer = tokenizer
        self.image_token = image_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no image token {image_token!r}")

    @abstractmethod
    def process(self, image: Image.Image) -> ProcessedImage:
        """One RGB image -> its placeholder's replacement text and its pixels."""

    def expand(self, prompt: str | list[int], images: list[Any]) -> ExpandedPrompt:
        """Expand each image placeholder of `prompt` (text, or token ids) for the image in that place.

        A text prompt is expanded as text and then tokenized, as the HF processor does; an ids prompt is
        expanded token by token. Images are anything `load_image` reads. More or fewer images than
        placeholders is a `ValueError` naming both counts.
        """
        is_text = isinstance(prompt, str)
        num_placeholders = prompt.count(self.image_token) if is_text else list(prompt).count(self.image_token_id)
        if num_placeholders != len(images):
            raise ValueError(f"the prompt has {num_placeholders} image placeholders ({self.image_token!r}) "
                             f"but {len(images)} images were given")
        pictures = [load_image(image) for image in images]
        processed = [self.process(picture) for picture in pictures]
        if is_text:
            pieces = prompt.split(self.image_token)
            text = pieces[0] + "".join(p.replacement + piece for p, piece in zip(processed, pieces[1:]))
            input_ids = list(self.tokenizer.encode(text))
        else:
            replacements = iter(processed)
            input_ids = []
            for token in prompt:
                if token == self.image_token_id:
                    input_ids += self.tokenizer.encode(next(replacements).replacement, add_special_tokens=False)
                else:
                    input_ids.append(token)
        return ExpandedPrompt(input_ids, self._items(input_ids, pictures, processed))

    def _items(self, input_ids: list[int], pictures: list[Image.Image],
               processed: list[ProcessedImage]) -> list[ImageItem]:
        """Give each image, in order, as many of the image-token positions as its replacement holds."""
        positions = [i for i, token in enumerate(input_ids) if token == self.image_token_id]
        counts = [p.replacement.count(self.image_token) for p in processed]
        if len(positions) != sum(counts):
            raise ValueError(f"the expanded prompt holds {len(positions)} image tokens where its "
                             f"{len(pictures)} images need {sum(counts)}")
        items, start = [], 0
        for picture, proc, count in zip(pictures, processed, counts):
            hash_value = image_hash(picture)
            spans = _runs(positions[start:start + count])
            items.append(ImageItem(hash_value, pad_id(hash_value), proc.pixel_values, proc.extras, spans))
            start += count
        return items


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """Increasing positions -> (start, length) runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for pos in positions:
        if runs and runs[-1][0] + runs[-1][1] == pos:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((pos, 1))
    return runs


def load_processor_config(model_path: str | Path) -> dict[str, Any]:
    """The processor settings of an HF folder: `preprocessor_config.json` (older folders), then the
    processor's own keys of `processor_config.json`, then its nested `image_processor` (newer folders)."""
    folder = Path(model_path)
    merged: dict[str, Any] = {}
    for name in ("preprocessor_config.json", "processor_config.json"):
        if (folder / name).is_file():
            cfg = json.loads((folder / name).read_text())
            nested = cfg.pop("image_processor", None)
            merged.update(cfg)
            merged.update(nested or {})
    return merged


def get_image_processor(model_path: str | Path, tokenizer: Any) -> ImageProcessor:
    """The image processor of the vision-language model in `model_path`, over its `tokenizer`."""
    model_config = json.loads((Path(model_path) / "config.json").read_text())
    architectures = model_config.get("architectures") or []
    known = [arch for arch in architectures if arch in PROCESSORS]
    if not known:
        raise ValueError(f"model {str(model_path)!r} ({', '.join(architectures) or 'no architectures'}) takes "
                         f"no images; image processors exist for {', '.join(PROCESSORS)}")
    module, _, cls = PROCESSORS[known[0]].partition(":")
    return getattr(import_module(module), cls)(tokenizer, load_processor_config(model_path), model_config)


def pixels(image: Image.Image, config: dict[str, Any], default_mean: tuple[float, ...],
           default_std: tuple[float, ...]) -> torch.Tensor:
    """An RGB image -> [3, height, width] float32, rescaled and normalized per the processor config with
    transformers' arithmetic (rescale in float64 then float32, normalize in float32)."""
    import torch

    values = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    values = values.view(image.height, image.width, 3).permute(2, 0, 1)
    if config.get("do_rescale", True):
        values = (values.to(torch.float64) * config.get("rescale_factor", 1 / 255)).to(torch.float32)
    else:
        values = values.to(torch.float32)
    if config.get("do_normalize", True):
        mean = torch.tensor(config.get("image_mean", default_mean), dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(config.get("image_std", default_std), dtype=torch.float32).view(3, 1, 1)
        values = (values - mean) / std
    return values


__all__ = ["ExpandedPrompt", "ImageItem", "ImageProcessor", "ProcessedImage", "get_image_processor",
           "load_processor_config", "pixels"]
