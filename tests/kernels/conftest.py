"""Kernel tests run the Triton kernels on the CPU through the Triton interpreter.

`@triton.jit` picks interpreter or compiler when a kernel module is imported, so the variable is
set here, before any test module imports sgnb.kernels.triton_* (the root conftest sets it too, earlier).
"""

from __future__ import annotations

import os

os.environ["TRITON_INTERPRET"] = "1"
