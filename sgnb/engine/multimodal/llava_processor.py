"""LLaVA images: one fixed-size view, its placeholder a run of `<image>` tokens, one per patch feature.

As transformers' `LlavaImageProcessorPil` and `LlavaProcessor` do it: optionally pad to a square of the mean
colour, resize the shortest edge to `size["shortest_edge"]` (or to `size["height"] x size["width"]`),
center-crop to `crop_size`, rescale and normalize. The run is `(height // patch) * (width // patch)`
tokens, plus `num_additional_image_tokens` (a class token), minus one for the "default" feature strategy
(which drops that class token).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sgnb.engine.multimodal.processor import ImageProcessor, ProcessedImage, pixels

if TYPE_CHECKING:
    from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BICUBIC = 3                        # PIL's resampling filter number


class LlavaImageProcessor(ImageProcessor):
    """Images for `LlavaForConditionalGeneration`."""

    def __init__(self, tokenizer: Any, config: dict[str, Any], model_config: dict[str, Any]) -> None:
        super().__init__(tokenizer, getattr(tokenizer, "image_token", config.get("image_token", "<image>")))
        self.config = config
        # the processor config's patch size; folders without one take the vision tower's
        self.patch_size: int = config.get("patch_size") or model_config.get("vision_config", {}).get("patch_size")
        if not self.patch_size:
            raise ValueError("LLaVA folder names no patch_size (processor_config.json or vision_config)")
        self.num_additional_image_tokens: int = config.get("num_additional_image_tokens", 0)
        self.drops_class_token = config.get("vision_feature_select_strategy") == "default"

    def process(self, image: Image.Image) -> ProcessedImage:
        cfg = self.config
        mean = tuple(cfg.get("image_mean", CLIP_MEAN))
        if cfg.get("do_pad", False):
            image = _pad_to_square(image, tuple(int(m * 255) for m in mean))
        if cfg.get("do_resize", True):
            size = _resize_size(image.height, image.width, cfg.get("size", {"shortest_edge": 224}))
            image = image.resize((size[1], size[0]), resample=cfg.get("resample", BICUBIC))
        if cfg.get("do_center_crop", True):
            crop = cfg.get("crop_size", {"height": 224, "width": 224})
            top, left = (image.height - crop["height"]) // 2, (image.width - crop["width"]) // 2
            # outside the image, PIL's crop fills zeros: HF's zero padding of an image smaller than the crop
            image = image.crop((left, top, left + crop["width"], top + crop["height"]))
        pixel_values = pixels(image, cfg, CLIP_MEAN, CLIP_STD)[None]
        num_tokens = ((image.height // self.patch_size) * (image.width // self.patch_size)
                      + self.num_additional_image_tokens - self.drops_class_token)
        return ProcessedImage(self.image_token * num_tokens, pixel_values)


def _pad_to_square(image: Image.Image, color: tuple[int, ...]) -> Image.Image:
    """The image centered on a square of its longest edge, filled with `color`."""
    from PIL import Image

    side = max(image.size)
    if image.width == image.height:
        return image
    square = Image.new("RGB", (side, side), color)
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return square


def _resize_size(height: int, width: int, size: dict[str, int]) -> tuple[int, int]:
    """(height, width): the shortest edge to `size["shortest_edge"]`, the other scaled and rounded down;
    or exactly `size["height"], size["width"]`."""
    if "shortest_edge" not in size:
        return size["height"], size["width"]
    short, long = sorted((height, width))
    new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


__all__ = ["LlavaImageProcessor"]
