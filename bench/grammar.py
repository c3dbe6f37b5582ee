"""Grammar constraints (issue 17): compile time, mask overhead per token, end-to-end programs/s against outlines
and xgrammar, and the forward passes jump-forward saves.

  compile  cold compile of typical grammars (EBNF, Lark, a recursive JSON schema) over SmolLM2's 49k vocabulary
           by sgnb's grammar constraint (target <= 0.5 s); outlines' and xgrammar's compile of the workloads'
           grammars come from the end-to-end part
  mask     per-token overhead of a grammar constraint on random walks: the allowed-token mask applied to the
           logits plus advancing by the chosen token (target <= 100 us); baseline: the sampler's own work
  e2e      the workloads of bench/grammar_workloads.py (a small SQL subset; a keyword-heavy XML record), greedy,
           batch (all prompts at once) and one at a time:
             sgnb with jump-forward  vs  sgnb without (same engine, per-request `jump_forward`, cache flushed)
                                     vs  outlines (its CFG: the Lark grammar, llguidance backend) + transformers
                                     vs  xgrammar (the EBNF grammar, its transformers LogitsProcessor) + transformers
           The last two run in the bench venv (`make bench-envs`), through bench/constrained_json.py's worker;
           skipped, saying so, without it. Outputs are checked with the `lark` package's parser. Jump-forward:
           forward passes with and without it, forced tokens.

    .venv/bin/python bench/grammar.py [--parts compile,mask,e2e] [--num-programs 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.constrained_json import BENCH_PYTHON, PassTimer, Run, add_hf_runs, median_run, run_sgnb  # noqa: E402
from bench.constrained_mask import per_call_seconds  # noqa: E402
from bench.grammar_workloads import (  # noqa: E402
    PERSON_EBNF,
    SQL_EBNF,
    SQL_LARK,
    GrammarWorkload,
    build_workloads,
    parses,
)

ARITH_EBNF = r"""
root ::= expr
expr ::= term (("+" | "-") term)*
term ::= factor (("*" | "/") factor)*
factor ::= [0-9]+ | "(" expr ")"
"""
LISTS_LARK = r"""
start: list
list: "[" (item ("," item)*)? "]"
item: /[0-9]+/ | list
"""
TREE_SCHEMA = {"$defs": {"node": {"type": "object", "properties": {
    "value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
    "required": ["value", "children"]}}, "$ref": "#/$defs/node"}
#: the compile suite: (name, sampling params of the constraint)
COMPILE_SUITE = [
    ("arithmetic (ebnf)", {"ebnf": ARITH_EBNF}),
    ("nested lists (lark)", {"lark": LISTS_LARK}),
    ("sql subset (ebnf)", {"ebnf": SQL_EBNF}),
    ("sql subset (lark)", {"lark": SQL_LARK}),
    ("xml record (ebnf)", {"ebnf": PERSON_EBNF}),
    ("recursive tree (json schema)", {"json_schema": json.dumps(TREE_SCHEMA)}),
]


# ---------------------------------------------------------------------------- compile and mask


def _params(spec: dict, max_new_tokens: int = 64):
    from sgnb.engine.sampling_params import SamplingParams

    return SamplingParams(max_new_tokens=max_new_tokens, **spec)


def bench_compile(engine, repeats: int) -> list[tuple[str, float]]:
    """Best-of-`repeats` cold compile seconds of each grammar of the suite (compiled grammars dropped first; the
    tokenizer's one-time llguidance setup is not counted)."""
    from sgnb.constrained import TokenVocab
    from sgnb.engine.constraint import build_constraint
    from sgnb.engine.grammar_constraint import tokenizer_entry

    vocab = TokenVocab.from_tokenizer(engine.tokenizer, eos_token_ids=engine.eos_ids)
    t0 = time.perf_counter()
    entry = tokenizer_entry(engine.tokenizer, vocab, max(engine.model_config.vocab_size, vocab.vocab_size),
                            engine.eos_ids)
    print(f"llguidance tokenizer for {vocab.vocab_size} tokens: {(time.perf_counter() - t0) * 1e3:.0f} ms (once)")
    rows = []
    for name, spec in COMPILE_SUITE:
        params, times = _params(spec), []
        for _ in range(repeats):
            entry.templates.clear()
            t0 = time.perf_counter()
            build_constraint(params, engine, params.max_new_tokens)
            times.append(time.perf_counter() - t0)
        rows.append((name, min(times)))
    return rows


def bench_mask(engine, num_walks: int = 8, walk_len: int = 48, repeats: int = 3) -> list[tuple]:
    """Per grammar, on random walks (a random allowed token each step, each walk run `repeats` times and each
    step's least disturbed time kept: the machine is shared): (name, mean seconds per token of the allowed-token
    mask + masked_fill, of advancing by the token, of the forced-bytes check jump-forward adds, tokens timed)."""
    import numpy as np
    import torch

    from sgnb.engine.constraint import build_constraint

    logits = torch.randn(engine.model_config.vocab_size)

    def walk(params, seed: int) -> np.ndarray:   # [steps, 4] seconds: mask, fill, advance, forced bytes
        rng, constraint, times = random.Random(seed), build_constraint(params, engine, params.max_new_tokens), []
        for _ in range(walk_len):
            if constraint.is_finished:
                break
            t0 = time.perf_counter()
            mask = constraint.allowed_mask()
            tm = time.perf_counter()
            logits.masked_fill(~mask, float("-inf"))
            t1 = time.perf_counter()
            allowed = [t for t in mask.nonzero().flatten().tolist() if t not in constraint.eos_token_ids]
            if not allowed:
                break
            token = allowed[rng.randrange(len(allowed))]
            t2 = time.perf_counter()
            constraint.advance(token, None)
            t3 = time.perf_counter()
            constraint.matcher.compute_ff_bytes()
            times.append((tm - t0, t1 - tm, t3 - t2, time.perf_counter() - t3))
        return np.array(times).reshape(-1, 4)

    rows = []
    for name, spec in COMPILE_SUITE:
        params = _params(spec)
        build_constraint(params, engine, params.max_new_tokens)   # compiled once, outside the timings
        steps = np.concatenate([np.minimum.reduce([walk(params, seed) for _ in range(repeats)])
                                for seed in range(num_walks)])
        rows.append((name, *steps.mean(axis=0), len(steps)))
    return rows


# ---------------------------------------------------------------------------- end to end


def grammar_params(workload: GrammarWorkload, max_new_tokens: int, jump_forward: bool) -> dict:
    return {"max_new_tokens": max_new_tokens, "temperature": 0, "ebnf": workload.ebnf, "jump_forward": jump_forward}


def print_mode(workload: GrammarWorkload, mode: str, rows: dict[str, list[Run]]) -> None:
    n = len(workload.prompts)
    on, off = median_run(rows["sgnb jump-forward"]), median_run(rows["sgnb no jump-forward"])
    print(f"\n{workload.name}, {mode}")
    print(f"  {'system':26s} {'programs':>8s} {'programs/s':>10s} {'out tok/s':>9s} {'passes':>6s} {'parse':>6s} "
          f"{'sgnb-jf speedup':>15s}")
    for name, runs in rows.items():
        run = median_run(runs)
        k = len(run.texts)
        num_parsed = sum(parses(workload.lark, t) for t in run.texts)
        passes = str(run.num_forward_passes) if name.startswith("sgnb") else "-"
        print(f"  {name:26s} {k:8d} {k / run.seconds:10.3f} {run.num_output_tokens / run.seconds:9.1f} {passes:>6s} "
              f"{num_parsed:>3d}/{k:<2d} {(n / on.seconds) / (k / run.seconds):14.2f}x")
    saved = off.num_forward_passes - on.num_forward_passes
    print(f"  jump-forward: {off.seconds / on.seconds:.2f}x programs/s; forward passes {off.num_forward_passes} -> "
          f"{on.num_forward_passes} (saved {saved}, {saved / max(off.num_forward_passes, 1):.0%}); forced tokens "
          f"{on.num_forced_tokens}/{on.num_output_tokens} ({on.num_forced_tokens / max(on.num_output_tokens, 1):.0%}) "
          f"in {on.num_jumps} jumps; greedy outputs identical with/without: "
          f"{sum(a == b for a, b in zip(on.texts, off.texts))}/{n}")
    print(f"  first output (sgnb jump-forward): {on.texts[0]!r}")


def bench_e2e(engine, args, model_path: Path) -> None:
    workloads = build_workloads(args.num_programs, engine.tokenizer)
    modes = [m for m in args.modes.split(",") if m]
    for w in workloads:
        lens = [len(engine.tokenizer(p)["input_ids"]) for p in w.prompts]
        print(f"{w.name}: {len(w.prompts)} prompts of {min(lens)}-{max(lens)} tokens")
    results: dict[tuple[str, str], dict[str, list[Run]]] = {}
    timer = PassTimer(engine)
    for w in workloads:   # compile and warm outside the timings
        for jf in (True, False):
            engine.generate(w.prompts[0], grammar_params(w, args.max_new_tokens, jf))
    for rep in range(args.repeats):
        for w in workloads:
            for mode in modes:
                rows = results.setdefault((w.name, mode), {"sgnb jump-forward": [], "sgnb no jump-forward": []})
                for jf in ((True, False) if rep % 2 == 0 else (False, True)):   # alternate who goes first
                    run = run_sgnb(engine, timer, w.prompts, grammar_params(w, args.max_new_tokens, jf),
                                   mode == "batch")
                    rows["sgnb jump-forward" if jf else "sgnb no jump-forward"].append(run)
        print(f"  sgnb repeat {rep + 1}/{args.repeats} done, load average {os.getloadavg()[0]:.1f}", flush=True)
    engine.check_integrity()

    python = Path(args.bench_python)
    compile_ms: dict[str, dict[str, float]] = {w.name: {} for w in workloads}
    if python.exists():
        jobs = [{"name": w.name, "ebnf": w.ebnf, "lark": w.lark, "prompts": w.prompts,
                 "input_ids": [engine.tokenizer(p)["input_ids"] for p in w.prompts]} for w in workloads]
        add_hf_runs(python, model_path, args, jobs, modes, results, compile_ms)
    else:
        print(f"outlines / xgrammar: skipped, no bench venv at {python} (run `make bench-envs`)")

    print("\nprograms/s and output tokens/s are medians over repeats; passes = forward passes of that run; "
          "parse = outputs the lark package parses; last column = sgnb jump-forward's programs/s / that system's "
          f"(outlines / xgrammar run the first {args.hf_subset} programs one at a time)")
    for w in workloads:
        for mode in modes:
            print_mode(w, mode, results[(w.name, mode)])
    print("\nbaselines' grammar compile (ms): " + "; ".join(
        f"{name}: " + ", ".join(f"{lib} {ms:.0f}" for lib, ms in per.items()) for name, per in compile_ms.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="compile,mask,e2e", help="comma list of compile, mask, e2e")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--num-programs", type=int, default=8, help="programs per workload")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per variant (median reported)")
    ap.add_argument("--modes", default="batch,sequential", help="comma list of batch, sequential")
    ap.add_argument("--iterations", type=int, default=500, help="mask part: calls per baseline timing")
    ap.add_argument("--bench-python", default=str(BENCH_PYTHON),
                    help="a Python with outlines, xgrammar, llguidance and transformers "
                         "(default: bench/.venv-constrained)")
    ap.add_argument("--hf-repeats", type=int, default=None, help="timed runs per outlines/xgrammar variant")
    ap.add_argument("--hf-subset", type=int, default=4, help="programs outlines / xgrammar run one at a time")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= {"compile", "mask", "e2e"}:
        raise SystemExit(f"--parts takes compile, mask and/or e2e, got {args.parts!r}")

    import torch

    from sgnb.engine import Engine
    from sgnb.engine.model_store import resolve_model

    load_start = os.getloadavg()
    model_path = resolve_model("smollm2-135m")
    print(f"dtype {args.dtype}, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, load average {load_start[0]:.1f}")
    with Engine("smollm2-135m", dtype=args.dtype) as engine:
        if "compile" in parts:
            rows = bench_compile(engine, args.repeats)
            print(f"\ncold grammar compile over {engine.model_config.vocab_size} tokens (best of {args.repeats}):")
            for name, seconds in rows:
                print(f"  {name:30s} {seconds * 1e3:8.1f} ms")
            times = sorted(s for _, s in rows)
            print(f"  p50 {statistics.median(times) * 1e3:.0f} ms, max {times[-1] * 1e3:.0f} ms   (target <= 500 ms)")
        if "mask" in parts:
            logits = torch.randn(engine.model_config.vocab_size)
            greedy = per_call_seconds(lambda: torch.argmax(logits), args.iterations, repeats=5)
            sample = per_call_seconds(lambda: torch.multinomial(torch.softmax(logits / 0.7, -1), 1), args.iterations,
                                      repeats=5)
            print(f"\nper-token overhead of a grammar constraint, mean over random walks (baselines: greedy argmax "
                  f"{greedy * 1e6:.1f} us, temperature sampling {sample * 1e6:.1f} us):")
            print(f"  {'grammar':30s} {'mask':>8s} {'advance':>8s} {'total':>8s} {'+fill':>8s} {'+forced':>8s} "
                  f"{'tokens':>6s} {'vs sampling':>11s}   (target: total <= 100 us)")
            for name, mask, fill, advance, forced, num_tokens in bench_mask(engine):
                total = mask + advance
                print(f"  {name:30s} {mask * 1e6:6.1f}us {advance * 1e6:6.1f}us {total * 1e6:6.1f}us "
                      f"{fill * 1e6:6.1f}us {forced * 1e6:6.1f}us {num_tokens:6d} "
                      f"{(sample + total + fill) / sample:10.2f}x")
            print("  mask: the grammar's allowed-token mask (llguidance's bitmask -> torch bool); advance: the trace "
                  "step and moving the matcher; +fill: masked_fill on the logits, the sampler's op for any mask (the "
                  "FSM's too; slow from this thread while the engine's thread keeps its own OpenMP pool); +forced: "
                  "the forced-bytes check jump-forward adds per token")
        if "e2e" in parts:
            print()
            bench_e2e(engine, args, model_path)
    load_end = os.getloadavg()
    print(f"\nload average (1 min) at start {load_start[0]:.1f}, at end {load_end[0]:.1f}, on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
