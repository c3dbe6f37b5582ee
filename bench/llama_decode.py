"""llama-cpp-python's decode tokens/s at batch 1 on a GGUF, measured the way bench/decode.py measures sgnb.

Greedy, EOS ignored; decode time excludes prefill: t(prompt + N tokens) - t(prompt + 1 token), each the median
of `--repeats` runs. Runs in bench/.venv-llama's Python (no torch, no sgnb there) and prints one JSON line:
{"tok_s", "prompt_tokens", "new_tokens", "threads", "output_ids"}. bench/decode.py starts it with its own
prompt text (chat template applied) and torch's thread count.

    bench/.venv-llama/bin/python bench/llama_decode.py MODEL.gguf --prompt TEXT [--new-tokens 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.llama_cpp_compat import load_llama  # noqa: E402


def generate(llm, prompt_ids: list[int], new_tokens: int) -> list[int]:
    """`new_tokens` greedy tokens after the prompt: one prefill and new_tokens - 1 decode steps.

    `Llama.generate` re-evaluates only the prompt's last token when the rest is already in its KV cache (as
    sgnb's radix cache does), so t(N) - t(1) is the N - 1 decode steps alone."""
    out: list[int] = []
    for token in llm.generate(list(prompt_ids), temp=0.0, repeat_penalty=1.0):
        out.append(token)
        if len(out) == new_tokens:
            break
    return out


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf")
    ap.add_argument("--prompt", required=True, help="the prompt text, chat template already applied")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    if args.new_tokens < 2 or args.repeats < 1 or args.threads < 1:
        ap.error("--new-tokens must be at least 2, --repeats and --threads positive")

    llm = load_llama(args.gguf, n_threads=args.threads)
    # the text carries the chat template's special tokens; like the HF tokenizer, no BOS is added
    prompt_ids = llm.tokenize(args.prompt.encode(), add_bos=False, special=True)
    output_ids = generate(llm, prompt_ids, args.new_tokens)        # warm-up, and the greedy output
    full = median_seconds(lambda: generate(llm, prompt_ids, args.new_tokens), args.repeats)
    first = median_seconds(lambda: generate(llm, prompt_ids, 1), args.repeats)
    print(json.dumps({"tok_s": (args.new_tokens - 1) / (full - first), "prompt_tokens": len(prompt_ids),
                      "new_tokens": args.new_tokens, "threads": args.threads, "output_ids": output_ids}))


if __name__ == "__main__":
    main()
