"""Shape, dtype, device and stride checks shared by the kernel host wrappers.

Every check looks at tensor metadata only: none reads tensor values, so none synchronises the
device and the wrappers stay usable inside CUDA-graph capture. In particular, slot ids in
`kv_indices` / `loc` are NOT range-checked; an out-of-range id is undefined behaviour on the GPU
(the torch reference raises an IndexError for it on the CPU).
"""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
INDEX_DTYPES = (torch.int32, torch.int64)


def check_rank(name: str, x: torch.Tensor, rank: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != rank:
        raise ValueError(f"{name} must have {rank} dims, got shape {tuple(x.shape)}")


def check_dtype(name: str, x: torch.Tensor, allowed: tuple[torch.dtype, ...]) -> None:
    if x.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        raise ValueError(f"{name} has dtype {x.dtype}; expected one of {names}")


def check_last_dim_contiguous(name: str, x: torch.Tensor) -> None:
    if x.shape[-1] > 1 and x.stride(-1) != 1:
        raise ValueError(f"{name} must be contiguous in its last dim (stride {x.stride(-1)}); "
                         "call .contiguous() first")


def check_index_vector(name: str, x: torch.Tensor) -> None:
    """A 1-D int32/int64 tensor with unit stride (kernels read it as a flat array)."""
    check_rank(name, x, 1)
    check_dtype(name, x, INDEX_DTYPES)
    if x.numel() > 1 and x.stride(0) != 1:
        raise ValueError(f"{name} must be contiguous; call .contiguous() first")


def check_same_device(**tensors: torch.Tensor) -> torch.device:
    devices = {name: t.device for name, t in tensors.items()}
    first = next(iter(devices.values()))
    others = {name: d for name, d in devices.items() if d != first}
    if others:
        listing = ", ".join(f"{n}={d}" for n, d in devices.items())
        raise ValueError(f"all tensors must be on one device; got {listing}")
    return first


def check_pool(k_buffer: torch.Tensor, v_buffer: torch.Tensor) -> tuple[int, int, int]:
    """Validate one layer's pool; returns (num_slots, num_kv_heads, head_dim)."""
    check_rank("k_buffer", k_buffer, 3)
    check_rank("v_buffer", v_buffer, 3)
    if k_buffer.shape != v_buffer.shape:
        raise ValueError(f"k_buffer {tuple(k_buffer.shape)} and v_buffer {tuple(v_buffer.shape)} "
                         "must have the same shape [num_slots, num_kv_heads, head_dim]")
    if k_buffer.dtype != v_buffer.dtype:
        raise ValueError(f"k_buffer ({k_buffer.dtype}) and v_buffer ({v_buffer.dtype}) must share a dtype")
    check_dtype("k_buffer", k_buffer, FLOAT_DTYPES)
    check_last_dim_contiguous("k_buffer", k_buffer)
    check_last_dim_contiguous("v_buffer", v_buffer)
    num_slots, num_kv_heads, head_dim = k_buffer.shape
    if num_kv_heads == 0 or head_dim == 0:
        raise ValueError(f"k_buffer has an empty head dimension: shape {tuple(k_buffer.shape)}")
    return num_slots, num_kv_heads, head_dim


def check_query(q: torch.Tensor, k_buffer: torch.Tensor, num_kv_heads: int, head_dim: int) -> int:
    """Validate q [n, num_heads, head_dim] against the pool; returns num_heads."""
    check_rank("q", q, 3)
    check_dtype("q", q, FLOAT_DTYPES)
    check_last_dim_contiguous("q", q)
    if q.dtype != k_buffer.dtype:
        raise ValueError(f"q ({q.dtype}) and the KV pool ({k_buffer.dtype}) must share a dtype")
    num_heads = q.shape[1]
    if q.shape[2] != head_dim:
        raise ValueError(f"q head_dim {q.shape[2]} != pool head_dim {head_dim}")
    if num_heads == 0 or num_heads % num_kv_heads != 0:
        raise ValueError(f"num_heads ({num_heads}) must be a positive multiple of num_kv_heads ({num_kv_heads})")
    return num_heads


def check_indptr_pair(a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> int:
    """Two indptr vectors of one batch; returns the batch size."""
    check_index_vector(a_name, a)
    check_index_vector(b_name, b)
    if a.numel() == 0:
        raise ValueError(f"{a_name} must have batch + 1 >= 1 entries")
    if a.numel() != b.numel():
        raise ValueError(f"{a_name} ({a.numel()} entries) and {b_name} ({b.numel()} entries) "
                         "must both have batch + 1 entries")
    return a.numel() - 1


def check_sm_scale(sm_scale: float) -> float:
    try:
        value = float(sm_scale)
    except (TypeError, ValueError):
        raise ValueError(f"sm_scale must be a float, got {sm_scale!r}") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"sm_scale must be a positive finite float, got {sm_scale!r}")
    return value


def check_triton_device(device: torch.device, interpreted: bool) -> None:
    """Compiled Triton kernels need CUDA tensors (the interpreter, TRITON_INTERPRET=1, takes CPU ones)."""
    if not interpreted and device.type != "cuda":
        raise ValueError(f"Triton kernels need CUDA tensors, got {device} "
                         "(set TRITON_INTERPRET=1 before importing triton to run them on the CPU)")


def is_interpreted(kernel: object) -> bool:
    """Whether `@triton.jit` built `kernel` for the interpreter (decided when the module was imported)."""
    return type(kernel).__name__ == "InterpretedFunction"
