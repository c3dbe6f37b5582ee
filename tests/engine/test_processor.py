"""Image placeholder expansion: text and ids prompts, spans, pad ids, count mismatches, unknown models."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from sgnb.engine.multimodal.image_hash import PAD_ID_BASE
from sgnb.engine.multimodal.processor import get_image_processor
from tests.engine.processor_parity import random_image


@pytest.fixture(params=["idefics3", "llava"])
def processor(request, tiny_vlm_folder):
    folder = tiny_vlm_folder(request.param)
    return get_image_processor(folder, AutoTokenizer.from_pretrained(folder))


def test_text_and_ids_prompts_expand_to_the_same_ids(processor):
    images = [random_image(90, 40, 0), random_image(30, 70, 1)]
    text = f"Compare {processor.image_token} with\n{processor.image_token}. Which is brighter?"
    by_text = processor.expand(text, images)
    by_ids = processor.expand(processor.tokenizer.encode(text), images)
    assert by_ids.input_ids == by_text.input_ids
    assert [item.spans for item in by_ids.items] == [item.spans for item in by_text.items]


def test_spans_cover_exactly_the_image_token_rows_in_prompt_order(processor):
    images = [random_image(200, 90, 0), random_image(64, 64, 1)]
    expanded = processor.expand(f"a{processor.image_token}b{processor.image_token}c", images)
    covered = [pos for item in expanded.items for start, length in item.spans
               for pos in range(start, start + length)]
    image_rows = [i for i, token in enumerate(expanded.input_ids) if token == processor.image_token_id]
    assert covered == image_rows                      # disjoint, in order, first image first
    first_end = expanded.items[0].spans[-1][0] + expanded.items[0].spans[-1][1]
    assert first_end <= expanded.items[1].spans[0][0]


def test_split_image_rows_are_one_run_per_crop(tiny_vlm_folder):
    folder = tiny_vlm_folder("idefics3")
    processor = get_image_processor(folder, AutoTokenizer.from_pretrained(folder))
    item = processor.expand("<image>", [random_image(200, 90, 0)]).items[0]
    # two 64 px crops side by side and the global image: three runs of 16 with wrapper tokens between
    assert [length for _, length in item.spans] == [16, 16, 16]
    assert item.spans[1][0] > item.spans[0][0] + 16
    assert item.pixel_values.shape == (3, 3, 64, 64)


def test_same_image_gets_the_same_pad_id_and_different_images_different_ones(processor):
    tok = processor.image_token
    a, b = random_image(50, 50, 0), random_image(50, 50, 1)
    items = processor.expand(f"{tok}{tok}{tok}", [a, b, a.copy()]).items
    assert items[0].pad_id == items[2].pad_id and items[0].hash == items[2].hash
    assert items[0].pad_id != items[1].pad_id
    assert processor.expand(f"x{tok}", [a]).items[0].pad_id == items[0].pad_id   # across prompts too
    assert all(item.pad_id >= PAD_ID_BASE for item in items)


def test_placeholder_and_image_count_mismatch_is_a_value_error_naming_both(processor):
    tok = processor.image_token
    image = random_image(20, 20, 0)
    with pytest.raises(ValueError, match="the prompt has 2 image placeholders .* but 1 images were given"):
        processor.expand(f"{tok} and {tok}", [image])
    with pytest.raises(ValueError, match="the prompt has 0 image placeholders .* but 1 images were given"):
        processor.expand("no image here", [image])
    ids = processor.tokenizer.encode(f"{tok}!")
    with pytest.raises(ValueError, match="the prompt has 1 image placeholders .* but 2 images were given"):
        processor.expand(ids, [image, image])


def test_unreadable_image_is_a_value_error(processor):
    with pytest.raises(ValueError, match="image bytes .* is not a readable image"):
        processor.expand(f"{processor.image_token}", [b"\x89PNG broken"])


def test_prompt_without_images_is_its_plain_tokenization(processor):
    expanded = processor.expand("just text", [])
    assert expanded.input_ids == processor.tokenizer.encode("just text")
    assert expanded.items == []


def test_text_only_model_has_no_image_processor(tmp_path, smollm2_path):
    with pytest.raises(ValueError, match="LlamaForCausalLM.*takes no images"):
        get_image_processor(smollm2_path, AutoTokenizer.from_pretrained(smollm2_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "x"}))
    with pytest.raises(ValueError, match="no architectures.*takes no images"):
        get_image_processor(tmp_path, None)
