"""One hash per image, and the pad id its rows carry in the prefix cache's keys.

The hash is of the decoded pixels (size and RGB bytes), so the same picture reads the same whether it came
as a file, a data URL or a PIL image. Pad ids lie at or above `PAD_ID_BASE`, beyond any vocabulary the
engine serves, so an image's rows never match text in the radix tree; two images share a pad id only on a
30-bit collision of their hashes.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

PAD_ID_BASE = 1_000_000
NUM_PAD_IDS = 2**30


def image_hash(image: Image.Image) -> int:
    """A 64-bit hash of an RGB image's size and pixels."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return int.from_bytes(digest.digest(), "little")


def pad_id(hash_value: int) -> int:
    """The id an image's rows carry in cache keys: `PAD_ID_BASE + hash % 2**30`."""
    return PAD_ID_BASE + hash_value % NUM_PAD_IDS


__all__ = ["PAD_ID_BASE", "image_hash", "pad_id"]
