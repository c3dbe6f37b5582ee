"""Images as URLs for chat APIs (the content parts of a message that carries `sgl.image`s)."""

from __future__ import annotations

import base64
import os
import sys
from typing import Any


def image_url(data: Any) -> str:
    """An image as a URL: http(s)/data URLs pass through; files, bytes and PIL images become base64 data URLs,
    and any other string is taken as base64 PNG data already."""
    if isinstance(data, str):
        if data.startswith(("http://", "https://", "data:")):
            return data
        if os.path.exists(data):
            ext = os.path.splitext(data)[1].lower().lstrip(".") or "png"
            with open(data, "rb") as f:
                raw = f.read()
            return f"data:image/{'jpeg' if ext == 'jpg' else ext};base64," + base64.b64encode(raw).decode()
        return "data:image/png;base64," + data  # already base64
    if isinstance(data, (bytes, bytearray)):
        return "data:image/png;base64," + base64.b64encode(bytes(data)).decode()
    if "PIL" in sys.modules and hasattr(data, "save"):
        import io

        buf = io.BytesIO()
        data.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    raise ValueError(f"unsupported image input {type(data).__name__}; use a path, URL, bytes or PIL image")


__all__ = ["image_url"]
