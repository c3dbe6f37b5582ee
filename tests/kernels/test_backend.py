"""Backend selection rules of `get_attention_ops`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from paged_cases import make_decode_case

from sgnb.kernels import BackendUnavailableError, get_attention_ops, torch_batched, torch_ref
from sgnb.kernels.cpu_extension import load_cpu_extension


def test_torch_backend_is_the_batched_cpu_kernels_and_not_graph_safe() -> None:
    ops = get_attention_ops("torch", "cpu")
    assert ops.name == "torch" and not ops.is_graph_safe
    assert ops.max_decode_form_extend == torch_batched.DECODE_FORM_MAX_EXTEND > 0
    assert (ops.store_kv, ops.extend_attention, ops.decode_attention) == (
        torch_batched.store_kv, torch_batched.extend_attention, torch_batched.decode_attention)


def test_auto_picks_the_cpp_kernels_on_cpu_even_under_the_triton_interpreter() -> None:
    expected = "torch" if load_cpu_extension() is None else "cpu"
    assert get_attention_ops("auto", "cpu").name == expected
    assert get_attention_ops(device=torch.device("cpu")).name == expected


def test_auto_picks_torch_on_cpu_when_the_cpp_kernels_are_turned_off() -> None:
    assert get_attention_ops("auto", "cpu", cpu_kernels=False).name == "torch"
    assert get_attention_ops("auto", torch.device("cpu"), cpu_kernels=False).name == "torch"


def test_cpu_backend_on_cuda_is_refused() -> None:
    with pytest.raises(BackendUnavailableError, match="attention_backend='cpu' runs on the CPU"):
        get_attention_ops("cpu", "cuda:0")


def test_cpu_backend_without_the_extension_is_refused() -> None:
    code = ("from sgnb.kernels import get_attention_ops\n"
            "try:\n    get_attention_ops('cpu', 'cpu')\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
            "print(get_attention_ops('auto', 'cpu').name)")
    env = {**os.environ, "SGNB_CPU_KERNELS": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert "BackendUnavailableError attention_backend='cpu' needs the C++ CPU kernels" in out
    assert out.split()[-1] == "torch"


def test_auto_picks_triton_on_cuda_when_triton_imports() -> None:
    pytest.importorskip("triton", reason="triton is not installed")
    ops = get_attention_ops("auto", "cuda:0")
    assert ops.name == "triton" and ops.is_graph_safe
    assert ops.max_decode_form_extend == 0            # its short extends keep the extend kernel


def test_triton_on_cpu_runs_the_kernels_under_the_interpreter() -> None:
    pytest.importorskip("triton", reason="triton is not installed")
    ops = get_attention_ops("triton", "cpu")             # conftest sets TRITON_INTERPRET=1
    case = make_decode_case([3, 20], num_heads=2, num_kv_heads=1, head_dim=16, seed=30)
    torch.testing.assert_close(ops.decode_attention(*case.args()), torch_ref.decode_attention(*case.args()),
                               atol=2e-5, rtol=2e-5)


def test_triton_on_cpu_without_the_interpreter_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("triton", reason="triton is not installed")
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(BackendUnavailableError, match="runs on CUDA devices, got device 'cpu'"):
        get_attention_ops("triton", "cpu")


def test_without_triton_auto_falls_back_to_torch_and_triton_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "triton", None)      # `import triton` now raises ImportError
    assert get_attention_ops("auto", "cuda").name == "torch"
    with pytest.raises(BackendUnavailableError, match="needs the triton package"):
        get_attention_ops("triton", "cuda")


def test_unknown_backend_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown attention backend 'cudnn'"):
        get_attention_ops("cudnn")


def test_importing_the_package_loads_neither_torch_nor_triton() -> None:
    code = "import sys, sgnb.kernels; print(sorted(m for m in ('torch', 'triton') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
