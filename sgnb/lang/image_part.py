"""`ImagePart`: one image of a program state (an `sgl.image`, or a frame of an `sgl.video`) and where it sits.

The state text holds the backend's image placeholder (`ChatTemplate.image_token`) where the image was appended;
`start`/`end` are that placeholder's char offsets, so a backend can send the images in order, a chat backend
can cut the text into content parts, and the program view can draw a thumbnail in place of the placeholder.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

from sgnb.lang.image_url import image_url

#: longest side of a thumbnail, in pixels
THUMBNAIL_SIZE = 64


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image as given (path, data/file URL, bytes, base64 str or PIL image), its placeholder's char range
    `[start, end)` in the state text, and a PNG data-URL thumbnail (None when the image cannot be read here,
    e.g. an http URL, which only a backend may fetch)."""

    data: Any
    start: int
    end: int
    thumbnail: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"image placeholder range must satisfy 0 <= start <= end, got [{self.start}, {self.end})")


def thumbnail(data: Any) -> str | None:
    """A PNG data URL of the image shrunk to at most `THUMBNAIL_SIZE` px per side; None if it cannot be read."""
    from sgnb.engine.multimodal.image_input import load_image

    try:
        image = load_image(data)
    except ValueError:
        return None
    image = image.copy()
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def content_parts(text: str, begin: int, images: list[ImagePart]) -> str | list[dict]:
    """A chat message's content for `text[begin:]`: that text when no image sits in it, else OpenAI content parts
    in order (`{"type": "text"}` pieces between `{"type": "image_url"}` data-URL parts), the placeholders left
    out."""
    inside = [p for p in images if p.start >= begin]
    if not inside:
        return text[begin:]
    parts: list[dict] = []
    cursor = begin
    for part in inside:
        if part.start > cursor:
            parts.append({"type": "text", "text": text[cursor:part.start]})
        parts.append({"type": "image_url", "image_url": {"url": image_url(part.data)}})
        cursor = part.end
    if cursor < len(text):
        parts.append({"type": "text", "text": text[cursor:]})
    return parts


__all__ = ["ImagePart", "THUMBNAIL_SIZE", "thumbnail", "content_parts"]
