"""Kernel tests run the Triton kernels on the CPU through the Triton interpreter.

`@triton.jit` picks interpreter or compiler when a kernel module is imported, so the variable is
set here, before any test module imports sgnb.kernels.triton_* (the root conftest sets it too, earlier).
"""

from __future__ import annotations

import os

import pytest

os.environ["TRITON_INTERPRET"] = "1"


# ------------------------------------------------------------------ the C++ CPU kernels

# best first: a cap at or below the CPU's own ISA selects that path (ext.set_isa_cap)
CPU_ISAS = ("avx512_vnni", "avx512", "avx2", "scalar")


@pytest.fixture(scope="session")
def ext():
    """The built C++ CPU extension; tests that need it skip where it does not build."""
    from sgnb.kernels.cpu_extension import load_cpu_extension

    module = load_cpu_extension()
    if module is None:
        pytest.skip("the C++ CPU kernels did not build here (no compiler, or SGNB_CPU_KERNELS=0)")
    return module


@pytest.fixture(params=CPU_ISAS)
def isa(request: pytest.FixtureRequest, ext):
    """Run the test's kernels on each ISA path (skipped where this CPU lacks it), then restore the cap."""
    if CPU_ISAS.index(request.param) < CPU_ISAS.index(ext.detected_isa()):
        pytest.skip(f"this CPU has no {request.param} (best: {ext.detected_isa()})")
    previous = ext.set_isa_cap(request.param)
    try:
        assert ext.cpu_isa() == request.param
        yield request.param
    finally:
        ext.set_isa_cap(previous)
