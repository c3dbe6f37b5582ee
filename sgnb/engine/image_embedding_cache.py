"""A bounded LRU of image embeddings keyed by image hash.

The vision encoder is the expensive part of an image's prefill. Its rows are kept here, so a request that
needs an image's rows again does not re-encode it: a retracted request, the next chunk of a prefill cut
through an image, or a second request with the same image whose KV the prefix cache no longer holds.
Bounded in bytes; the least recently used embeddings go first, and one larger than the whole bound is
used once and not kept.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch

from sgnb.engine.counters import Counters

if TYPE_CHECKING:
    from sgnb.engine.models.base import VisionLanguageModel
    from sgnb.engine.multimodal.processor import ImageItem


class ImageEmbeddingCache:
    """image hash -> embedding rows [num_image_tokens, hidden], least recently used evicted first.

    Counts `counters.num_image_encodes` (encoder runs) and `counters.num_image_cache_hits` (rows served
    from here instead).
    """

    def __init__(self, model: VisionLanguageModel, max_bytes: int, counters: Counters):
        """model: whose `encode_images` makes the rows (it moves the pixels to its own device and dtype)."""
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.model = model
        self.max_bytes = max_bytes
        self.counters = counters
        self._entries: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.num_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, image_hash: int) -> bool:
        return image_hash in self._entries

    def get(self, item: ImageItem) -> torch.Tensor:
        """The embedding rows of `item`'s image: cached, or encoded now (and cached if they fit)."""
        emb = self._entries.get(item.hash)
        if emb is not None:
            self._entries.move_to_end(item.hash)
            self.counters.num_image_cache_hits += 1
            return emb
        emb = self.model.encode_images(item.pixel_values, **item.extras)
        self.counters.num_image_encodes += 1
        if emb.shape[0] != item.num_image_tokens:
            raise ValueError(f"the image encoder gave {emb.shape[0]} rows for an image with "
                             f"{item.num_image_tokens} placeholder tokens")
        self._put(item.hash, emb)
        return emb

    def clear(self) -> None:
        self._entries.clear()
        self.num_bytes = 0

    def check_integrity(self) -> None:
        """The byte count matches the entries and stays within the bound; raises AssertionError."""
        total = sum(_num_bytes(e) for e in self._entries.values())
        if total != self.num_bytes:
            raise AssertionError(f"image cache byte count {self.num_bytes} != recomputed {total}")
        if total > self.max_bytes:
            raise AssertionError(f"image cache holds {total} bytes, over its bound of {self.max_bytes}")

    def _put(self, image_hash: int, emb: torch.Tensor) -> None:
        size = _num_bytes(emb)
        if size > self.max_bytes:
            return                      # larger than the whole bound: every use encodes it again
        while self.num_bytes + size > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.num_bytes -= _num_bytes(old)
        self._entries[image_hash] = emb
        self.num_bytes += size


def _num_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()
