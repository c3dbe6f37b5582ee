"""Helpers of the image processor tests: random images, and our expansion next to transformers' processor's."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from transformers import AutoProcessor, AutoTokenizer

from sgnb.engine.multimodal.processor import ExpandedPrompt, get_image_processor


def random_image(width: int, height: int, seed: int) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8).numpy())


def expand_with_both(folder: Path, text: str, images: list[Image.Image]) -> tuple[ExpandedPrompt, dict]:
    """Our expansion and HF's processor output for one prompt; asserts that their token ids are equal."""
    ref = AutoProcessor.from_pretrained(folder)(text=text, images=images, return_tensors="pt")
    expanded = get_image_processor(folder, AutoTokenizer.from_pretrained(folder)).expand(text, images)
    assert expanded.input_ids == ref["input_ids"][0].tolist()
    return expanded, ref


def assert_same_pixels(expanded: ExpandedPrompt, ref_pixel_values: torch.Tensor) -> None:
    """Our images' pixel_values, concatenated, equal HF's [num_crops, 3, height, width] (atol 1e-5)."""
    pixel_values = torch.cat([item.pixel_values for item in expanded.items])
    # always float32 here; HF keeps uint8 when it neither rescales nor normalizes
    assert pixel_values.dtype == torch.float32
    torch.testing.assert_close(pixel_values, ref_pixel_values.float(), atol=1e-5, rtol=0)
