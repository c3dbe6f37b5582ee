"""Idefics3 / SmolVLM images: resize to the longest edge, split into square crops plus a global image.

As transformers' `Idefics3ImageProcessorPil` and `Idefics3Processor` / `SmolVLMProcessor` do it:
1. resize so the longest edge is `size["longest_edge"]` (the other edge rounded down, then up to even),
   and below 4096 px;
2. resize up to whole multiples of `max_image_size["longest_edge"]` (the crop size);
3. cut row-major crops of that size and add the whole image resized to one crop (the global image); an image
   of one crop is only the global image;
4. rescale and normalize.
The placeholder becomes, per crop, `<fake_token_around_image><row_r_col_c>` + `<image>` * image_seq_len
(a newline after each row), then `\\n<fake_token_around_image><global-img>` + `<image>` * image_seq_len +
`<fake_token_around_image>`; a single-crop image only the latter, without its leading newline.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from sgnb.engine.multimodal.processor import ImageProcessor, ProcessedImage, pixels

if TYPE_CHECKING:
    from PIL import Image

MAX_IMAGE_SIDE = 4096              # no image is resized beyond this
IMAGE_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGE_STANDARD_STD = (0.5, 0.5, 0.5)
LANCZOS = 1                        # PIL's resampling filter number


class Idefics3ImageProcessor(ImageProcessor):
    """Images for `Idefics3ForConditionalGeneration` and `SmolVLMForConditionalGeneration`."""

    def __init__(self, tokenizer: Any, config: dict[str, Any], model_config: dict[str, Any]) -> None:
        super().__init__(tokenizer, getattr(tokenizer, "image_token", "<image>"))
        self.config = config
        self.image_seq_len: int = config.get("image_seq_len", 169)
        self.fake_image_token: str = getattr(tokenizer, "fake_image_token", "<fake_token_around_image>")
        self.global_image_token: str = getattr(tokenizer, "global_image_token", "<global-img>")
        self.crop_side: int = config.get("max_image_size", {"longest_edge": 364})["longest_edge"]
        self.resample: int = config.get("resample", LANCZOS)

    def process(self, image: Image.Image) -> ProcessedImage:
        import torch

        cfg = self.config
        if cfg.get("do_resize", True):
            image = self._resize(image, _longest_edge_size(image.height, image.width, cfg.get("size")))
        if cfg.get("do_image_splitting", True):
            image = self._resize(image, _crop_multiple_size(image.height, image.width, self.crop_side))
            frames, num_rows, num_cols = self._split(image)
        else:
            frames, num_rows, num_cols = [self._resize(image, (self.crop_side, self.crop_side))], 0, 0
        # every frame is crop_side x crop_side here, so HF's padding to the largest frame is a no-op
        # and the pixel attention mask is all ones
        pixel_values = torch.stack([pixels(f, cfg, IMAGE_STANDARD_MEAN, IMAGE_STANDARD_STD) for f in frames])
        mask = torch.ones(pixel_values.shape[0], *pixel_values.shape[2:], dtype=torch.long)
        return ProcessedImage(self._replacement(num_rows, num_cols), pixel_values, {"pixel_attention_mask": mask})

    def _resize(self, image: Image.Image, size: tuple[int, int]) -> Image.Image:
        height, width = size
        return image.resize((width, height), resample=self.resample)

    def _split(self, image: Image.Image) -> tuple[list[Image.Image], int, int]:
        """Row-major crops plus the global image, or only the image when it is one crop."""
        side = self.crop_side
        if image.height <= side and image.width <= side:
            return [image], 0, 0
        num_rows = (image.height - side) // side + 1
        num_cols = (image.width - side) // side + 1
        crops = [image.crop((c * side, r * side, (c + 1) * side, (r + 1) * side))
                 for r in range(num_rows) for c in range(num_cols)]
        return crops + [self._resize(image, (side, side))], num_rows, num_cols

    def _replacement(self, num_rows: int, num_cols: int) -> str:
        image_run = self.image_token * self.image_seq_len
        global_image = f"{self.fake_image_token}{self.global_image_token}{image_run}{self.fake_image_token}"
        if num_rows == 0 and num_cols == 0:
            return global_image
        rows = ["".join(f"{self.fake_image_token}<row_{r + 1}_col_{c + 1}>{image_run}" for c in range(num_cols))
                + "\n" for r in range(num_rows)]
        return "".join(rows) + "\n" + global_image


def _longest_edge_size(height: int, width: int, size: dict[str, int] | None) -> tuple[int, int]:
    """(height, width) after the first resize: longest edge to `size["longest_edge"]` (or exactly
    `size["height"], size["width"]`), kept at most `MAX_IMAGE_SIDE`."""
    size = size or {"longest_edge": 4 * 364}
    if "longest_edge" not in size:
        return size["height"], size["width"]
    longest, aspect_ratio = size["longest_edge"], width / height
    if width >= height:
        width, height = longest, int(longest / aspect_ratio)
        height += height % 2
    else:
        height, width = longest, int(longest * aspect_ratio)
        width += width % 2
    height, width = max(height, 1), max(width, 1)
    aspect_ratio = width / height
    if width >= height and width > MAX_IMAGE_SIDE:
        width, height = MAX_IMAGE_SIDE, int(MAX_IMAGE_SIDE / aspect_ratio)
    elif height > width and height > MAX_IMAGE_SIDE:
        height, width = MAX_IMAGE_SIDE, int(MAX_IMAGE_SIDE * aspect_ratio)
    return max(height, 1), max(width, 1)


def _crop_multiple_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(height, width) rounded up to whole crops, the shorter edge derived from the longer one first."""
    aspect_ratio = width / height
    if width >= height:
        width = math.ceil(width / side) * side
        height = math.ceil(int(width / aspect_ratio) / side) * side
    else:
        height = math.ceil(height / side) * side
        width = math.ceil(int(height * aspect_ratio) / side) * side
    return height, width


__all__ = ["Idefics3ImageProcessor"]
