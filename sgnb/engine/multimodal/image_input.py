"""Images from anything a caller may hold: a file path, a `data:` URL, bytes, base64 text or a PIL image.

There is no network in the engine: an http(s) URL is refused with a clear error instead of being fetched.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image


def load_image(image: Any) -> Image.Image:
    """`image` as an RGB PIL image; transparency is composited onto white, as transformers does.

    Takes a PIL image, a `Path`, bytes, or a string: a file path (or `file://` URL), a `data:` URL or base64
    image data. An http(s) URL, a missing file, or data that is not a decodable image is a `ValueError`
    naming the input.
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        return _to_rgb(image)
    if isinstance(image, Path):
        return _open(_read_file(image), f"file {str(image)!r}")
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _open(bytes(image), f"image bytes ({len(image)} bytes)")
    if not isinstance(image, str):
        raise ValueError(f"image must be a file path, a data: URL, bytes, base64 text or a PIL image, "
                         f"got {type(image).__name__}")
    if image.startswith(("http://", "https://")):
        raise ValueError(f"image URL {_excerpt(image)} cannot be fetched (the engine has no network); pass a "
                         "data: URL, a file path, bytes or a PIL image")
    if image.startswith("data:"):
        return _open(_data_url_bytes(image), f"data URL {_excerpt(image)}")
    path = image.removeprefix("file://")
    if os.path.isfile(path):
        return _open(_read_file(Path(path)), f"file {path!r}")
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"image file {_excerpt(image, 300)} does not exist (nor is it base64 image data)") from None
    return _open(data, f"base64 image {_excerpt(image)}")


def _data_url_bytes(url: str) -> bytes:
    """The payload of a `data:[<mime>][;base64],<data>` URL (percent-encoded when not base64)."""
    header, sep, payload = url.partition(",")
    if not sep:
        raise ValueError(f"data URL {_excerpt(url)} has no ',' before its data")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"data URL {_excerpt(url)} holds invalid base64 data") from None
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(payload)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"image file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot read image file {str(path)!r}: {exc}") from None


def _open(data: bytes, what: str) -> Image.Image:
    """Decode encoded image bytes (PNG, JPEG, ...); EXIF orientation is applied, as transformers does."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return _to_rgb(ImageOps.exif_transpose(img))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{what} is not a readable image: {exc}") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    from PIL import Image

    if img.mode == "RGB":
        return img
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img.convert("RGB")


def _excerpt(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


__all__ = ["load_image"]
