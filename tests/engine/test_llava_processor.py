"""LLaVA images: expanded ids (a run of `<image>` per image) and pixels equal transformers' processor's."""

from __future__ import annotations

import pytest

from tests.engine.processor_parity import assert_same_pixels, expand_with_both, random_image


def assert_parity(folder, sizes: list[tuple[int, int]]) -> list:
    """Ours against HF's for one prompt holding images of these (width, height) sizes; returns our items."""
    images = [random_image(w, h, seed) for seed, (w, h) in enumerate(sizes)]
    text = "USER: " + "".join(f"<image>\nimage {i}. " for i in range(len(images))) + "What is it? ASSISTANT:"
    expanded, ref = expand_with_both(folder, text, images)
    assert_same_pixels(expanded, ref["pixel_values"])
    return expanded.items


@pytest.mark.parametrize("size", [(40, 30), (20, 90), (32, 32), (101, 77)])
def test_matches_hf(tiny_vlm_folder, size):
    items = assert_parity(tiny_vlm_folder("llava"), [size])
    # 32 px crop of 8 px patches: 16 patch features (the class token dropped by the "default" strategy)
    assert items[0].pixel_values.shape == (1, 3, 32, 32)
    assert items[0].spans[0][1] == 16


def test_matches_hf_for_adjacent_images(tiny_vlm_folder):
    images = [random_image(40, 30, 0), random_image(30, 40, 1)]
    expanded, _ = expand_with_both(tiny_vlm_folder("llava"), "<image><image>", images)
    # one run of 32 image tokens in the ids, split 16 / 16 between the two images
    assert [item.spans for item in expanded.items] == [[(0, 16)], [(16, 16)]]


@pytest.mark.parametrize("settings", [
    {"do_pad": True},                                        # pad to a square of the mean colour first
    {"size": {"shortest_edge": 24}},                         # smaller than the crop: zero-padded
    {"size": {"height": 48, "width": 40}, "crop_size": {"height": 40, "width": 24}},
    {"vision_feature_select_strategy": "full", "resample": 2},
    {"do_center_crop": False, "size": {"height": 16, "width": 24}},
], ids=["pad-to-square", "crop-beyond-image", "height-width", "full-strategy", "no-crop"])
def test_matches_hf_under_other_processor_settings(processor_folder, settings):
    assert_parity(processor_folder("llava", **settings), [(50, 20), (17, 33)])
