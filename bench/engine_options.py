"""The benchmarks' engine options for issue 20's kernels: `--quantization` and `--cpu-kernels/--no-cpu-kernels`.

"Before" is `--no-cpu-kernels` with dense weights (today's torch path); "after" is the C++ CPU kernels, with
`--quantization gguf` for the GGUF's own 4-bit blocks.
"""

from __future__ import annotations

import argparse
from typing import Any

from sgnb.engine.engine_config import QUANTIZATIONS


def add_engine_options(ap: argparse.ArgumentParser, quantization: str | None = None) -> None:
    """Add the two flags; `quantization` is --quantization's default ("none" on the command line: dense)."""
    default = quantization or "none"
    ap.add_argument("--quantization", default=default, choices=["none", *(q for q in QUANTIZATIONS if q)],
                    help=f"the engine's weights, Engine(quantization=...); none: dense (default {default})")
    ap.add_argument("--cpu-kernels", action=argparse.BooleanOptionalAction, default=True,
                    help="the engine's C++ CPU kernels (--no-cpu-kernels: today's torch path)")


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """Engine keyword arguments from the parsed flags."""
    return {"quantization": None if args.quantization == "none" else args.quantization,
            "cpu_kernels": args.cpu_kernels}
