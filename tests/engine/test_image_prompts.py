"""image_data per prompt, and how image rows read in cache views (real SmolLM2 tokenizer)."""

from __future__ import annotations

import pytest

from sgnb.engine.image_prompts import IMAGE_TEXT, decode_with_images, images_per_prompt, num_image_tokens


@pytest.fixture(scope="module")
def tokenizer(smollm2_path):
    from sgnb.engine.tokenizer import load_tokenizer

    return load_tokenizer(smollm2_path)


def test_single_prompt_takes_one_image_or_a_list():
    assert images_per_prompt("a.png", 1, is_single=True) == [["a.png"]]
    assert images_per_prompt(["a.png", b"raw"], 1, is_single=True) == [["a.png", b"raw"]]
    assert images_per_prompt(None, 1, is_single=True) == [[]]


def test_batch_takes_one_entry_per_prompt():
    assert images_per_prompt(["a.png", None, ["b.png", "c.png"]], 3, is_single=False) == [
        ["a.png"], [], ["b.png", "c.png"]]
    assert images_per_prompt(None, 2, is_single=False) == [[], []]


@pytest.mark.parametrize("image_data", [["a.png"], "a.png"])
def test_batch_with_wrong_number_of_entries_names_both_counts(image_data):
    with pytest.raises(ValueError, match="image_data for a batch of 2 prompts"):
        images_per_prompt(image_data, 2, is_single=False)


def test_image_rows_read_as_one_placeholder_per_image(tokenizer):
    vocab_size = len(tokenizer)
    hello = tokenizer.encode("Hello")
    world = tokenizer.encode(" world")
    pad_a, pad_b = 1_000_000 + 7, 1_000_000 + 9
    ids = hello + [pad_a] * 5 + [pad_b] * 3 + world
    text = decode_with_images(tokenizer, ids, vocab_size)
    assert text == "Hello" + IMAGE_TEXT + IMAGE_TEXT + " world"
    assert num_image_tokens(ids, vocab_size) == 8
    assert decode_with_images(tokenizer, hello + world, vocab_size) == tokenizer.decode(hello + world)
