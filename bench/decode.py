"""Decode benchmark (issue 2, bench b): decode tokens/s at batch 1, 8 and 32, fp32 and bf16.

Baselines measured in the same run:
  - the GEMM floor: one pass of x @ W.T over every weight matrix with x of `batch` rows, the faster of
    plain F.linear and the engine's prepacked weights, fastest of its repeats. At batch 1 this is the
    weight-streaming bound (a decode step must read all weights once); at larger batches it is the
    matmul work alone, so floor tok/s / transformers tok/s caps any speedup over transformers;
  - transformers `generate` (greedy, batched, same prompts and lengths).
Decode time excludes prefill: each measurement is t(prompt + N tokens) - t(prompt + 1 token).

    .venv/bin/python bench/decode.py [--batch-sizes 1 8 32] [--dtypes float32 bfloat16] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.isolate import run_alone  # noqa: E402

PROMPT = "Write a long and detailed story about a dragon who learns to paint."


def run_times(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn, repeats: int) -> float:
    return statistics.median(run_times(fn, repeats))


def min_time(fn, repeats: int) -> float:
    """The fastest of `repeats` runs: a floor is what the machine can do, so noise must not lower it."""
    return min(run_times(fn, repeats))


def gemm_floors(path, dtype: torch.dtype, batch_sizes: list[int], repeats: int) -> dict[int, tuple[float, str]]:
    """Per batch size: seconds for the faster of two x @ W.T passes over all weight matrices (x of `batch`
    rows), and which: plain `F.linear`, or sgnb's own choice per weight (`sgnb.kernels.linear`: oneDNN
    prepacked weights where faster). The engine runs the latter, so the floor must count it too."""
    from safetensors.torch import load_file

    from sgnb.kernels.linear import make_linear

    weights = [w.to(dtype) for w in load_file(str(path / "model.safetensors")).values() if w.dim() == 2]
    kinds = {"F.linear": [lambda x, w=w: torch.nn.functional.linear(x, w) for w in weights],
             "prepacked": [make_linear(w) for w in weights]}
    floors = {}
    for batch in batch_sizes:
        xs = [torch.randn(batch, w.shape[1], dtype=dtype) for w in weights]
        best = None
        for kind, linears in kinds.items():
            def one_pass():
                for x, linear in zip(xs, linears):
                    linear(x)

            one_pass()
            seconds = min_time(one_pass, repeats)
            if best is None or seconds < best[0]:
                best = (seconds, kind)
        floors[batch] = best
    return floors


def sgnb_decode_rate(engine, prompt: str, batch: int, new_tokens: int, repeats: int) -> float:
    prompts = [prompt] * batch

    def gen(n):
        return lambda: engine.generate(prompts, {"max_new_tokens": n, "temperature": 0, "ignore_eos": True})

    gen(2)()
    full = median_time(gen(new_tokens), repeats)
    first = median_time(gen(1), repeats)
    return batch * (new_tokens - 1) / (full - first)


def hf_decode_rates(path, dtype: torch.dtype, tok, prompt: str, batch_sizes: list[int], new_tokens: int,
                    repeats: int) -> dict[int, float]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    return {b: hf_decode_rate(model, tok, prompt, b, new_tokens, repeats) for b in batch_sizes}


def hf_decode_rate(model, tok, prompt: str, batch: int, new_tokens: int, repeats: int) -> float:
    enc = tok([prompt] * batch, return_tensors="pt")

    def gen(n):
        def run():
            with torch.no_grad():
                model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                               pad_token_id=tok.pad_token_id)
        return run

    gen(2)()
    full = median_time(gen(new_tokens), repeats)
    first = median_time(gen(1), repeats)
    return batch * (new_tokens - 1) / (full - first)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-hf", action="store_true")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from sgnb.engine import Engine
    from sgnb.engine.model_store import resolve_model

    path = resolve_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(path)
    prompt = tok.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True)
    print(f"torch threads {torch.get_num_threads()}, {args.new_tokens} new tokens, median of {args.repeats}")
    print(f"{'dtype':9s} {'batch':>5s} {'sgnb tok/s':>11s} {'hf tok/s':>9s} {'vs hf':>7s} {'floor tok/s':>12s} "
          f"{'sgnb/floor':>11s} {'floor/hf':>9s}")
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        # each system runs alone: see bench/isolate.py for why a second live thread pool would skew both
        floors = run_alone(lambda: gemm_floors(path, dtype, args.batch_sizes, args.repeats * 3))
        ours: dict[int, float] = {}
        with Engine("smollm2-135m", dtype=dtype_name) as engine:
            for batch in args.batch_sizes:
                ours[batch] = sgnb_decode_rate(engine, prompt, batch, args.new_tokens, args.repeats)
            engine.check_integrity()
        theirs = {b: float("nan") for b in args.batch_sizes}
        if not args.skip_hf:
            theirs = run_alone(lambda: hf_decode_rates(path, dtype, tok, prompt, args.batch_sizes,
                                                       args.new_tokens, args.repeats))
        for batch in args.batch_sizes:
            floor = batch / floors[batch][0]
            print(f"{dtype_name:9s} {batch:5d} {ours[batch]:11.1f} {theirs[batch]:9.1f} "
                  f"{ours[batch] / theirs[batch]:6.2f}x {floor:12.1f} {ours[batch] / floor:11.0%} "
                  f"{floor / theirs[batch]:8.2f}x  ({floors[batch][1]})", flush=True)
    print("floor: the model's matmuls alone, by the faster of F.linear and prepacked weights (named last; "
          "batch 1: the weight-streaming bound); floor/hf: the largest speedup over transformers any engine "
          "could show with those matmuls")

if __name__ == "__main__":
    main()
