"""The C++ decode stack (`sgnb/engine/models/llama_decode_stack.py`, `csrc/decode_stack.cpp`): a plain Llama on
packed weights runs its decode steps in one call, with exactly the per-layer fused path's results; other
models keep the per-layer path."""

from __future__ import annotations

import pytest
import torch

from sgnb.engine.attention import AttentionContext, ForwardMode
from sgnb.engine.kv_cache import KVPool
from sgnb.engine.weights import load_model
from sgnb.kernels.backend import get_attention_ops
from sgnb.kernels.cpu_extension import load_cpu_extension
from tests.engine.paged_steps import step_logits

pytestmark = pytest.mark.skipif(load_cpu_extension() is None, reason="the C++ CPU kernels do not build here")


class CountingStack:
    """The model's real DecodeStack, counting the steps it runs (so a test knows the stack, not the per-layer
    path, produced the logits), and how many of them ran the LM head inside too."""

    def __init__(self, stack):
        self.stack, self.num_calls, self.num_with_head = stack, 0, 0

    def __getattr__(self, name):
        return getattr(self.stack, name)

    def forward(self, *args):
        self.num_calls += 1
        return self.stack.forward(*args)

    def forward_logits(self, *args):
        self.num_calls += 1
        self.num_with_head += 1
        return self.stack.forward_logits(*args)


def can_run_one_region() -> bool:
    """Whether this machine takes the stack's one-region path (int8 dot products and a second thread)."""
    return load_cpu_extension().cpu_isa() == "avx512_vnni" and torch.get_num_threads() > 1


def batch_decode_logits(model, prompts: list[list[int]], num_steps: int) -> list[torch.Tensor]:
    """Each prompt prefilled on its own, then `num_steps` greedy decode steps of all of them in one batch; a
    sequence's slots interleave with the others' (token t of sequence j at slot 1 + t * len(prompts) + j), as
    a running batch's do in the engine. Returns each step's logits [len(prompts), vocab]."""
    cfg, num_seqs = model.cfg, len(prompts)
    lens = [len(p) for p in prompts]
    pool = KVPool(cfg, 1 + num_seqs * (max(lens) + num_steps), model.embed_tokens.weight.dtype, "cpu")
    ops = get_attention_ops("cpu", "cpu")

    def slots(j: int, ts) -> torch.Tensor:
        return torch.tensor([1 + t * num_seqs + j for t in ts])

    def context(mode, loc, qo_indptr, kv_lens, kv_indices):
        return AttentionContext(mode, ops, pool.k_buffers, pool.v_buffers, out_cache_loc=loc, qo_indptr=qo_indptr,
                                kv_indptr=torch.tensor([0, *kv_lens]).cumsum(0), kv_indices=kv_indices,
                                sm_scale=cfg.head_dim ** -0.5)

    with torch.inference_mode():
        last = [model(torch.tensor(p), torch.arange(n),
                      context(ForwardMode.EXTEND, slots(j, range(n)), torch.tensor([0, n]), [0],
                              torch.zeros(0, dtype=torch.int64)))[-1] for j, (p, n) in enumerate(zip(prompts, lens))]
        steps = []
        for _ in range(num_steps):
            tokens = torch.stack([row.argmax() for row in last])
            loc = torch.cat([slots(j, [n]) for j, n in enumerate(lens)])
            kv_indices = torch.cat([slots(j, range(n + 1)) for j, n in enumerate(lens)])
            steps.append(model(tokens, torch.tensor(lens), context(ForwardMode.DECODE, loc, torch.arange(num_seqs + 1),
                                                                  [n + 1 for n in lens], kv_indices)))
            last, lens = list(steps[-1]), [n + 1 for n in lens]
    return steps


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
    assert counting.num_with_head == 5              # the packed LM head ran inside the stack
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
    assert counting.num_calls == counting.num_with_head == 3
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_batch_in_one_parallel_region_equals_op_by_op_and_the_per_layer_path(tiny_folder, dtype):
    model, _ = load_model(tiny_folder, dtype, "cpu", quantization="q4_1", cpu_kernels=True)
    stack = model.decode_stack
    prompts = [list(range(200, 237)), list(range(300, 305)), list(range(400, 420))]   # different lengths
    one_region = batch_decode_logits(model, prompts, 4)
    assert stack.last_path == ("one_region" if can_run_one_region() else "per_op")
    stack.one_region = False
    op_by_op = batch_decode_logits(model, prompts, 4)
    assert stack.last_path == "per_op"
    model.decode_stack = None
    per_layer = batch_decode_logits(model, prompts, 4)
    for a, b, c in zip(one_region, op_by_op, per_layer, strict=True):
        assert a.shape == (3, model.cfg.vocab_size)
        assert torch.equal(a, b) and torch.equal(a, c)


def test_a_bad_slot_inside_a_step_raises_and_the_next_step_runs(tiny_folder):
    model, _ = load_model(tiny_folder, torch.float32, "cpu", quantization="q8_0", cpu_kernels=True)
    cfg, stack = model.cfg, model.decode_stack
    pool = KVPool(cfg, 16, torch.float32, "cpu")
    x = torch.randn(2, cfg.hidden_size)
    args = [torch.tensor([3, 1]), model.rotary.cos, model.rotary.sin, pool.k_buffers, pool.v_buffers,
            torch.tensor([5, 6]), torch.tensor([0, 4, 6])]
    with pytest.raises(RuntimeError, match=r"kv_indices\[3\] = 99 is out of range \[0, 16\)"):
        stack.forward(x.clone(), *args, torch.tensor([1, 2, 3, 99, 4, 6]), 0.25)
    good = torch.tensor([1, 2, 3, 5, 4, 6])
    ours = stack.forward(x.clone(), *args, good, 0.25)
    assert stack.last_path == ("one_region" if can_run_one_region() else "per_op")
    stack.one_region = False
    reference = stack.forward(x.clone(), *args, good, 0.25)
    assert all(torch.equal(a, b) for a, b in zip(ours, reference, strict=True))
    assert torch.isfinite(ours[0]).all()


def test_a_step_on_the_engine_thread_while_the_callers_pool_lives_gives_the_same_bits(tiny_folder):
    import threading

    model, _ = load_model(tiny_folder, torch.float32, "cpu", quantization="q4_1", cpu_kernels=True)
    prompts = [list(range(200, 230)), list(range(300, 310))]
    a = torch.randn(256, 256)
    (a @ a).sum()                                   # this thread's OpenMP pool is alive from here on
    here = batch_decode_logits(model, prompts, 3)
    box = {}
    thread = threading.Thread(target=lambda: box.update(steps=batch_decode_logits(model, prompts, 3),
                                                        path=model.decode_stack.last_path))
    thread.start()
    thread.join()
    assert box["path"] == ("one_region" if can_run_one_region() else "per_op")
    assert all(torch.equal(x, y) for x, y in zip(here, box["steps"], strict=True))


def test_a_stack_without_a_packed_lm_head_leaves_the_head_to_the_model(tiny_folder, monkeypatch):
    from sgnb.engine.models.llama_decode_stack import build_decode_stack

    model, _ = load_model(tiny_folder, torch.float32, "cpu", quantization="q8_0", cpu_kernels=True)
    assert model.decode_stack.has_lm_head
    prompt = list(range(200, 220))
    with_head = step_logits(model, prompt, 3, "cpu")
    monkeypatch.setattr(model, "packed_weights", {k: v for k, v in model.packed_weights.items() if k != "lm_head"})
    model.decode_stack = counting = CountingStack(build_decode_stack(model))
    assert not counting.has_lm_head
    without_head = step_logits(model, prompt, 3, "cpu")
    assert counting.num_calls == 3 and counting.num_with_head == 0
    assert all(torch.equal(a, b) for a, b in zip(with_head, without_head, strict=True))
    with pytest.raises(ValueError, match="this stack has no LM head"):
        counting.stack.forward_logits(torch.randn(1, model.cfg.hidden_size), torch.tensor([0]), model.rotary.cos,
                                      model.rotary.sin, [], [], torch.tensor([1]), torch.tensor([0, 1]),
                                      torch.tensor([1]), 0.25)
