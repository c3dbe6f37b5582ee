"""Decode speed when the caller's thread has used torch too (a notebook's own torch code, a widget's math).

libgomp keeps a worker pool per thread that has run a parallel region; with two pools on a 2-core machine it
counts more threads than cores and puts idle workers to sleep at once, so every parallel region then pays a
thread wake-up (ARCHITECTURE.md, "Threads"). The engine runs on its own thread, so a notebook that multiplies
two matrices on the main thread puts the engine in that state. This measures batch-1 decode tok/s of the
packed GGUF model on the C++ kernels in four cases, all in one run on one engine:

  - the decode stack op by op (`stack.one_region = False`: each op its own parallel region, as before), and
    in one parallel region per step (the default),
  - each with the caller's thread idle, and after it ran a torch matmul (its worker pool alive).

The caller's torch work happens on a thread that is then kept alive, like a notebook kernel's main thread.

    .venv/bin/python bench/caller_threads.py [--new-tokens 32] [--repeats 5] [--dtype float32]
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.decode import PROMPT, sgnb_decode_rate  # noqa: E402


class CallerWithTorch:
    """A thread that runs one torch matmul (its OpenMP pool then lives) and stays alive until `close`."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="caller-with-torch", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        a = torch.randn(512, 512)
        (a @ a).sum()
        self._ready.set()
        self._done.wait()

    def close(self) -> None:
        self._done.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args()

    from sgnb.engine import Engine

    with Engine("smollm2-135m", dtype=args.dtype, quantization="gguf", cpu_kernels=True) as engine:
        stack = engine.model.decode_stack
        if stack is None:
            sys.exit("no decode stack here (the C++ kernels did not build): nothing to compare")
        prompt = engine.apply_chat_template([{"role": "user", "content": PROMPT}])
        rates: dict[tuple[str, str], float] = {}
        ran: dict[str, str] = {}             # what the stack's last step took ("per_op" where no region serves)
        for caller in ("idle", "used torch"):
            other = CallerWithTorch() if caller == "used torch" else None
            try:
                for path, one_region in (("op by op", False), ("one region", True)):
                    stack.one_region = one_region
                    rates[path, caller] = sgnb_decode_rate(engine, prompt, 1, args.new_tokens, args.repeats)[0]
                    ran[path] = stack.last_path
            finally:
                if other is not None:
                    other.close()
        stack.one_region = True
        engine.check_integrity()
        isa = engine.stats()["kernels"]

    print(f"batch-1 decode, {args.dtype}, packed GGUF on the C++ kernels ({isa}), torch threads "
          f"{torch.get_num_threads()}, {args.new_tokens} new tokens, median of {args.repeats}")
    print(f"the stack ran: op by op as {ran['op by op']!r}, one region as {ran['one region']!r}")
    print(f"{'caller thread':14s} {'op by op':>10s} {'one region':>11s} {'ratio':>7s}")
    for caller in ("idle", "used torch"):
        a, b = rates["op by op", caller], rates["one region", caller]
        print(f"{caller:14s} {a:8.1f}/s {b:9.1f}/s {b / a:6.2f}x")
    idle, used = rates["one region", "idle"], rates["one region", "used torch"]
    print(f"one region, caller used torch / idle: {used / idle:.2f}x "
          f"(op by op: {rates['op by op', 'used torch'] / rates['op by op', 'idle']:.2f}x)")


if __name__ == "__main__":
    main()
