"""Idefics3 images: expanded ids and pixels equal transformers' processor's, crop by crop."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from sgnb.engine.multimodal.processor import get_image_processor
from tests.engine.processor_parity import assert_same_pixels, expand_with_both, random_image


def assert_parity(folder, sizes: list[tuple[int, int]]) -> list:
    """Ours against HF's for one prompt holding images of these (width, height) sizes; returns our items."""
    images = [random_image(w, h, seed) for seed, (w, h) in enumerate(sizes)]
    text = "User: " + " then ".join(f"look<image>at {i}" for i in range(len(images))) + "\nAssistant:"
    expanded, ref = expand_with_both(folder, text, images)
    assert_same_pixels(expanded, ref["pixel_values"][0])
    mask = torch.cat([item.extras["pixel_attention_mask"] for item in expanded.items])
    assert torch.equal(mask, ref["pixel_attention_mask"][0])
    return expanded.items


# (width, height): smaller than one 64 px crop, wide, tall, square, odd sizes
SIZES = [(40, 30), (200, 90), (90, 300), (64, 64), (257, 129), (13, 250)]


@pytest.mark.parametrize("size", SIZES)
def test_matches_hf_with_splitting(tiny_vlm_folder, size):
    items = assert_parity(tiny_vlm_folder("idefics3"), [size])
    # the longest edge goes to 128 px: two 64 px crops along it (more on neither), plus the global image
    assert items[0].pixel_values.shape[0] in (3, 5)


def test_matches_hf_for_two_images_in_one_prompt(tiny_vlm_folder):
    items = assert_parity(tiny_vlm_folder("idefics3"), [(200, 90), (40, 30)])
    assert [item.pixel_values.shape[0] for item in items] == [3, 5]
    assert [item.num_image_tokens for item in items] == [3 * 16, 5 * 16]


@pytest.mark.parametrize("settings", [
    {"size": {"longest_edge": 64}},              # every image is one crop: only the global image
    {"do_image_splitting": False},
    {"image_seq_len": 4, "resample": 3},
    {"size": {"height": 70, "width": 150}},
    {"do_normalize": False, "do_rescale": False},
], ids=["one-crop", "no-splitting", "seq-len-and-bicubic", "height-width", "raw-pixels"])
def test_matches_hf_under_other_processor_settings(processor_folder, settings):
    assert_parity(processor_folder("idefics3", **settings), [(200, 90), (40, 30)])


def test_reads_the_legacy_preprocessor_config_layout(processor_folder):
    assert_parity(processor_folder("idefics3", is_legacy_layout=True, image_seq_len=4), [(90, 300)])


def test_single_crop_image_is_the_global_image_alone(processor_folder):
    folder = processor_folder("idefics3", size={"longest_edge": 64})
    tokenizer = AutoTokenizer.from_pretrained(folder)
    expanded = get_image_processor(folder, tokenizer).expand("<image>", [random_image(50, 20, 0)])
    text = tokenizer.decode(expanded.input_ids)
    assert text == "<fake_token_around_image><global-img>" + "<image>" * 16 + "<fake_token_around_image>"
    assert expanded.items[0].spans == [(2, 16)]


def test_smolvlm_matches_hf_image_processor_and_prompt_string(processor_folder):
    # transformers' SmolVLMProcessor needs torchvision (for its video processor): compare with its parts
    import json

    from transformers import SmolVLMImageProcessorPil
    from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

    folder = processor_folder("idefics3")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["SmolVLMForConditionalGeneration"]}))
    ours = get_image_processor(folder, AutoTokenizer.from_pretrained(folder))
    settings = json.loads((folder / "processor_config.json").read_text())["image_processor"]
    hf = SmolVLMImageProcessorPil(**{k: v for k, v in settings.items() if k != "image_processor_type"})
    for seed, (width, height) in enumerate(SIZES):
        image = random_image(width, height, seed)
        ref = hf([image], return_row_col_info=True, return_tensors="pt")
        processed = ours.process(image)
        torch.testing.assert_close(processed.pixel_values, ref["pixel_values"][0], atol=1e-5, rtol=0)
        assert processed.replacement == get_image_prompt_string(
            ref["rows"][0][0], ref["cols"][0][0], 16, "<fake_token_around_image>", "<image>", "<global-img>")
