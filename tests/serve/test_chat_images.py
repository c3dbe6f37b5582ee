"""Chat messages with images for the model's template: content parts for a template that reads them
(SmolVLM / LLaVA style), the placeholder in the text for one that reads strings (SmolLM2's ChatML)."""

from __future__ import annotations

import pytest

from sgnb.serve.chat_images import reads_content_parts, split_images
from tests.vlm_fixtures import PARTS_TEMPLATE

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Compare "}, {"type": "image", "url": "data:a"},
                                 {"type": "text", "text": " and "}, {"type": "image", "url": "/tmp/b.png"}]},
]


@pytest.fixture(scope="module")
def tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_path), local_files_only=True)


def test_chatml_reads_strings_and_gets_the_placeholder_in_place(tokenizer):
    assert not reads_content_parts(tokenizer)
    messages, images = split_images(MESSAGES, "<image>", as_parts=False)
    assert images == ["data:a", "/tmp/b.png"]
    assert messages == [MESSAGES[0], {"role": "user", "content": "Compare <image> and <image>"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nCompare <image> and <image><|im_end|>" in prompt


def test_a_parts_template_gets_image_parts_and_writes_its_own_placeholder(tokenizer):
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path, local_files_only=True)
    tokenizer.chat_template = PARTS_TEMPLATE
    assert reads_content_parts(tokenizer)
    messages, images = split_images(MESSAGES, "<image>", as_parts=True)
    assert images == ["data:a", "/tmp/b.png"]
    assert messages[0]["content"] == [{"type": "text", "text": "Be brief."}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>User:Compare <image> and <image><end_of_utterance>" in prompt


def test_images_for_a_text_only_model_name_the_message():
    with pytest.raises(ValueError, match=r"messages\[1\] has image_url parts, but the served model is text-only"):
        split_images(MESSAGES, None, as_parts=False)
