"""Shared fixtures: the real SmolLM2 model folder, one shared engine, tiny random-weight models."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest

# `@triton.jit` picks the interpreter or the compiler when triton is first imported, and importing
# transformers' processors pulls triton in (through torch._dynamo) while test modules are collected, long
# before tests/kernels/conftest.py runs: set it here, first. On the CPU "auto" still picks the torch backend.
os.environ["TRITON_INTERPRET"] = "1"

# `server` / `keyed_server`: a real `sgnb serve` over the shared engine, for every test folder that needs one
pytest_plugins = ("tests.serve.server_fixtures", "tests.vlm_fixtures")


@pytest.fixture(autouse=True)
def _python_sigint_handler():
    """Every test starts with Python's own SIGINT handler (KeyboardInterrupt), so that a handler some earlier
    test or library left behind cannot swallow the interrupt the Ctrl-C tests send."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from sgnb.engine.model_store import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def engine(smollm2_path):
    """One fp32 SmolLM2 engine for the whole session; tests must leave it idle and intact."""
    from sgnb.engine import Engine

    eng = Engine(str(smollm2_path), dtype="float32")
    yield eng
    eng.check_integrity()
    eng.shutdown()


def make_tiny_model(folder: Path, smollm2_path: Path, **overrides) -> Path:
    """A random-weight HF model folder (saved by transformers) that shares SmolLM2's tokenizer."""
    import torch
    import transformers

    arch = overrides.pop("architecture", "LlamaForCausalLM")
    config_cls = getattr(transformers, arch.removesuffix("ForCausalLM") + "Config")   # e.g. LlamaConfig
    base = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    base.update(overrides)
    torch.manual_seed(0)
    model = getattr(transformers, arch)(config_cls(**base))
    with torch.no_grad():
        for p in model.parameters():        # larger-than-default weights make differences visible
            p.normal_(0, 0.2)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if (smollm2_path / name).exists():
            shutil.copy(smollm2_path / name, folder / name)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architectures"] == [arch]
    return folder
