"""Program-workload benchmark (issue 4): the SGLang paper's workloads on sgnb vs radix cache off vs transformers.

Workloads (sizes at --scale 1; `bench/programs/<name>.py`): few-shot MMLU, HellaSwag select, tree-of-thought
3x3, skeleton-of-thought, LLM judge (fork 6), multi-turn chat, JSON extraction. For each, in the same run:
  sgnb (radix cache on, run_batch)  vs  sgnb with radix_cache=False (a second Engine)
                                    vs  plain transformers, one program and one call at a time
and reports programs/s, the ratios, sgnb's cache hit rate and the tokens each system computes per program.
The transformers baseline times a subset of the programs (it runs them one after another, so its
programs/s is a per-program rate that does not depend on how many are run).

    .venv/bin/python -m bench.programs [--scale 1] [--workloads mmlu ...] [--repeats 3] [--dtype float32]
        [--quantization gguf] [--no-cpu-kernels]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):                 # `python bench/programs`: make `bench.programs` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.engine_options import add_engine_options, engine_options  # noqa: E402
from bench.programs import WORKLOAD_MODULES, load_workload  # noqa: E402
from bench.programs.runner import HF, NO_CACHE, SGNB, format_report, load_note, measure  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every workload's number of programs")
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOAD_MODULES), choices=list(WORKLOAD_MODULES))
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per sgnb system (median reported)")
    ap.add_argument("--hf-repeats", type=int, default=1, help="timed runs of the transformers baseline")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--num-threads", default="auto", help="run_batch threads ('auto' or a number)")
    ap.add_argument("--skip-hf", action="store_true", help="leave out the transformers baseline")
    ap.add_argument("--skip-no-cache", action="store_true", help="leave out the radix-cache-off engine")
    add_engine_options(ap)
    args = ap.parse_args(argv)
    if args.scale <= 0 or args.repeats < 1 or args.hf_repeats < 1:
        ap.error("--scale, --repeats and --hf-repeats must be positive")
    num_threads = args.num_threads if args.num_threads == "auto" else int(args.num_threads)

    import torch

    from bench.programs.hf_program import HFProgram
    from sgnb.lang.backends.engine_backend import EngineBackend

    started = time.perf_counter()
    print(f"dtype {args.dtype}, quantization {args.quantization}, cpu kernels {args.cpu_kernels}, "
          f"torch threads {torch.get_num_threads()}, scale {args.scale}, "
          f"median of {args.repeats} sgnb runs, {args.hf_repeats} transformers run(s); {load_note()}", flush=True)
    engine_args = {"dtype": args.dtype, **engine_options(args)}
    backends = {SGNB: EngineBackend(model="smollm2-135m", **engine_args)}
    if not args.skip_no_cache:
        backends[NO_CACHE] = EngineBackend(model="smollm2-135m", radix_cache=False, **engine_args)
    hf = None if args.skip_hf else HFProgram("smollm2-135m", args.dtype)
    for backend in backends.values():
        backend.engine.generate("warm up", {"max_new_tokens": 2})
    if hf is not None:
        hf.gen("warm up", max_tokens=2)

    results = []
    try:
        for name in args.workloads:
            workload = load_workload(name)
            num, num_hf = workload.sizes(args.scale)
            t0 = time.perf_counter()
            result = measure(workload, backends, hf, num, num_hf, args.repeats, args.hf_repeats, num_threads)
            results.append(result)
            rates = ", ".join(f"{k} {v.programs_per_s:.3f}/s" for k, v in result.systems.items())
            print(f"  {name}: {num} programs ({num_hf} on transformers) in {time.perf_counter() - t0:.0f} s: "
                  f"{rates}; hit rate {result.systems[SGNB].hit_rate:.1%}", flush=True)
    finally:
        for backend in backends.values():
            backend.shutdown()

    print("\n" + format_report(results))
    print(f"\nprogs: programs run by sgnb / timed on transformers (its programs/s is per program, extrapolated "
          f"from that subset). {HF}: greedy generate, one forward per select choice, same token FSM for JSON "
          f"and regex (no jump-forward). {NO_CACHE}: a second Engine with radix_cache=False. Hit rate: matched / "
          f"queried prompt tokens during sgnb's runs (cache flushed before each). Prefill tok/prog: prompt "
          f"tokens computed per program (sgnb counts jump-forward text here too).")
    print(f"total {time.perf_counter() - started:.0f} s; {load_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
