"""Smoke test of bench/images.py at its tiniest size: not a timing test. It checks what the benchmark's figures
rest on: with the radix cache the picture is encoded once and later questions hit the cache; without any cache
every question encodes it again."""

from __future__ import annotations

import pytest

from bench.images import SYSTEMS, build_model, run_system

pytestmark = pytest.mark.slow


def test_radix_cache_encodes_the_picture_once_and_no_cache_encodes_it_per_question(tmp_path):
    model = build_model(tmp_path / "bench-idefics3", text=None)
    results = {name: run_system(model, options, ["Colour?", "Shape?", "Size?"], 1, "float32")
               for name, options in SYSTEMS}
    on, off, bare = results.values()
    assert on["encodes"] == 1 and on["hit_rate"] > 0
    assert off["encodes"] == 1 and off["hit_rate"] == 0  # the image-embedding LRU still spares the encoder
    assert bare["encodes"] == 3
