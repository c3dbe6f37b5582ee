"""Images in prompts, as the engine's callers and viewers see them.

`image_data` (SGLang's name) gives one prompt an image or a list of images, and a batch one such entry per
prompt. Inside the engine an image's rows are keyed by its pad id (`Req.cache_key`): ids at or above the
vocabulary size, which the prefix cache's views show as `IMAGE_TEXT`.
"""

from __future__ import annotations

import itertools
from typing import Any

IMAGE_TEXT = "[image]"       # how a cached image's rows read in excerpts and node texts


def images_per_prompt(image_data: Any, num_prompts: int, is_single: bool) -> list[list]:
    """image_data -> one list of images per prompt (empty: none).

    A single prompt takes an image or a list of images; a batch takes a list with one entry per prompt,
    each an image, a list of images or None.
    """
    if image_data is None:
        return [[] for _ in range(num_prompts)]
    if is_single:
        return [_as_list(image_data)]
    if not isinstance(image_data, (list, tuple)) or len(image_data) != num_prompts:
        got = f"{len(image_data)} entries" if isinstance(image_data, (list, tuple)) else type(image_data).__name__
        raise ValueError(f"image_data for a batch of {num_prompts} prompts must be a list with one entry per "
                         f"prompt (an image, a list of images or None), got {got}")
    return [_as_list(entry) for entry in image_data]


def _as_list(entry: Any) -> list:
    if entry is None:
        return []
    return list(entry) if isinstance(entry, (list, tuple)) else [entry]


def num_image_tokens(ids: list[int], vocab_size: int) -> int:
    """How many of these cache-key ids are image rows (pad ids lie beyond the vocabulary)."""
    return sum(t >= vocab_size for t in ids)


def decode_with_images(tokenizer: Any, ids: list[int], vocab_size: int) -> str:
    """Decode cache-key ids; each image's run of pad ids reads as `IMAGE_TEXT`."""
    parts = []
    for pad_id, group in itertools.groupby(ids, key=lambda t: t if t >= vocab_size else -1):
        parts.append(tokenizer.decode(list(group)) if pad_id < 0 else IMAGE_TEXT)
    return "".join(parts)
