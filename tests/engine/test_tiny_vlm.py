"""The tiny random-weight vision-language models: transformers loads them and runs them with their processor."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from sgnb.engine.multimodal.tiny_vlm import build_tiny_vlm

# image tokens the processor expands one 100x70 image into: Idefics3 2x2 crops + the global image of 16
# tokens each; LLaVA one token per 8 px patch of its 32 px image
IMAGE_TOKENS = {"idefics3": 5 * 16, "llava": 16}


@pytest.mark.parametrize("family", ["idefics3", "llava"])
def test_transformers_runs_the_tiny_model_with_its_processor(tmp_path, family):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = build_tiny_vlm(tmp_path / family, family)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(folder)
    assert processor.image_token == "<image>"
    image = Image.frombytes("RGB", (100, 70), random.Random(0).randbytes(100 * 70 * 3))
    inputs = processor(text=["Describe <image> briefly."], images=[[image]], return_tensors="pt")
    image_token_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert int((inputs["input_ids"] == image_token_id).sum()) == IMAGE_TOKENS[family]
    with torch.no_grad():
        logits = model(**inputs).logits
        without_image = model(input_ids=inputs["input_ids"]).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(processor.tokenizer))
    assert torch.isfinite(logits).all() and logits.std() > 0.1          # random weights, visible differences
    assert not torch.allclose(logits, without_image, rtol=1e-3)        # the image reaches the logits


def test_the_same_seed_builds_the_same_weights(tmp_path):
    a = load_file(build_tiny_vlm(tmp_path / "a", "llava", seed=3) / "model.safetensors")
    b = load_file(build_tiny_vlm(tmp_path / "b", "llava", seed=3) / "model.safetensors")
    c = load_file(build_tiny_vlm(tmp_path / "c", "llava", seed=4) / "model.safetensors")
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not any(torch.equal(a[name], c[name]) for name in a)


def test_an_unknown_family_is_refused(tmp_path):
    with pytest.raises(ValueError, match="family must be one of idefics3, llava"):
        build_tiny_vlm(tmp_path / "x", "qwen2-vl")
