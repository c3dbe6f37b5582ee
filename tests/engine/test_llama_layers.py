"""The Llama layers' fast formulations against their textbook definitions."""

from __future__ import annotations

import pytest
import torch

from sgnb.engine.model_config import ModelConfig
from sgnb.engine.models.llama import RMS_NORM_MIN_ROWS, RMSNorm, Rotary, apply_rotary_


def _config() -> ModelConfig:
    return ModelConfig.from_dict({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
        "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("num_rows", [7, RMS_NORM_MIN_ROWS])     # both kernels (fp32 switches by row count)
def test_rms_norm_is_x_times_rsqrt_mean_square_times_weight(dtype, num_rows) -> None:
    norm = RMSNorm(96, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(96))
    norm.bind()
    x = (torch.randn(num_rows, 96) * 3).to(dtype)
    xf = x.float()
    expected = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(norm(x).float(), expected, atol=tol, rtol=tol)


def test_rms_norm_follows_reloaded_weights_after_bind() -> None:
    norm = RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.fill_(2.0)
    norm.bind()
    x = torch.ones(1, 8)
    assert torch.allclose(norm(x), torch.full((1, 8), 2.0), atol=1e-5)


def _rotate_half_reference(x: torch.Tensor, positions: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    head_dim = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    freqs = torch.outer(positions.double(), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)
    x1, x2 = x.double().chunk(2, dim=-1)
    return (x.double() * cos + torch.cat([-x2, x1], dim=-1) * sin).float()


@pytest.mark.parametrize("num_tokens", [1, 37])
def test_rotary_in_place_on_a_strided_view_matches_the_rotate_half_definition(num_tokens) -> None:
    cfg = _config()
    positions = torch.randint(0, cfg.max_context_len, (num_tokens,))
    cos, signed_sin = Rotary(cfg)(positions, torch.float32)
    fused = torch.randn(num_tokens, 8 * cfg.head_dim)          # a projection's output: heads, then other columns
    x = fused[:, :6 * cfg.head_dim].view(num_tokens, 6, cfg.head_dim)     # a strided view, as in the model
    expected = _rotate_half_reference(x.clone(), positions, cfg)
    untouched = fused[:, 6 * cfg.head_dim:].clone()
    out = apply_rotary_(x, cos, signed_sin)
    assert out.data_ptr() == x.data_ptr()                                 # written in place
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(fused[:, 6 * cfg.head_dim:], untouched)
