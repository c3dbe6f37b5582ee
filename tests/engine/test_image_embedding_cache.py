"""The image embedding LRU over a tiny random-weight LLaVA's real encoder and processor."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch
from PIL import Image

from sgnb.engine.counters import Counters
from sgnb.engine.image_embedding_cache import ImageEmbeddingCache


@pytest.fixture(scope="module")
def llava(tiny_vlm_folder):
    """(model, processor) of the tiny LLaVA: 16 embedding rows of 64 fp32 values per image (4 KiB)."""
    from sgnb.engine.multimodal.processor import get_image_processor
    from sgnb.engine.tokenizer import load_tokenizer
    from sgnb.engine.weights import load_model

    path = tiny_vlm_folder("llava")
    model, _ = load_model(path, torch.float32, "cpu", prepack=False)
    return model, get_image_processor(path, load_tokenizer(path))


def items(processor, num_images: int) -> list:
    images = [Image.frombytes("RGB", (40, 40), random.Random(seed).randbytes(40 * 40 * 3))
              for seed in range(num_images)]
    return processor.expand("<image>" * num_images, images).items


def test_second_use_of_an_image_is_a_hit_with_the_same_rows(llava):
    model, processor = llava
    counters = Counters()
    cache = ImageEmbeddingCache(model, 2**20, counters)
    (item,) = items(processor, 1)
    first = cache.get(item)
    assert first.shape == (item.num_image_tokens, model.cfg.hidden_size)
    assert cache.get(item) is first
    assert (counters.num_image_encodes, counters.num_image_cache_hits) == (1, 1)
    cache.check_integrity()


def test_evicts_least_recently_used_image_first(llava):
    model, processor = llava
    counters = Counters()
    a, b, c = items(processor, 3)
    size = a.num_image_tokens * model.cfg.hidden_size * 4          # fp32 rows of one image
    cache = ImageEmbeddingCache(model, 2 * size, counters)
    cache.get(a)
    cache.get(b)
    cache.get(a)                    # a is now the most recently used
    cache.get(c)                    # over the bound: b goes
    assert a.hash in cache and c.hash in cache and b.hash not in cache
    assert cache.num_bytes == 2 * size
    cache.get(b)
    assert (counters.num_image_encodes, counters.num_image_cache_hits) == (4, 1)
    cache.check_integrity()


def test_embedding_larger_than_the_bound_is_used_but_not_kept(llava):
    model, processor = llava
    counters = Counters()
    cache = ImageEmbeddingCache(model, 100, counters)
    (item,) = items(processor, 1)
    assert torch.equal(cache.get(item), cache.get(item))
    assert len(cache) == 0 and counters.num_image_encodes == 2
    cache.check_integrity()


def test_rows_not_matching_the_placeholders_are_refused(llava):
    model, processor = llava
    (item,) = items(processor, 1)
    cache = ImageEmbeddingCache(model, 2**20, Counters())
    with pytest.raises(ValueError, match=f"gave {item.num_image_tokens} rows for an image with 3 placeholder"):
        cache.get(dataclasses.replace(item, spans=[(0, 3)]))
    assert len(cache) == 0
    cache.check_integrity()


def test_negative_bound_is_refused(llava):
    with pytest.raises(ValueError, match="max_bytes"):
        ImageEmbeddingCache(llava[0], -1, Counters())
