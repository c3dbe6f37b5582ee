"""Packed 4/8-bit weights in the model and the engine: the GGUF's own Q4_1 blocks on the real SmolLM2
(`quantization="gguf"`), and an HF folder quantized at load (`"q8_0"`, `"q4_0"`) on a tiny random model.

The GGUF is the one `sgnb pull` keeps in the model's folder (`model.gguf`); a folder pulled by an earlier
version lacks it, and the tests that need it skip (`sgnb pull smollm2-135m --force` brings it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sgnb.engine.weights import load_model
from sgnb.kernels.cpu_extension import load_cpu_extension
from tests.engine.paged_steps import relative_errors, step_logits
from tests.engine.test_engine import QUESTIONS, chat

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(load_cpu_extension() is None, reason="the C++ CPU kernels do not build here")]

GREEDY = {"temperature": 0, "max_new_tokens": 24}


@pytest.fixture(scope="module")
def gguf_folder(smollm2_path: Path) -> Path:
    """The SmolLM2 folder, keeping its Q4_1 GGUF."""
    if not (smollm2_path / "model.gguf").is_file():
        pytest.skip(f"{smollm2_path} keeps no model.gguf (pulled by an earlier version: sgnb pull --force)")
    return smollm2_path


@pytest.fixture(scope="module")
def gguf_engine(gguf_folder):
    """fp32 activations on the GGUF's packed Q4_1 blocks, with every C++ kernel."""
    from sgnb.engine import Engine

    eng = Engine(str(gguf_folder), dtype="float32", quantization="gguf")
    yield eng
    eng.check_integrity()
    eng.shutdown()


@pytest.fixture(scope="module")
def tiny_folder(smollm2_path, tmp_path_factory) -> Path:
    from tests.conftest import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", smollm2_path)


def test_packed_q4_1_logits_match_the_dequantized_fp32_model(gguf_folder, torch_engine):
    packed, cfg = load_model(gguf_folder / "model.gguf", torch.float32, "cpu", quantization="gguf",
                             cpu_kernels=True)
    dense, _ = load_model(gguf_folder, torch.float32, "cpu")
    assert packed.packed_weights["layers.0.self_attn.qkv_proj.weight"].qtype == "q4_1"
    assert packed.packed_weights["lm_head"].qtype == "q8_0"        # the GGUF's own token_embd blocks
    prompt = torch_engine.tokenizer.encode(chat(torch_engine, QUESTIONS[0]))
    ours = step_logits(packed, prompt, 4, "cpu")
    reference = step_logits(dense, prompt, 4, "torch")
    # the decode steps saw the same tokens (each step feeds its own argmax)
    assert [step[-1].argmax().item() for step in ours] == [step[-1].argmax().item() for step in reference]
    assert relative_errors(ours, reference).max().item() < 1e-3
    torch_engine.check_integrity()


@pytest.mark.parametrize("batch_size", [1, 16])
def test_greedy_outputs_identical_on_packed_gguf_kernels_and_on_the_dense_torch_path(gguf_engine, torch_engine,
                                                                                    batch_size):
    prompts = [chat(torch_engine, q) for q in QUESTIONS[:batch_size]]
    ours = gguf_engine.generate(prompts, [GREEDY] * batch_size)
    reference = torch_engine.generate(prompts, [GREEDY] * batch_size)
    assert [r["output_ids"] for r in ours] == [r["output_ids"] for r in reference]
    gguf_engine.check_integrity()
    torch_engine.check_integrity()


def test_stats_report_the_packed_weights_and_the_kernels(gguf_engine, torch_engine):
    stats = gguf_engine.stats()
    assert stats["quantization"] == "gguf" and stats["weights"] == "packed"
    # 30 layers of Q4_1 projections (20 bytes per 32 weights, plus tile padding) and the Q8_0 head
    assert 90e6 < stats["packed_weight_bytes"] < 110e6
    assert stats["kernels"] == load_cpu_extension().cpu_isa() and stats["attention_backend"] == "cpu"
    reference = torch_engine.stats()
    assert (reference["quantization"], reference["weights"], reference["packed_weight_bytes"]) == (None, "dense", 0)
    assert (reference["kernels"], reference["attention_backend"]) == ("torch", "torch")
    gguf_engine.check_integrity()
    torch_engine.check_integrity()


def test_bf16_engine_on_packed_weights_answers_paris(gguf_folder):
    from sgnb.engine import Engine

    with Engine(str(gguf_folder), dtype="bfloat16", quantization="gguf", max_total_tokens=2048) as eng:
        out = eng.generate(chat(eng, "What is the capital of France?"), {"temperature": 0, "max_new_tokens": 16})
        assert "Paris" in out["text"]
        assert eng.stats()["weights"] == "packed"
        eng.check_integrity()


@pytest.mark.parametrize(("qtype", "tolerance"), [("q8_0", 0.03), ("q4_0", 0.4)])
def test_a_folder_quantized_at_load_gives_logits_close_to_dense(tiny_folder, qtype, tolerance):
    packed, _ = load_model(tiny_folder, torch.float32, "cpu", quantization=qtype, cpu_kernels=True)
    dequantized, _ = load_model(tiny_folder, torch.float32, "cpu", quantization=qtype, cpu_kernels=False)
    dense, _ = load_model(tiny_folder, torch.float32, "cpu")
    assert {w.qtype for name, w in packed.packed_weights.items() if name != "lm_head"} == {qtype}
    assert packed.packed_weights["lm_head"].qtype == "q8_0"          # the head stays at 8 bits
    assert dequantized.packed_weights == {}                            # no kernels: dense weights, packed values
    # a packed projection keeps no dense copy
    assert packed.layers[0].mlp.gate_up_proj.weight.numel() == 0 and packed.lm_head.weight.numel() == 0
    prompt = list(range(10, 40))
    ours = step_logits(packed, prompt, 3, "cpu")
    assert relative_errors(ours, step_logits(dequantized, prompt, 3, "torch")).max().item() < 1e-4
    assert relative_errors(ours, step_logits(dense, prompt, 3, "torch")).max().item() < tolerance


@pytest.mark.parametrize("qtype", ["q8_0", "q4_0"])
def test_engine_quantizes_a_folder_at_load_and_generates(tiny_folder, qtype):
    from sgnb.engine import Engine

    with Engine(str(tiny_folder), quantization=qtype, max_total_tokens=512) as eng:
        out = eng.generate(["Hello there", "One two three"], [GREEDY] * 2)
        assert [r["meta_info"]["completion_tokens"] for r in out] == [24, 24]
        stats = eng.stats()
        assert (stats["quantization"], stats["weights"]) == (qtype, "packed") and stats["packed_weight_bytes"] > 0
        eng.check_integrity()


def test_quantization_without_the_kernels_runs_dense_weights(tiny_folder):
    from sgnb.engine import Engine

    with Engine(str(tiny_folder), quantization="q4_0", cpu_kernels=False, max_total_tokens=512) as eng:
        eng.generate("Hello there", GREEDY)
        stats = eng.stats()
        assert (stats["quantization"], stats["weights"], stats["packed_weight_bytes"]) == ("q4_0", "dense", 0)
        assert (stats["kernels"], stats["attention_backend"]) == ("torch", "torch")
        eng.check_integrity()


def test_gguf_quantization_of_a_folder_without_a_gguf_is_refused(tiny_folder):
    from sgnb.engine import Engine
    from sgnb.engine.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="keeps no model.gguf"):
        Engine(str(tiny_folder), quantization="gguf")
