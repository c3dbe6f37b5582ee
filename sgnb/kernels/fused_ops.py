"""The fused decode-step ops, chosen once: the C++ kernels, or their torch references.

    ops = get_fused_ops(use_cpp=True)      # ops.name: "cpp" | "torch"
    h = ops.add_rms_norm(x, residual, weight, eps)            # residual += x in place; h = rms_norm(residual)
    ops.rope_store_kv(qkv, positions, cos, sin, num_heads, num_kv_heads, k_buffer, v_buffer, loc)

Signatures and semantics are those of `sgnb.kernels.fused_ref`; the C++ versions (`csrc/fused_ops.cpp`)
take fp32 or bf16 tensors whose last dimension is contiguous, compute in fp32 and round bf16 once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sgnb.kernels import fused_ref


@dataclass(frozen=True, slots=True)
class FusedOps:
    """One implementation of the fused ops (see `sgnb.kernels.fused_ref` for shapes)."""

    name: str                      # "cpp" | "torch"
    rms_norm: Callable             # (x [T, H], weight [H], eps) -> [T, H]
    add_rms_norm: Callable         # (x, residual [T, H], weight, eps) -> [T, H]; residual += x in place
    silu_mul: Callable             # (gate_up [T, 2 * I]) -> [T, I]
    rope_store_kv: Callable        # (qkv, positions, cos, sin, num_heads, num_kv_heads, k_buffer, v_buffer, loc)

    def __post_init__(self) -> None:
        if self.name not in ("cpp", "torch"):
            raise ValueError(f"name must be 'cpp' or 'torch', got {self.name!r}")


TORCH_OPS = FusedOps("torch", fused_ref.rms_norm, fused_ref.add_rms_norm, fused_ref.silu_mul,
                     fused_ref.rope_store_kv)


def get_fused_ops(use_cpp: bool) -> FusedOps:
    """The C++ ops when `use_cpp` and the extension loads; else the torch references."""
    if not use_cpp:
        return TORCH_OPS
    from sgnb.kernels.cpu_extension import load_cpu_extension

    ext = load_cpu_extension()
    if ext is None:
        return TORCH_OPS
    return FusedOps("cpp", ext.rms_norm, ext.add_rms_norm, ext.silu_mul, ext.rope_store_kv)
