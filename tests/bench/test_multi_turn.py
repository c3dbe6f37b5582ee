"""Smoke test of bench/multi_turn.py at its tiniest size, on a tiny random model: not a timing test.

It checks what the benchmark's figures rest on: the variants give the same greedy outputs, the tiered ones
serve evicted conversations from host memory, and a fresh engine on a warm storage folder finds the prompt.
"""

from __future__ import annotations

import pytest

from bench.multi_turn import VARIANTS, conversations, restart_child, run_chat, variant_options
from tests.conftest import make_tiny_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(smollm2_path, tmp_path_factory) -> str:
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny"), smollm2_path, max_position_embeddings=1024))


def test_tiers_bring_evicted_conversations_back_with_the_same_outputs(tiny_model, tmp_path):
    sessions = conversations(3, 2)
    # 384 slots hold two first turns: each session's first turn is evicted before its second
    runs = {name: run_chat(tiny_model, "float32", sessions, 1, 384, variant_options(name, str(tmp_path / "kv")))
            for name in VARIANTS}
    off, host, disk = runs.values()
    assert len(off["outputs"]) == 6 and off["outputs"] == host["outputs"] == disk["outputs"]
    assert off["num_evicted_tokens"] > 0
    for tiered in (host, disk):
        assert tiered["hits_by_tier"]["host"] > 0 and tiered["hit_rate"] > off["hit_rate"]


def test_restart_child_finds_the_prompt_on_disk_in_a_fresh_engine(tiny_model, tmp_path):
    storage = str(tmp_path / "kv")
    cold = restart_child(tiny_model, "float32", storage, 4)
    warm = restart_child(tiny_model, "float32", storage, 4)
    assert cold["prompt_tokens"] == warm["prompt_tokens"] >= 650 and cold["cached_tokens"] == 0
    assert warm["cached_tokens"] >= 0.9 * warm["prompt_tokens"] and warm["text"] == cold["text"]
