"""Choosing the attention ops once, at engine start.

    ops = get_attention_ops(attention_backend, device)     # "auto" | "torch" | "cpu" | "triton" | "flash"
    ops.store_kv(k_buffer, v_buffer, loc, k, v)
    o = ops.extend_attention(q, k_extend, v_extend, k_buffer, v_buffer, qo_indptr, kv_indptr, kv_indices, sm_scale)
    o = ops.decode_attention(q, k_buffer, v_buffer, kv_indptr, kv_indices, sm_scale)

Rules: "torch" is `torch_batched` (any device; tests hold it to the `torch_ref` reference). "cpu" is the C++
extension's store_kv and decode_attention (`sgnb.kernels.cpu_extension`) with torch_batched's extend. "triton"
needs the triton package and a CUDA device, or TRITON_INTERPRET=1 (tests). "flash" needs the optional vllm-flash-attn package (see
`sgnb.kernels.flash_backend` for its torch==2.4 pin) and a CUDA device. "auto" is "triton" on CUDA
when triton imports; on the CPU "cpu" when the C++ kernels build (and `cpu_kernels` is left True); else
"torch". An unsatisfiable choice raises BackendUnavailableError.

This module imports neither torch nor triton until `get_attention_ops` is called.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Callable

from sgnb.kernels.errors import BackendUnavailableError

if TYPE_CHECKING:
    import torch

BACKEND_NAMES = ("auto", "torch", "cpu", "triton", "flash")
# extends of at most this many tokens per request run faster through the C++ decode kernel, one query per
# token, than as one torch_batched extend (measured with SmolLM2's heads over a 300-token prefix, batches of
# 1 and 8: the decode form wins up to 8 tokens in fp32, ties at 4-8 in bf16, loses from 16 on)
CPU_DECODE_FORM_MAX_EXTEND = 8


@dataclass(frozen=True, slots=True)
class AttentionOps:
    """One backend's kernels; all share the signatures of `sgnb.kernels.torch_ref`."""

    name: str
    store_kv: Callable[..., None]
    extend_attention: Callable[..., torch.Tensor]
    decode_attention: Callable[..., torch.Tensor]
    # decode_attention reads no tensor value on the host, so a decode step can be CUDA-graph captured
    is_graph_safe: bool
    # extend batches whose requests add at most this many tokens each may run through decode_attention,
    # one query per token (its K/V is stored first, so it reads the pool up to itself); 0: never
    max_decode_form_extend: int = 0


def _device_type(device: object) -> str:
    return str(device).split(":", 1)[0]


def _is_triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def _cpu_extension() -> ModuleType | None:
    from sgnb.kernels.cpu_extension import load_cpu_extension
    return load_cpu_extension()


def _triton_import_error() -> ImportError | None:
    try:
        importlib.import_module("triton")
    except ImportError as exc:
        return exc
    return None


def get_attention_ops(name: str = "auto", device: str | torch.device = "cpu", *,
                      cpu_kernels: bool = True) -> AttentionOps:
    """The attention ops for `name` ("auto" | "torch" | "cpu" | "triton" | "flash") on `device`;
    `cpu_kernels=False` keeps "auto" off the C++ kernels."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown attention backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}")
    device_type = _device_type(device)
    if name == "auto":
        if device_type == "cuda":
            name = "triton" if _triton_import_error() is None else "torch"
        else:
            name = "cpu" if device_type == "cpu" and cpu_kernels and _cpu_extension() is not None else "torch"

    if name == "torch":
        from sgnb.kernels import torch_batched
        return AttentionOps("torch", torch_batched.store_kv, torch_batched.extend_attention,
                            torch_batched.decode_attention, is_graph_safe=False,
                            max_decode_form_extend=torch_batched.DECODE_FORM_MAX_EXTEND)

    if name == "cpu":
        if device_type != "cpu":
            raise BackendUnavailableError(f"attention_backend='cpu' runs on the CPU, got device {str(device)!r}")
        ext = _cpu_extension()
        if ext is None:
            raise BackendUnavailableError("attention_backend='cpu' needs the C++ CPU kernels, which are off or did "
                                          "not build here (see the earlier notice)")
        from sgnb.kernels import torch_batched
        return AttentionOps("cpu", ext.store_kv, torch_batched.extend_attention, ext.decode_attention,
                            is_graph_safe=False, max_decode_form_extend=CPU_DECODE_FORM_MAX_EXTEND)

    if name == "triton":
        error = _triton_import_error()
        if error is not None:
            raise BackendUnavailableError(
                f"attention_backend='triton' needs the triton package (pip install 'triton>=3.0'): {error}")
        if device_type != "cuda" and not _is_triton_interpret():
            raise BackendUnavailableError(
                f"attention_backend='triton' runs on CUDA devices, got device {str(device)!r} "
                "(set TRITON_INTERPRET=1 before importing triton to run the kernels on the CPU, slowly)")
        from sgnb.kernels import triton_decode, triton_extend, triton_kv_store
        return AttentionOps("triton", triton_kv_store.store_kv, triton_extend.extend_attention,
                            triton_decode.decode_attention, is_graph_safe=True)

    # name == "flash"
    from sgnb.kernels import flash_backend
    flash_backend.require()
    if device_type != "cuda":
        raise BackendUnavailableError(f"attention_backend='flash' runs on CUDA devices, got device {str(device)!r}")
    return AttentionOps("flash", flash_backend.store_kv, flash_backend.extend_attention,
                        flash_backend.decode_attention, is_graph_safe=False)
