"""Run code in a fresh interpreter, to see what an import really loads."""

from __future__ import annotations

import os
import subprocess
import sys

HEAVY_MODULES = ("torch", "triton", "ipywidgets", "transformers", "IPython")


def run_fresh(code: str) -> str:
    """stdout of `python -c code` with this checkout on the path; fails the test when the code fails."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr
    return out.stdout


def heavy_modules_after(code: str) -> list[str]:
    """The heavy modules loaded in a fresh interpreter after running `code`."""
    check = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    return [m for m in run_fresh(check).strip().split(",") if m]
