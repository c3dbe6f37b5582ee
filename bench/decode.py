"""Decode benchmark (issues 2 and 20): decode tokens/s at batch 1, 8 and 32, fp32 and bf16, dense and packed.

Two sgnb configurations per dtype: "dense", today's engine (dense weights on the torch path), and the one under
test, by default "gguf+cpp": `Engine(quantization="gguf")`, the GGUF's own Q4_1 blocks packed, on the C++ CPU
kernels (`--quantization` and `--cpu-kernels/--no-cpu-kernels` choose it). Baselines measured in the same run:
  - the GEMM floor (dense rows): one pass of x @ W.T over every weight matrix with x of `batch` rows, the faster
    of plain F.linear and the engine's prepacked weights, fastest of its repeats. At batch 1 this is the
    weight-streaming bound (a decode step must read all weights once); at larger batches it is the
    matmul work alone, so floor tok/s / transformers tok/s caps any speedup over transformers;
  - the packed-weight streaming bound (the other rows): one pass over the weights that engine's decode step
    reads (every packed buffer, plus any weight its matmuls still read dense) through the extension's
    `stream_bytes`, the fastest of 3 right after each decode repeat (memory bandwidth drifts within minutes
    here, so a repeat is held to the bound of its own moment); bound tok/s = batch / the median of those
    times, and "of bound" is the median of the repeats' own ratios;
  - transformers `generate` (greedy, batched, same prompts and lengths);
  - llama-cpp-python on the same Q4_1 GGUF at batch 1 (bench/llama_decode.py in bench/.venv-llama's Python);
  - prefill tokens/s of a ~500-token prompt (max_new_tokens=1, prefix cache flushed before each run).
Decode time excludes prefill: each measurement is t(prompt + N tokens) - t(prompt + 1 token). Each system
runs alone (bench/isolate.py; llama-cpp-python in its own process while nothing else runs).

    .venv/bin/python bench/decode.py [--batch-sizes 1 8 32] [--dtypes float32 bfloat16] [--new-tokens 32]
        [--quantization gguf] [--no-cpu-kernels] [--llama-python bench/.venv-llama/bin/python] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine_options import add_engine_options, engine_options  # noqa: E402
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


def sgnb_decode_rate(engine, prompt: str, batch: int, new_tokens: int, repeats: int,
                     streamed: list[torch.Tensor] | None = None) -> tuple[float, float, float]:
    """(decode tok/s, bound tok/s, fraction of the bound). With `streamed`, each repeat is followed at once by
    its own streaming passes over those weights (the fastest of 3), so that a repeat and its bound see the same
    memory bandwidth (it drifts by 2x within minutes on a shared machine); the fraction is the median of the
    repeats' own ratios. Without it, the last two are NaN."""
    prompts = [prompt] * batch

    def gen(n):
        return lambda: engine.generate(prompts, {"max_new_tokens": n, "temperature": 0, "ignore_eos": True})

    gen(2)()
    steps, streams = [], []
    for _ in range(repeats):
        [full], [first] = run_times(gen(new_tokens), 1), run_times(gen(1), 1)
        steps.append((full - first) / (new_tokens - 1))          # seconds per decode step
        if streamed:
            streams.append(run_alone(lambda: stream_seconds(streamed, 3)))
    rate = batch / statistics.median(steps)
    if not streams:
        return rate, math.nan, math.nan
    return (rate, batch / statistics.median(streams),
            statistics.median(stream / step for stream, step in zip(streams, steps)))


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


def long_prompt(tok, num_tokens: int) -> str:
    """A chat prompt of at least `num_tokens` tokens (the prefill measurement's)."""
    sentences: list[str] = []
    while True:
        sentences.append(f"In chapter {len(sentences) + 1} the dragon mixes a new colour and paints the valley "
                         f"below the mountain, where the river bends twice before it reaches the sea.")
        text = tok.apply_chat_template([{"role": "user", "content": " ".join(sentences)}], tokenize=False,
                                       add_generation_prompt=True)
        if len(tok(text)["input_ids"]) >= num_tokens:
            return text


def sgnb_prefill_rate(engine, prompt: str, repeats: int) -> float:
    """Prompt tokens/s of one request with max_new_tokens=1, the prefix cache flushed before each run."""
    times = []
    for _ in range(repeats + 1):                       # the first run warms up
        engine.flush_cache()
        t0 = time.perf_counter()
        out = engine.generate(prompt, {"max_new_tokens": 1, "temperature": 0})
        times.append(time.perf_counter() - t0)
        assert out["meta_info"]["cached_tokens"] == 0
    return out["meta_info"]["prompt_tokens"] / statistics.median(times[1:])


@dataclass(slots=True)
class EngineRun:
    rates: dict[int, float]               # batch -> decode tok/s
    bounds: dict[int, float]              # batch -> streaming bound tok/s, measured between the repeats (or NaN)
    of_bound: dict[int, float]            # batch -> median over the repeats of their step's fraction of the bound
    prefill_rate: float                   # prompt tok/s
    output_ids: list[int]                 # batch 1's greedy tokens
    streamed: list[torch.Tensor]          # the weights one decode step reads (packed buffers and dense leftovers)
    kernels: str                          # what stats() says runs the step


def run_engine(dtype: str, options: dict, prompt: str, prefill_prompt: str, args) -> EngineRun:
    from sgnb.engine import Engine

    with Engine("smollm2-135m", dtype=dtype, **options) as engine:
        # the dense engine's bound is the GEMM floor (measured apart); packed weights stream between the repeats
        streamed = None if options == TODAY else streamed_weights(engine.model)
        measured = {b: sgnb_decode_rate(engine, prompt, b, args.new_tokens, args.repeats, streamed)
                    for b in args.batch_sizes}
        rates = {b: m[0] for b, m in measured.items()}
        prefill = sgnb_prefill_rate(engine, prefill_prompt, args.repeats)
        out = engine.generate(prompt, {"max_new_tokens": args.new_tokens, "temperature": 0, "ignore_eos": True})
        stats = engine.stats()
        run = EngineRun(rates, {b: m[1] for b, m in measured.items()}, {b: m[2] for b, m in measured.items()},
                        prefill, out["output_ids"], streamed_weights(engine.model),
                        f"{stats['weights']} weights ({stats['quantization']}), kernels {stats['kernels']}, "
                        f"attention {stats['attention_backend']}")
        engine.check_integrity()
    return run


def streamed_weights(model) -> list[torch.Tensor]:
    """The weights one decode step reads: every packed weight's buffers, and the projections (the LM head
    included) that stay dense. The embedding table is not streamed (a step looks up a few of its rows)."""
    packed = model.packed_weights                      # parameter name or "lm_head" -> PackedWeight
    names = model.projection_names()
    tensors = [t for weight in packed.values() for t in weight.tensors()]
    tensors += [model.get_parameter(name) for name in names if name not in packed]
    if "lm_head" not in packed and "lm_head.weight" not in names:
        tensors.append(model.lm_head_weight)           # a tied LM head, dense: the embedding table
    return tensors


def stream_seconds(tensors: list[torch.Tensor], repeats: int) -> float:
    """The fastest of `repeats` single passes over `tensors` through the extension's `stream_bytes`."""
    from sgnb.kernels.cpu_extension import load_cpu_extension

    ext = load_cpu_extension()
    if ext is None or not tensors:
        return math.nan
    ext.stream_bytes(tensors)
    return min_time(lambda: ext.stream_bytes(tensors), repeats)


def llama_decode(python: str, prompt: str, new_tokens: int, repeats: int) -> dict | None:
    """bench/llama_decode.py's JSON line (batch 1 tok/s, prompt length, greedy output), or None if it failed."""
    from sgnb.engine.model_store import resolve_gguf

    gguf = resolve_gguf("smollm2-135m")               # the Q4_1 GGUF our safetensors were converted from
    cmd = [python, str(ROOT / "bench" / "llama_decode.py"), str(gguf), "--prompt", prompt,
           "--new-tokens", str(new_tokens), "--repeats", str(repeats), "--threads", str(torch.get_num_threads())]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        print(f"llama-cpp-python failed (exit status {proc.returncode}): {proc.stderr[-500:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def agreeing_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


TODAY = {"quantization": None, "cpu_kernels": False}    # the dense engine on the torch path


def label(options: dict) -> str:
    """A configuration's short name: "dense" (today), "gguf+cpp" (packed GGUF blocks on the C++ kernels), ..."""
    return (options["quantization"] or "dense") + ("+cpp" if options["cpu_kernels"] else "")


def print_rows(dtype_name: str, batch_sizes: list[int], runs: dict[str, EngineRun], bounds: dict[str, dict],
               theirs: dict[int, float], llama: dict | None) -> None:
    """One row per batch size and configuration; ratios against transformers, the row's bound, today's dense
    engine and (batch 1) llama-cpp-python."""
    dense = runs.get(label(TODAY))
    for batch in batch_sizes:
        hf = theirs[batch]
        for name, run in runs.items():
            rate, bound = run.rates[batch], bounds[name][batch]
            of_bound = run.of_bound[batch] if not math.isnan(run.of_bound[batch]) else rate / bound
            vs_dense = rate / dense.rates[batch] if dense is not None else math.nan
            vs_llama = rate / llama["tok_s"] if llama is not None and batch == 1 else math.nan
            print(f"{dtype_name:9s} {batch:5d} {name:9s} {rate:7.1f} {hf:9.1f} {rate / hf:6.2f}x "
                  f"{bound:12.1f} {of_bound:9.0%} {bound / hf:8.2f}x {vs_dense:8.2f}x {vs_llama:8.2f}x",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prefill-tokens", type=int, default=500, help="the prefill measurement's prompt length")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--skip-dense", action="store_true", help="leave out today's dense engine and its floor")
    default_llama = ROOT / "bench" / ".venv-llama" / "bin" / "python"
    ap.add_argument("--llama-python", default=str(default_llama) if default_llama.exists() else None,
                    help="a Python with llama_cpp (default bench/.venv-llama's, when it exists)")
    ap.add_argument("--skip-llama", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads of every system, llama-cpp-python's included (default: torch's)")
    add_engine_options(ap, quantization="gguf")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)            # every thread's OpenMP pool takes this size

    from transformers import AutoTokenizer

    from bench.programs.runner import load_note
    from sgnb.engine.model_store import resolve_model

    path = resolve_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(path)
    prompt = tok.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True)
    prefill_prompt = long_prompt(tok, args.prefill_tokens)
    new = engine_options(args)
    systems = {label(new): new}
    if not args.skip_dense:
        systems = {label(TODAY): TODAY, **systems}
    print(f"torch threads {torch.get_num_threads()}, {args.new_tokens} new tokens, median of {args.repeats}; "
          f"{load_note()}", flush=True)

    llama = None
    if args.llama_python and not args.skip_llama and 1 in args.batch_sizes:
        llama = llama_decode(args.llama_python, prompt, args.new_tokens, args.repeats)
    elif not args.skip_llama:
        print("llama-cpp-python: skipped (needs batch 1 and --llama-python, e.g. after `make bench-envs`)")
    if llama is not None:
        print(f"llama-cpp-python, Q4_1 GGUF, batch 1: {llama['tok_s']:.1f} tok/s ({llama['threads']} threads, "
              f"prompt {llama['prompt_tokens']} tokens, sgnb's {len(tok(prompt)['input_ids'])})", flush=True)

    print(f"\n{'dtype':9s} {'batch':>5s} {'system':9s} {'tok/s':>7s} {'hf tok/s':>9s} {'vs hf':>7s} "
          f"{'bound tok/s':>12s} {'of bound':>9s} {'bound/hf':>9s} {'vs dense':>9s} {'vs llama':>9s}")
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        # each system runs alone: see bench/isolate.py for why a second live thread pool would skew both
        runs = {name: run_engine(dtype_name, options, prompt, prefill_prompt, args)
                for name, options in systems.items()}
        bounds = {}
        for name, run in runs.items():
            if systems[name] == TODAY:       # the GEMM floor, as before the kernels
                floors = run_alone(lambda: gemm_floors(path, dtype, args.batch_sizes, args.repeats * 3))
                bounds[name] = {b: b / floors[b][0] for b in args.batch_sizes}
            else:                            # streaming passes over what the step reads, between the repeats
                bounds[name] = run.bounds
        theirs = {b: math.nan for b in args.batch_sizes}
        if not args.skip_hf:
            theirs = run_alone(lambda: hf_decode_rates(path, dtype, tok, prompt, args.batch_sizes,
                                                       args.new_tokens, args.repeats))
        print_rows(dtype_name, args.batch_sizes, runs, bounds, theirs, llama)
        for name, run in runs.items():
            mib = sum(t.numel() * t.element_size() for t in run.streamed) / 2**20
            line = (f"{dtype_name:9s} {name}: {run.kernels}; a decode step streams {mib:.1f} MiB of weights; "
                    f"prefill {run.prefill_rate:.0f} tok/s ({len(tok(prefill_prompt)['input_ids'])}-token prompt)")
            if name != label(TODAY) and label(TODAY) in runs:
                line += f", {run.prefill_rate / runs[label(TODAY)].prefill_rate:.2f}x dense's"
            if llama is not None:
                agree = agreeing_prefix(run.output_ids, llama["output_ids"])
                line += f"; greedy tokens agree with llama-cpp-python's for {agree}/{args.new_tokens}"
            print(line, flush=True)
    print("bound: for dense, the model's matmuls alone by the faster of F.linear and prepacked weights (batch 1: "
          "the weight-streaming bound); for the others, batch / one streaming pass over the weights the step "
          f"reads. bound/hf: the largest speedup over transformers that bound allows. {load_note()}")


if __name__ == "__main__":
    main()
