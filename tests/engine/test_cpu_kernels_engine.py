"""The engine on the C++ CPU kernels (fused decode-step ops, the "cpu" attention backend) with dense weights,
against `cpu_kernels=False`, today's torch path. Packed weights: test_quantized_model.py."""

from __future__ import annotations

import pytest
import torch

from sgnb.engine.weights import load_model
from sgnb.kernels.cpu_extension import load_cpu_extension
from tests.engine.paged_steps import relative_errors, step_logits
from tests.engine.test_engine import QUESTIONS, chat

pytestmark = pytest.mark.slow

needs_kernels = pytest.mark.skipif(load_cpu_extension() is None, reason="the C++ CPU kernels do not build here")
GREEDY = {"temperature": 0, "max_new_tokens": 24}


@needs_kernels
@pytest.mark.parametrize("batch_size", [1, 16])
def test_greedy_outputs_identical_with_the_kernels_on_and_off(engine, torch_engine, batch_size):
    assert engine.model.fused.name == "cpp" and engine.ops.name == "cpu"     # the session engine: defaults
    prompts = [chat(engine, q) for q in QUESTIONS[:batch_size]]
    ours = engine.generate(prompts, [GREEDY] * batch_size)
    reference = torch_engine.generate(prompts, [GREEDY] * batch_size)
    assert [r["output_ids"] for r in ours] == [r["output_ids"] for r in reference]
    engine.check_integrity()
    torch_engine.check_integrity()


@needs_kernels
def test_stats_name_the_kernels_in_use(engine, torch_engine):
    stats = engine.stats()
    assert stats["kernels"] == load_cpu_extension().cpu_isa() and stats["attention_backend"] == "cpu"
    assert (stats["quantization"], stats["weights"], stats["packed_weight_bytes"]) == (None, "dense", 0)
    engine.check_integrity()
    torch_engine.check_integrity()


def test_cpu_kernels_off_leaves_the_torch_path(torch_engine):
    stats = torch_engine.stats()
    assert (stats["kernels"], stats["attention_backend"], stats["weights"]) == ("torch", "torch", "dense")
    model = torch_engine.model
    assert model.fused is None and all(layer.mlp.fused is None for layer in model.layers)
    torch_engine.check_integrity()


def test_without_the_extension_the_engine_runs_the_torch_path(smollm2_path, tmp_path, monkeypatch):
    from sgnb.engine import Engine
    from sgnb.kernels import cpu_extension
    from tests.conftest import make_tiny_model

    folder = make_tiny_model(tmp_path / "tiny", smollm2_path)
    monkeypatch.setattr(cpu_extension, "load_cpu_extension", lambda: None)   # as where no compiler is found
    with Engine(str(folder), quantization="q8_0", max_total_tokens=256) as eng:
        assert len(eng.generate("Hello", GREEDY)["output_ids"]) == 24
        stats = eng.stats()
        assert (stats["kernels"], stats["attention_backend"], stats["weights"]) == ("torch", "torch", "dense")
        assert eng.model.fused is None
        eng.check_integrity()


@needs_kernels
@pytest.mark.parametrize("overrides", [{"architecture": "LlamaForCausalLM", "tie_word_embeddings": True},
                                       {"architecture": "Qwen3ForCausalLM", "head_dim": 24}], ids=["llama", "qwen3"])
def test_fused_layers_give_the_eager_layers_logits(smollm2_path, tmp_path, overrides):
    from tests.conftest import make_tiny_model

    folder = make_tiny_model(tmp_path / "tiny", smollm2_path, **overrides)
    fused, _ = load_model(folder, torch.float32, "cpu", cpu_kernels=True)
    eager, _ = load_model(folder, torch.float32, "cpu")
    assert fused.fused.name == "cpp" and eager.fused is None
    prompt = list(range(100, 140))
    assert relative_errors(step_logits(fused, prompt, 3, "cpu"), step_logits(eager, prompt, 3, "torch")).max() < 1e-5
