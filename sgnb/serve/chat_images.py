"""Images in OpenAI chat requests: the messages as the model's chat template reads them, and the images in order.

`openai_protocol` parses a message with images into parts (`{"type": "text", "text"}`, `{"type": "image",
"url"}`). Vision-language templates (SmolVLM's, LLaVA's) read content-part lists and write the model's image
placeholder for each `{"type": "image"}` part; other templates (SmolLM2's ChatML, which the tiny test VLMs keep)
read strings, so the placeholder (`engine.image_token`) goes into the text where each image sat. One probe
rendering tells which kind a template is.
"""

from __future__ import annotations

from typing import Any

_PROBE = "@@SGNB_PARTS_PROBE@@"


def reads_content_parts(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders `[{"type": "text", "text": ...}]` contents as their text."""
    if not getattr(tokenizer, "chat_template", None):
        return False
    try:
        out = tokenizer.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": _PROBE}]}],
                                            tokenize=False)
    except Exception:  # noqa: BLE001 - a template that only takes strings may fail on a list
        return False
    return _PROBE in out and "'type'" not in out and '"type"' not in out


def split_images(messages: list[dict[str, Any]], image_token: str | None,
                 as_parts: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """The messages ready for the chat template (content parts when `as_parts`, else strings with `image_token`
    where each image sat) and the image URLs in order. Images for a text-only model (`image_token` None) are a
    ValueError naming the message."""
    out: list[dict[str, Any]] = []
    images: list[str] = []
    for index, message in enumerate(messages):
        content = message["content"]
        if isinstance(content, str):
            out.append({**message, "content": [{"type": "text", "text": content}]} if as_parts else message)
            continue
        if image_token is None:
            raise ValueError(f"messages[{index}] has image_url parts, but the served model is text-only")
        images += [part["url"] for part in content if part["type"] == "image"]
        if as_parts:
            parts = [{"type": "image"} if part["type"] == "image" else part for part in content]
            out.append({**message, "content": parts})
        else:
            text = "".join(image_token if part["type"] == "image" else part["text"] for part in content)
            out.append({**message, "content": text})
    return out, images


__all__ = ["reads_content_parts", "split_images"]
