"""The fused decode-step ops: the C++ kernels against their torch references (`sgnb.kernels.fused_ref`),
on every ISA path, in fp32 and bf16; and the references against what the Llama model computes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from sgnb.engine.models.llama import RMSNorm, apply_rotary_
from sgnb.kernels import fused_ref, torch_ref
from sgnb.kernels.fused_ops import get_fused_ops

DTYPES = (torch.float32, torch.bfloat16)
NUM_TOKENS = (1, 3, 16, 100)


def randn(*shape: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def rope_tables(head_dim: int, max_pos: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and the signed sin table, as `sgnb.engine.models.llama.Rotary` builds them."""
    inv_freq = 1.0 / 10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    freqs = torch.outer(torch.arange(max_pos, dtype=torch.float64), inv_freq)
    return (torch.cat([freqs, freqs], dim=-1).cos().float(), torch.cat([-freqs, freqs], dim=-1).sin().float())


def kv_pool(num_slots: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """KVPool's layout: K and V as strided views of one [num_slots, 2, heads, head_dim] tensor."""
    kv = randn(num_slots, 2, num_kv_heads, head_dim, dtype=dtype, seed=99)
    return kv[:, 0], kv[:, 1]


# ------------------------------------------------------------------ references vs the model


def test_rms_norm_reference_matches_the_models_rmsnorm() -> None:
    norm = RMSNorm(576, 1e-5)
    norm.weight.data = randn(576, dtype=torch.float32, seed=1)
    norm.bind()
    for rows in (1, 100):                  # the fused LayerNorm path and F.rms_norm
        x = randn(rows, 576, dtype=torch.float32, seed=rows)
        torch.testing.assert_close(fused_ref.rms_norm(x, norm.weight.detach(), 1e-5), norm(x).detach())


def test_rope_store_kv_reference_matches_the_models_rotary_and_store() -> None:
    num_heads, num_kv_heads, d, num_tokens = 9, 3, 64, 5
    cos, sin = rope_tables(d)
    qkv = randn(num_tokens, (num_heads + 2 * num_kv_heads) * d, dtype=torch.float32, seed=2)
    positions = torch.tensor([0, 7, 8, 300, 511])
    loc = torch.tensor([4, 1, 9, 2, 3])
    k_buffer, v_buffer = kv_pool(10, num_kv_heads, d, torch.float32)
    qkv2, k2, v2 = qkv.clone(), k_buffer.clone(), v_buffer.clone()
    fused_ref.rope_store_kv(qkv, positions, cos, sin, num_heads, num_kv_heads, k_buffer, v_buffer, loc)

    heads = qkv2.view(num_tokens, -1, d)
    apply_rotary_(heads[:, :num_heads + num_kv_heads], cos[positions].unsqueeze(1), sin[positions].unsqueeze(1))
    torch_ref.store_kv(k2, v2, loc, heads[:, num_heads:num_heads + num_kv_heads], heads[:, num_heads + num_kv_heads:])
    torch.testing.assert_close(qkv, qkv2)
    torch.testing.assert_close(k_buffer, k2)
    torch.testing.assert_close(v_buffer, v2)


def test_silu_mul_reference_is_silu_of_gate_times_up() -> None:
    gate_up = randn(3, 2 * 37, dtype=torch.float32, seed=3)
    torch.testing.assert_close(fused_ref.silu_mul(gate_up), F.silu(gate_up[:, :37]) * gate_up[:, 37:])


# ------------------------------------------------------------------ C++ vs references


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_tokens", NUM_TOKENS)
@pytest.mark.parametrize("hidden", [576, 579, 8])
def test_rms_norm_matches_reference(ext, isa, dtype, num_tokens, hidden) -> None:
    x = randn(num_tokens, hidden, dtype=dtype, seed=num_tokens) * 3
    weight = randn(hidden, dtype=dtype, seed=hidden)
    out = ext.rms_norm(x, weight, 1e-6)
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out, fused_ref.rms_norm(x, weight, 1e-6))


def test_rms_norm_takes_fp32_weights_with_bf16_rows_and_strided_rows(ext, isa) -> None:
    base = randn(16, 1000, dtype=torch.bfloat16, seed=4)
    x = base[:, 100:676]                       # rows 1000 apart
    weight = randn(576, dtype=torch.float32, seed=5)
    torch.testing.assert_close(ext.rms_norm(x, weight, 1e-5), fused_ref.rms_norm(x, weight, 1e-5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_tokens", NUM_TOKENS)
@pytest.mark.parametrize("hidden", [576, 579])
def test_add_rms_norm_updates_residual_in_place_and_normalizes_it(ext, isa, dtype, num_tokens, hidden) -> None:
    x = randn(num_tokens, hidden, dtype=dtype, seed=6)
    residual = randn(num_tokens, hidden, dtype=dtype, seed=7)
    weight = randn(hidden, dtype=dtype, seed=8)
    x_before, expected_residual = x.clone(), residual.clone()
    expected = fused_ref.add_rms_norm(x, expected_residual, weight, 1e-5)
    out = ext.add_rms_norm(x, residual, weight, 1e-5)
    assert torch.equal(x, x_before)
    torch.testing.assert_close(residual, expected_residual)         # the sum, rounded to dtype once
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_tokens", NUM_TOKENS)
@pytest.mark.parametrize("intermediate", [1536, 37])
def test_silu_mul_matches_reference(ext, isa, dtype, num_tokens, intermediate) -> None:
    gate_up = randn(num_tokens, 2 * intermediate, dtype=dtype, seed=9) * 4
    out = ext.silu_mul(gate_up)
    assert out.shape == (num_tokens, intermediate) and out.dtype == dtype
    torch.testing.assert_close(out, fused_ref.silu_mul(gate_up))


def test_silu_mul_saturates_without_overflow(ext, isa) -> None:
    gate_up = torch.tensor([[-200.0, -90.0, 0.0, 90.0, 200.0] * 4 + [1.0] * 20])
    out = ext.silu_mul(gate_up)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, fused_ref.silu_mul(gate_up))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_tokens", NUM_TOKENS)
@pytest.mark.parametrize(("num_heads", "num_kv_heads", "head_dim"), [(9, 3, 64), (4, 4, 24), (8, 2, 128)])
def test_rope_store_kv_rotates_q_and_k_in_place_and_stores_k_v(ext, isa, dtype, num_tokens, num_heads,
                                                                num_kv_heads, head_dim) -> None:
    cos, sin = rope_tables(head_dim)
    width = (num_heads + 2 * num_kv_heads) * head_dim
    qkv = randn(num_tokens, width, dtype=dtype, seed=10)
    positions = torch.randint(0, 512, (num_tokens,), generator=torch.Generator().manual_seed(11))
    num_slots = num_tokens + 7
    loc = torch.randperm(num_slots - 1, generator=torch.Generator().manual_seed(12))[:num_tokens] + 1
    k_buffer, v_buffer = kv_pool(num_slots, num_kv_heads, head_dim, dtype)
    expected_qkv, expected_k, expected_v = qkv.clone(), k_buffer.clone(), v_buffer.clone()
    fused_ref.rope_store_kv(expected_qkv, positions, cos, sin, num_heads, num_kv_heads, expected_k, expected_v,
                            loc)
    assert ext.rope_store_kv(qkv, positions, cos, sin, num_heads, num_kv_heads, k_buffer, v_buffer, loc) is None
    torch.testing.assert_close(qkv, expected_qkv)
    torch.testing.assert_close(k_buffer, expected_k)                # untouched slots included
    torch.testing.assert_close(v_buffer, expected_v)
    v_cols = slice((num_heads + num_kv_heads) * head_dim, None)
    assert torch.equal(qkv[:, v_cols], expected_qkv[:, v_cols])     # v heads are copied, never rotated


def test_rope_store_kv_converts_bf16_heads_into_an_fp32_pool(ext, isa) -> None:
    cos, sin = rope_tables(64)
    qkv = randn(3, 15 * 64, dtype=torch.bfloat16, seed=13)
    positions, loc = torch.tensor([5, 6, 7]), torch.tensor([3, 1, 2])
    k_buffer, v_buffer = kv_pool(4, 3, 64, torch.float32)
    qkv2, k2, v2 = qkv.clone(), k_buffer.clone(), v_buffer.clone()
    ext.rope_store_kv(qkv, positions, cos, sin, 9, 3, k_buffer, v_buffer, loc)
    fused_ref.rope_store_kv(qkv2, positions, cos, sin, 9, 3, k2, v2, loc)
    torch.testing.assert_close(qkv, qkv2)
    torch.testing.assert_close(k_buffer, k2)
    torch.testing.assert_close(v_buffer, v2)


def test_rope_store_kv_takes_the_tables_of_a_bf16_model(ext, isa) -> None:
    """A model cast to bf16 casts its Rotary tables too."""
    cos, sin = (t.bfloat16() for t in rope_tables(64))
    qkv = randn(2, 15 * 64, dtype=torch.bfloat16, seed=14)
    positions, loc = torch.tensor([3, 400]), torch.tensor([1, 2])
    k_buffer, v_buffer = kv_pool(3, 3, 64, torch.bfloat16)
    qkv2, k2, v2 = qkv.clone(), k_buffer.clone(), v_buffer.clone()
    ext.rope_store_kv(qkv, positions, cos, sin, 9, 3, k_buffer, v_buffer, loc)
    fused_ref.rope_store_kv(qkv2, positions, cos, sin, 9, 3, k2, v2, loc)
    torch.testing.assert_close(qkv, qkv2)
    torch.testing.assert_close(k_buffer, k2)


def test_bad_arguments_raise_clear_errors(ext) -> None:
    cos, sin = rope_tables(64)
    qkv = torch.zeros(2, 15 * 64)
    k_buffer, v_buffer = kv_pool(4, 3, 64, torch.float32)
    with pytest.raises(RuntimeError, match=r"loc\[1\] = 4 is out of range \[0, 4\)"):
        ext.rope_store_kv(qkv, torch.tensor([0, 1]), cos, sin, 9, 3, k_buffer, v_buffer, torch.tensor([1, 4]))
    with pytest.raises(RuntimeError, match=r"positions\[0\] = 512 is out of range"):
        ext.rope_store_kv(qkv, torch.tensor([512, 1]), cos, sin, 9, 3, k_buffer, v_buffer, torch.tensor([1, 2]))
    with pytest.raises(RuntimeError, match=r"qkv must be \[num_tokens, \(8 \+ 2 \* 3\) \* 64\]"):
        ext.rope_store_kv(qkv, torch.tensor([0, 1]), cos, sin, 8, 3, k_buffer, v_buffer, torch.tensor([1, 2]))
    with pytest.raises(RuntimeError, match="x must be float32 or bfloat16, got Half"):
        ext.rms_norm(torch.zeros(1, 8, dtype=torch.float16), torch.ones(8), 1e-5)
    with pytest.raises(RuntimeError, match="weight must be a contiguous 1-D CPU tensor of 8 entries"):
        ext.rms_norm(torch.zeros(1, 8), torch.ones(9), 1e-5)
    with pytest.raises(RuntimeError, match="gate_up must have an even last dimension"):
        ext.silu_mul(torch.zeros(1, 7))
    with pytest.raises(RuntimeError, match="contiguous in its last dimension"):
        ext.silu_mul(torch.zeros(8, 2).t())


# ------------------------------------------------------------------ choosing the ops


def test_get_fused_ops_picks_the_cpp_kernels_when_asked_and_built(ext) -> None:
    ops = get_fused_ops(use_cpp=True)
    assert ops.name == "cpp" and ops.silu_mul is ext.silu_mul and ops.rope_store_kv is ext.rope_store_kv
    torch_ops = get_fused_ops(use_cpp=False)
    assert torch_ops.name == "torch" and torch_ops.add_rms_norm is fused_ref.add_rms_norm


def test_get_fused_ops_falls_back_to_torch_without_the_extension() -> None:
    code = ("from sgnb.kernels.fused_ops import get_fused_ops; import sys; "
            "print(get_fused_ops(use_cpp=True).name, 'sgnb.kernels.fused_ref' in sys.modules)")
    env = {**os.environ, "SGNB_CPU_KERNELS": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["torch", "True"]
