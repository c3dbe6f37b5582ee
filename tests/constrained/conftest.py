"""Fixtures: the real SmolLM2 tokenizer (loaded with transformers) and its TokenVocab."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_path), local_files_only=True)


@pytest.fixture(scope="session")
def vocab(tokenizer):
    from sgnb.constrained import TokenVocab

    return TokenVocab.from_tokenizer(tokenizer)


@pytest.fixture(autouse=True)
def _private_fsm_cache(tmp_path_factory, monkeypatch):
    """Keep the disk cache of compiled FSMs out of the user's ~/.cache during tests."""
    monkeypatch.setenv("SGNB_CACHE", str(tmp_path_factory.getbasetemp() / "sgnb-cache"))
