"""The C++ decode stack (`sgnb/engine/models/llama_decode_stack.py`, `csrc/decode_stack.cpp`): a plain Llama on
packed weights runs its decode steps in one call, with exactly the per-layer fused path's results; other
models keep the per-layer path."""

from __future__ import annotations

import pytest
import torch

from sgnb.engine.weights import load_model
from sgnb.kernels.cpu_extension import load_cpu_extension
from tests.engine.paged_steps import step_logits

pytestmark = pytest.mark.skipif(load_cpu_extension() is None, reason="the C++ CPU kernels do not build here")


class CountingStack:
    """The model's real DecodeStack, counting the steps it runs (so a test knows the stack, not the per-layer
    path, produced the logits)."""

    def __init__(self, stack):
        self.stack, self.num_calls = stack, 0

    def forward(self, *args):
        self.num_calls += 1
        return self.stack.forward(*args)


@pytest.fixture(scope="module")
def tiny_folder(smollm2_path, tmp_path_factory):
    from tests.conftest import make_tiny_model

    # Qwen2: a Llama with q/k/v biases, so the stack carries a bias too
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", smollm2_path, architecture="Qwen2ForCausalLM")


@pytest.mark.parametrize("qtype", ["q4_1", "q8_0"])
def test_decode_steps_in_one_call_equal_the_per_layer_path_bit_for_bit(tiny_folder, qtype):
    model, _ = load_model(tiny_folder, torch.float32, "cpu", quantization=qtype, cpu_kernels=True)
    assert model.decode_stack is not None and model.decode_stack.num_layers == model.cfg.num_layers
    assert model.layers[0].self_attn.qkv_proj.bias is not None
    prompt = list(range(200, 237))
    model.decode_stack = counting = CountingStack(model.decode_stack)
    stacked = step_logits(model, prompt, 5, "cpu")
    assert counting.num_calls == 5                  # every decode step, not the prefill
    model.decode_stack = None                       # the per-layer fused path
    per_layer = step_logits(model, prompt, 5, "cpu")
    for ours, reference in zip(stacked, per_layer, strict=True):
        assert torch.equal(ours, reference)


def test_real_model_decode_steps_equal_the_per_layer_path(smollm2_path):
    if not (smollm2_path / "model.gguf").is_file():
        pytest.skip(f"{smollm2_path} keeps no model.gguf (pulled by an earlier version: sgnb pull --force)")
    model, _ = load_model(smollm2_path / "model.gguf", torch.bfloat16, "cpu", quantization="gguf", cpu_kernels=True)
    assert model.decode_stack is not None
    prompt = list(range(1000, 1020))
    model.decode_stack = counting = CountingStack(model.decode_stack)
    stacked = step_logits(model, prompt, 3, "cpu")
    assert counting.num_calls == 3
    model.decode_stack = None
    assert all(torch.equal(a, b) for a, b in zip(stacked, step_logits(model, prompt, 3, "cpu"), strict=True))


def test_models_the_stack_cannot_run_keep_the_per_layer_path(tiny_folder, smollm2_path, tmp_path):
    from tests.conftest import make_tiny_model

    dense, _ = load_model(tiny_folder, torch.float32, "cpu", cpu_kernels=True)            # dense projections
    assert dense.fused is not None and dense.decode_stack is None
    torch_path, _ = load_model(tiny_folder, torch.float32, "cpu", quantization="q8_0", cpu_kernels=False)
    assert torch_path.decode_stack is None
    qwen3 = make_tiny_model(tmp_path / "qwen3", smollm2_path, architecture="Qwen3ForCausalLM", head_dim=32)
    qk_norms, _ = load_model(qwen3, torch.float32, "cpu", quantization="q8_0", cpu_kernels=True)
    assert qk_norms.fused is not None and qk_norms.decode_stack is None


def test_bad_input_names_the_problem(tiny_folder):
    model, _ = load_model(tiny_folder, torch.float32, "cpu", quantization="q8_0", cpu_kernels=True)
    x = torch.randn(1, model.cfg.hidden_size)
    with pytest.raises(ValueError, match=r"expected 2 k and v buffers, got 1 and 1"):
        model.decode_stack.forward(x, torch.tensor([0]), model.rotary.cos, model.rotary.sin, [torch.zeros(4, 2, 16)],
                                   [torch.zeros(4, 2, 16)], torch.tensor([1]), torch.tensor([0, 1]),
                                   torch.tensor([1]), 0.25)
    ext = load_cpu_extension()
    with pytest.raises(ValueError, match="DecodeStack: no layers"):
        ext.DecodeStack([], 1e-5, 4, 2, 16)
