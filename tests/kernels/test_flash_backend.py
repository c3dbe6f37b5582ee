"""The optional vllm-flash-attn backend: selection without the package, input checks, KV packing.

The flash kernels themselves need CUDA and the package (pinned to torch 2.4); bench/gpu_kernels.py
compares them on a GPU when both are present.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from paged_cases import make_extend_case

from sgnb.kernels import BackendUnavailableError, get_attention_ops
from sgnb.kernels import flash_backend

HAS_FLASH = importlib.util.find_spec("vllm_flash_attn") is not None


@pytest.mark.skipif(HAS_FLASH, reason="vllm-flash-attn is installed here")
@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_selecting_flash_without_the_package_names_it_and_its_torch_pin(device: str) -> None:
    with pytest.raises(BackendUnavailableError, match=r"vllm-flash-attn .*torch==2\.4\.0"):
        get_attention_ops("flash", device)


def test_flash_ops_refuse_float32_before_touching_the_package() -> None:
    case = make_extend_case([4], [3], num_heads=2, num_kv_heads=1, head_dim=16)
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        flash_backend.extend_attention(*case.args())


def test_packed_kv_puts_each_prefix_before_its_new_tokens() -> None:
    prefix_lens, extend_lens = [0, 5, 2, 3], [4, 1, 0, 2]
    case = make_extend_case(prefix_lens, extend_lens, num_heads=2, num_kv_heads=1, head_dim=8, seed=40)
    k, v, cu_seqlens_k = flash_backend.pack_extend_kv(case.k_extend, case.v_extend, case.k_buffer, case.v_buffer,
                                                      case.qo_indptr, case.kv_indptr, case.kv_indices)
    assert cu_seqlens_k.dtype == torch.int32
    assert cu_seqlens_k.tolist() == [0, 4, 10, 12, 17]
    q0 = p0 = 0
    for i, (prefix_len, extend_len) in enumerate(zip(prefix_lens, extend_lens)):
        slots = case.kv_indices[p0:p0 + prefix_len]
        start, end = cu_seqlens_k[i].item(), cu_seqlens_k[i + 1].item()
        assert torch.equal(k[start:end], torch.cat([case.k_buffer[slots], case.k_extend[q0:q0 + extend_len]]))
        assert torch.equal(v[start:end], torch.cat([case.v_buffer[slots], case.v_extend[q0:q0 + extend_len]]))
        q0, p0 = q0 + extend_len, p0 + prefix_len
