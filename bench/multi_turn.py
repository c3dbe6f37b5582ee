"""Multi-turn chat on a small KV pool: the tiered cache (issue 16) against the radix cache alone, in one run.

SGLang's multi_turn_chat shape, scaled for a small CPU: `--sessions` conversations of `--turns` turns. Each turn
appends a user message of 65-125 tokens to its conversation and generates 16-32 tokens (greedy, fixed lengths).
`--parallel` sessions at a time send their next turn together (one batch); the groups take turns round-robin,
so by the time a conversation comes back the pool (`--max-total-tokens`: room for a few conversations) has
evicted it. Each variant runs on a fresh engine:

  tiers off          the radix cache alone: an evicted conversation is computed again
  host tier          evicted KV is kept in host memory and loaded back (`enable_hierarchical_cache=True`)
  host + disk tier   ... and also written to a storage folder (`hicache_storage_dir`, a fresh empty folder)

It prints turns/s (the programs/s of this workload), the hit rate (cached / prompt tokens), the tokens each tier
served, and each variant's speedup over tiers off; greedy outputs must be identical across variants.

`--restart` measures instead the time to first token of a ~700-token few-shot prompt in a fresh process whose
storage folder is cold (empty) and then warm (written by the cold process), and prints the ratio.

    .venv/bin/python bench/multi_turn.py [--sessions 12] [--turns 6] [--parallel 4] [--max-total-tokens 3584]
    .venv/bin/python bench/multi_turn.py --restart [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fewshot import GUIDE, SHOTS  # noqa: E402

SYSTEM = "You are a friendly assistant. Answer in plain, short sentences and stay on the user's topic."
TOPICS = ["my vegetable garden", "learning the guitar", "a trip to Portugal", "training for a 10 km run",
          "my first sourdough", "moving to a new flat", "a birthday party for my son", "a small online shop",
          "my grandmother's old camera", "a long bike tour", "learning Spanish", "a rescue dog"]
SENTENCES = [
    "I have been thinking about {topic} for a few weeks now and I still do not know where to start.",
    "My budget is small, so anything expensive is out of the question for {topic}.",
    "A friend told me that the first month of {topic} is always the hardest part.",
    "I can spend about two evenings a week on {topic}, sometimes a bit more at the weekend.",
    "Last time I tried something like {topic} I gave up too early, and I would like to avoid that.",
    "My family is supportive, but nobody at home knows much about {topic}.",
    "I read a few articles about {topic} online and they all seemed to disagree with each other.",
    "The weather here changes a lot, which might matter for {topic}.",
    "I keep a notebook with my plans for {topic}, but it is getting messy.",
    "I would like to see some progress with {topic} before the summer holidays.",
    "Sometimes I worry that {topic} will take more time than I really have.",
    "There is a small club in my town where people meet to talk about {topic}.",
]
VARIANTS = ("tiers off", "host tier", "host + disk tier")


def conversations(num_sessions: int, num_turns: int, seed: int = 0) -> list[list[tuple[str, int]]]:
    """Each session's turns as (user message, new tokens): 3-5 sentences (65-125 tokens), 16-32 new tokens."""
    rng = random.Random(seed)
    sessions = []
    for s in range(num_sessions):
        topic = TOPICS[s % len(TOPICS)]
        turns = []
        for t in range(num_turns):
            body = " ".join(rng.sample(SENTENCES, rng.randint(3, 5))).format(topic=topic)
            turns.append((f"(Chat {s + 1}, message {t + 1}) {body} What would you suggest?", rng.randint(16, 32)))
        sessions.append(turns)
    return sessions


def variant_options(name: str, storage_dir: str) -> dict[str, Any]:
    return {"tiers off": {}, "host tier": {"enable_hierarchical_cache": True},
            "host + disk tier": {"enable_hierarchical_cache": True, "hicache_storage_dir": storage_dir}}[name]


def run_chat(model: str, dtype: str, sessions: list[list[tuple[str, int]]], parallel: int, max_total_tokens: int,
             options: dict[str, Any]) -> dict[str, Any]:
    """Every session's turns on a fresh engine, `parallel` sessions a batch, the batches round-robin; turns/s,
    hit rate, outputs, hits by tier."""
    from sgnb.engine import Engine

    histories = [[{"role": "system", "content": SYSTEM}] for _ in sessions]
    groups = [range(i, min(i + parallel, len(sessions))) for i in range(0, len(sessions), parallel)]
    outputs: list[str] = []
    prompt_tokens = cached_tokens = 0
    with Engine(model, dtype=dtype, max_total_tokens=max_total_tokens, **options) as engine:
        engine.generate("warm up", {"max_new_tokens": 2})
        engine.flush_cache()
        t0 = time.perf_counter()
        for turn in range(len(sessions[0])):
            for group in groups:
                prompts, params = [], []
                for s in group:
                    message, new_tokens = sessions[s][turn]
                    histories[s].append({"role": "user", "content": message})
                    prompts.append(engine.apply_chat_template(histories[s]))
                    params.append({"max_new_tokens": new_tokens, "temperature": 0, "ignore_eos": True})
                for s, out in zip(group, engine.generate(prompts, params)):
                    histories[s].append({"role": "assistant", "content": out["text"]})
                    outputs.append(out["text"])
                    prompt_tokens += out["meta_info"]["prompt_tokens"]
                    cached_tokens += out["meta_info"]["cached_tokens"]
        seconds = time.perf_counter() - t0
        stats = engine.stats()
        engine.check_integrity()
    hits = stats["hicache"]["hits_by_tier"] if "hicache" in stats else {"device": cached_tokens}
    return {"turns_per_s": len(outputs) / seconds, "hit_rate": cached_tokens / prompt_tokens, "outputs": outputs,
            "hits_by_tier": hits, "prompt_tokens": prompt_tokens, "num_evicted_tokens": stats["num_evicted_tokens"]}


def chat_main(args: argparse.Namespace) -> None:
    sessions = conversations(args.sessions, args.turns)
    print(f"{args.sessions} sessions x {args.turns} turns, {args.parallel} sessions a batch, round-robin; pool of "
          f"{args.max_total_tokens} tokens; model {args.model}, dtype {args.dtype}")
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name in VARIANTS:
            with tempfile.TemporaryDirectory(prefix="sgnb-hicache-") as storage_dir:
                options = variant_options(name, storage_dir)
                results[name].append(run_chat(args.model, args.dtype, sessions, args.parallel,
                                              args.max_total_tokens, options))
    rates = {name: statistics.median(r["turns_per_s"] for r in runs) for name, runs in results.items()}
    print(f"\n{'variant':18s} {'turns/s':>8s} {'vs off':>7s} {'hit rate':>9s}  tokens served by tier "
          f"(pool / host / disk)")
    for name, runs in results.items():
        last = runs[-1]
        hits = last["hits_by_tier"]
        print(f"{name:18s} {rates[name]:8.2f} {rates[name] / rates['tiers off']:6.2f}x {last['hit_rate']:9.1%}  "
              f"{hits.get('device', 0)} / {hits.get('host', 0)} / {hits.get('disk', 0)} "
              f"of {last['prompt_tokens']} prompt tokens")
    same = all(r["outputs"] == results["tiers off"][0]["outputs"] for runs in results.values() for r in runs)
    print(f"\ngreedy outputs identical across variants: {same}")


# --- restart: the disk tier across processes ----------------------------------------------------------


def few_shot_prompt() -> str:
    """~700 tokens: the reading guide, two worked examples, then a question."""
    shots = "".join(f"Passage: {p}\nQuestion: {q}\nAnswer: {a}\n\n" for p, q, a in SHOTS[:2])
    return GUIDE + shots + "Passage: (none)\nQuestion: Where is the Nile located?\nAnswer:"


def restart_child(model: str, dtype: str, storage_dir: str, new_tokens: int) -> dict[str, Any]:
    """In this (fresh) process: the prompt's time to first token and greedy output on the storage folder."""
    from sgnb.engine import Engine

    with Engine(model, dtype=dtype, enable_hierarchical_cache=True, hicache_storage_dir=storage_dir) as engine:
        engine.generate("warm up", {"max_new_tokens": 2})
        t0 = time.perf_counter()
        stream = engine.generate(few_shot_prompt(), {"max_new_tokens": new_tokens, "temperature": 0,
                                                     "ignore_eos": True}, stream=True)
        deltas = [next(stream)]
        ttft = time.perf_counter() - t0
        deltas.extend(stream)
        engine.check_integrity()
    meta = deltas[-1]["meta_info"]
    return {"ttft": ttft, "text": "".join(d["text"] for d in deltas), "prompt_tokens": meta["prompt_tokens"],
            "cached_tokens": meta["cached_tokens"]}


def run_child(args: argparse.Namespace, storage_dir: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--restart-child", storage_dir, "--model", args.model, "--dtype",
               args.dtype, "--new-tokens", str(args.new_tokens)]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"the fresh process failed (exit status {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def restart_main(args: argparse.Namespace) -> None:
    pairs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="sgnb-hicache-") as storage_dir:
            pairs.append((run_child(args, storage_dir), run_child(args, storage_dir)))  # cold, then warm
    cold = statistics.median(c["ttft"] for c, _ in pairs)
    warm = statistics.median(w["ttft"] for _, w in pairs)
    last_cold, last_warm = pairs[-1]
    print(f"{last_cold['prompt_tokens']}-token few-shot prompt, each run in a fresh process ({args.model}, "
          f"{args.dtype}), median of {args.repeats}")
    for name, ttft, last in (("cold", cold, last_cold), ("warm", warm, last_warm)):
        print(f"storage folder {name}: time to first token {ttft * 1000:7.1f} ms, {last['cached_tokens']} of "
              f"{last['prompt_tokens']} prompt tokens cached")
    print(f"speedup {cold / warm:.1f}x; same greedy output: {all(c['text'] == w['text'] for c, w in pairs)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--sessions", type=int, default=12)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--parallel", type=int, default=4, help="sessions sending their next turn together")
    ap.add_argument("--max-total-tokens", type=int, default=3584, help="KV pool size: room for a few conversations")
    ap.add_argument("--repeats", type=int, default=1, help="runs per variant (median reported)")
    ap.add_argument("--restart", action="store_true", help="time to first token in a fresh process, cold vs warm")
    ap.add_argument("--new-tokens", type=int, default=16, help="--restart: tokens generated after the prompt")
    ap.add_argument("--restart-child", default=None, help=argparse.SUPPRESS)  # one fresh process of --restart
    args = ap.parse_args()
    if args.restart_child is not None:
        print(json.dumps(restart_child(args.model, args.dtype, args.restart_child, args.new_tokens)))
    elif args.restart:
        restart_main(args)
    else:
        chat_main(args)


if __name__ == "__main__":
    main()
