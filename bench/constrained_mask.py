"""Constrained-decoding mask overhead per token (issue 3): SmolLM2's 49,152 logits.

Per generated token a constrained request pays: looking up the (fsm, state) mask in a cache
(built from `TokenFSM.allowed_token_ids` on first use), one `masked_fill` on the logits, and
`TokenFSM.next_state` for the chosen token. Measured on the states random walks visit in
the key-heavy JSON schemas (character, city) and a regex.

Times are the best of 15 repeats (the machine is shared). Baselines measured in the same run: the unconstrained sampler work on the same logits
(greedy argmax; temperature softmax + multinomial), and one unconstrained decode step of the
model (transformers, batch 1, fp32, with KV cache).

    .venv/bin/python bench/constrained_mask.py [--iterations 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the schema suite lives in tests/

from bench.constrained_compile import decode_step_seconds  # noqa: E402


def per_call_seconds(fn, iterations: int, repeats: int = 15) -> float:
    """Best over repeats of the mean seconds per call (the machine is shared: the minimum is
    the least disturbed estimate)."""
    results = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iterations):
            fn()
        results.append((time.perf_counter() - t0) / iterations)
    return min(results)


def visited_states(fsm, vocab, seeds: int = 8) -> list[int]:
    from tests.constrained.regex_strategies import distances_to_accept, walk_fsm

    dist = distances_to_accept(fsm)
    states = []
    for seed in range(seeds):
        walk = walk_fsm(fsm, vocab, random.Random(seed), free_steps=20, dist=dist)
        states.extend(walk.states)
    return states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from sgnb.constrained import TokenVocab, compile_regex, schema_to_regex
    from sgnb.engine.model_store import resolve_model
    from tests.constrained.json_schemas import SCHEMAS

    path = resolve_model(args.model)
    vocab = TokenVocab.from_tokenizer(AutoTokenizer.from_pretrained(str(path), local_files_only=True))
    vocab_size = vocab.vocab_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, vocab {vocab_size}")

    logits = torch.randn(vocab_size)
    greedy = per_call_seconds(lambda: torch.argmax(logits), args.iterations)
    sample = per_call_seconds(lambda: torch.multinomial(torch.softmax(logits / 0.7, -1), 1), args.iterations)
    step = decode_step_seconds(path, repeats=20)
    print(f"baselines: greedy argmax {greedy * 1e6:.1f} us, temperature sampling {sample * 1e6:.1f} us, "
          f"decode step {step * 1e3:.1f} ms\n")

    workloads = {
        "character (json)": compile_regex(schema_to_regex(SCHEMAS["character"]), vocab),
        "city (json)": compile_regex(schema_to_regex(SCHEMAS["city"]), vocab),
        "regex": compile_regex(r"[A-Z][a-z]+, \d{1,3} (years|months)( old)?\.", vocab),
    }
    for name, fsm in workloads.items():
        states = visited_states(fsm, vocab)
        masks: dict[tuple[int, int], torch.Tensor] = {}

        def build(state: int) -> torch.Tensor:  # [vocab_size] bool, True = disallowed
            disallowed = torch.ones(vocab_size, dtype=torch.bool)
            disallowed[torch.from_numpy(fsm.allowed_token_ids(state).astype(np.int64))] = False
            return disallowed

        cold = []
        for state in dict.fromkeys(states):
            t0 = time.perf_counter()
            masks[(id(fsm), state)] = build(state)
            cold.append(time.perf_counter() - t0)
        allowed = {s: fsm.allowed_token_ids(s) for s in states}
        cursor = iter(range(10**12))

        def lookup_and_apply() -> torch.Tensor:
            state = states[next(cursor) % len(states)]
            return logits.masked_fill(masks[(id(fsm), state)], float("-inf"))

        def advance() -> int:
            state = states[next(cursor) % len(states)]
            ids = allowed[state]
            return fsm.next_state(state, int(ids[len(ids) // 2]))

        apply = per_call_seconds(lambda: logits.masked_fill(masks[(id(fsm), states[0])], float("-inf")),
                                 args.iterations)
        warm = per_call_seconds(lookup_and_apply, args.iterations)
        step_fsm = per_call_seconds(advance, args.iterations)
        overhead = warm + step_fsm
        print(f"{name}: {len(states)} visited token states ({len(cold)} distinct)")
        print(f"  masked_fill on {vocab_size} logits          {apply * 1e6:7.1f} us")
        print(f"  cache lookup + masked_fill                 {warm * 1e6:7.1f} us")
        print(f"  fsm.next_state                             {step_fsm * 1e6:7.1f} us")
        print(f"  per-token overhead (warm)                  {overhead * 1e6:7.1f} us   (target <= 100 us)")
        print(f"  first visit: mask build  median {statistics.median(cold) * 1e6:.0f} us, max {max(cold) * 1e6:.0f} us")
        print(f"  ratio vs unconstrained: greedy {(greedy + overhead) / greedy:.2f}x, "
              f"sampling {(sample + overhead) / sample:.2f}x, decode step {(step + overhead) / step:.4f}x\n")


if __name__ == "__main__":
    main()
