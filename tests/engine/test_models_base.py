"""The model interface: every registered family is a CausalLM, and the loader talks to it only through it."""

from __future__ import annotations

import pytest
import torch

from sgnb.engine.model_config import ModelConfig
from sgnb.engine.models import model_class, supported_architectures
from sgnb.engine.models.base import CausalLM
from sgnb.engine.models.llama import LlamaForCausalLM, Rotary
from sgnb.engine.weights import load_model
from tests.conftest import make_tiny_model

TINY = dict(architecture="LlamaForCausalLM", vocab_size=64, hidden_size=16, intermediate_size=32, num_layers=1,
            num_heads=2, num_kv_heads=1, head_dim=8, max_context_len=32)


@pytest.mark.parametrize("architecture", supported_architectures())
def test_every_registered_family_implements_the_model_interface(architecture):
    family = model_class(architecture)
    assert issubclass(family, CausalLM)
    assert issubclass(family.config_type, ModelConfig)
    for hook in ("forward", "checkpoint_name_map", "bind_kernels", "build_buffers", "lm_head_weight"):
        assert getattr(family, hook) is not getattr(CausalLM, hook), f"{family.__name__} lacks {hook}"


def test_checkpoint_names_map_to_fused_parameters_and_skip_what_the_model_computes():
    model = LlamaForCausalLM(ModelConfig(**TINY, tie_word_embeddings=True))
    assert model.checkpoint_name_map("model.layers.0.self_attn.k_proj.weight") == ("layers.0.self_attn.qkv_proj.weight", 1)
    assert model.checkpoint_name_map("model.layers.0.mlp.up_proj.weight") == ("layers.0.mlp.gate_up_proj.weight", 1)
    assert model.checkpoint_name_map("model.norm.weight") == ("norm.weight", None)
    assert model.checkpoint_name_map("model.layers.0.self_attn.rotary_emb.inv_freq") is None
    assert model.checkpoint_name_map("lm_head.weight") is None                  # tied: the embedding is the head
    assert model.lm_head_weight is model.embed_tokens.weight
    untied = LlamaForCausalLM(ModelConfig(**TINY))
    assert untied.checkpoint_name_map("lm_head.weight") == ("lm_head.weight", None)
    assert untied.lm_head_weight is untied.lm_head.weight


def test_loaded_model_builds_its_own_rotary_tables(tmp_path, smollm2_path):
    """Built on the meta device, the tables get their values from the model's build_buffers, not the loader."""
    folder = make_tiny_model(tmp_path / "tiny", smollm2_path)
    model, cfg = load_model(folder, torch.float32, "cpu")
    assert all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()])
    fresh = Rotary(cfg)
    assert torch.equal(model.rotary.cos, fresh.cos) and torch.equal(model.rotary.sin, fresh.sin)
    assert model.rotary.cos.shape == (cfg.max_context_len, cfg.head_dim)
