"""Few-shot benchmark (issue 2, bench a): 64 questions share a ~1,000-token 5-shot prefix, 8 answer tokens each.

Compares, in one run on the same machine:
  sgnb (radix cache on)  vs  transformers generate one request at a time
                         vs  transformers batched generate
                         vs  sgnb with the radix cache off
                         vs  llama-cpp-python on the same GGUF (when --llama-python points at a Python that has it)
and reports programs/s ratios and the cache hit rate against the optimum for this workload.

    .venv/bin/python bench/fewshot.py [--dtype float32] [--num-questions 64] [--hf-subset 8]
        [--quantization gguf] [--no-cpu-kernels] [--llama-python bench/.venv-llama/bin/python]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine_options import add_engine_options, engine_options  # noqa: E402
from bench.isolate import run_alone  # noqa: E402

SHOTS = [
    ("The Danube is Europe's second-longest river. It rises in the Black Forest of Germany and flows east "
     "for about 2,850 kilometres through ten countries, including Austria, Slovakia, Hungary, Croatia, Serbia, "
     "Romania, Bulgaria, Moldova and Ukraine, before emptying into the Black Sea through a wide delta that is "
     "home to hundreds of bird species. Four capital cities lie on its banks: Vienna, Bratislava, Budapest and "
     "Belgrade.", "Which sea does the Danube flow into?", "The Black Sea."),
    ("Mount Kilimanjaro in Tanzania is the highest mountain in Africa, rising about 5,895 metres above sea "
     "level. It is a dormant volcano with three volcanic cones: Kibo, Mawenzi and Shira. Climbers usually take "
     "five to nine days to reach the summit, passing through rainforest, heath, alpine desert and finally an "
     "arctic zone of ice and rock near the crater rim, where glaciers have been shrinking for a century.",
     "In which country is Kilimanjaro?", "Tanzania."),
    ("The honeybee colony is organised around a single queen, thousands of female workers and a few hundred "
     "male drones. Workers change jobs as they age: young bees clean cells and feed larvae, middle-aged bees "
     "build comb and guard the entrance, and the oldest bees forage for nectar and pollen, telling their "
     "sisters where flowers are with a waggle dance whose angle points relative to the sun.",
     "How do bees tell each other where flowers are?", "With a waggle dance."),
    ("The printing press with movable metal type was developed by Johannes Gutenberg in Mainz around 1440. "
     "His workshop combined an oil-based ink, a hand mould for casting letters in a tin and lead alloy, and a "
     "screw press adapted from wine making. The Gutenberg Bible, finished around 1455, was printed in about "
     "180 copies, and within fifty years presses were working in more than two hundred European towns.",
     "Who developed the printing press with movable type?", "Johannes Gutenberg."),
    ("Photosynthesis takes place in the chloroplasts of plant cells. Light energy is captured by chlorophyll "
     "and used to split water molecules, releasing oxygen as a by-product. The energy is stored in ATP and "
     "NADPH, which the Calvin cycle then uses to turn carbon dioxide from the air into sugars. Without this "
     "process almost all life on Earth would lack both food and the oxygen in the atmosphere.",
     "What gas is released when water is split?", "Oxygen."),
]

TOPICS = ["the Nile", "the Amazon", "Mount Everest", "the Sahara", "the Moon", "Mars", "Jupiter", "the Pacific Ocean",
          "the Alps", "Antarctica", "the Rhine", "Iceland", "Japan", "the Andes", "Lake Baikal", "the Great Barrier Reef"]
ASPECTS = ["Where is {} located?", "What is special about {}?", "How large is {}?", "Why is {} famous?"]


GUIDE = (
    "You are a careful reading assistant. For every passage below, read the text closely, then answer the "
    "question that follows it. Answers must be short: a few words or one short sentence, never a paragraph. "
    "Use only facts that the passage states; if the passage does not contain the answer, rely on general "
    "knowledge but keep the answer equally short. Do not repeat the question, do not explain your reasoning, "
    "and do not add remarks before or after the answer. Names of people, places and things keep their usual "
    "capitalisation. Numbers are written with digits. When the question asks where something is, name the "
    "country or region; when it asks who, name the person; when it asks why, give the main reason in a short "
    "clause. Each answer ends with a full stop. The examples show the expected style exactly; follow them. "
    "Passages come from an encyclopedia for secondary-school students and cover geography, biology, history "
    "and science. Some questions are easy and some are harder, but all answers fit on one line. "
    "If a question has several correct answers, give the most common one. If a passage mentions several "
    "numbers, pick the one the question asks about and copy it exactly, including its unit. If the passage "
    "uses an old or local name for a place, answer with the name that is most widely used today. Spelling "
    "follows British English. Never answer with a question, and never refuse: a short best guess is always "
    "better than no answer at all. Dates are given as years unless the question asks for a day or a month. "
    "For questions about size, give the figure with its unit, such as kilometres, metres or square "
    "kilometres, and round it the way the passage does. For questions about colour, shape or material, "
    "answer with the plain word. When two passages seem to disagree, trust the passage that the question is "
    "about. Abbreviations are written out in full the first time they appear in an answer. Titles of books, "
    "songs and films are not put in quotation marks. Scientific names of plants and animals are written "
    "with a capital letter for the genus only. Chemical elements are named in words rather than symbols, "
    "and units are never abbreviated.\n\n"
)


def build_prompts(n: int) -> tuple[str, list[str]]:
    prefix = GUIDE
    for passage, q, a in SHOTS:
        prefix += f"Passage: {passage}\nQuestion: {q}\nAnswer: {a}\n\n"
    questions = [ASPECTS[i % len(ASPECTS)].format(TOPICS[(i // len(ASPECTS)) % len(TOPICS)]) + f" (#{i})"
                 for i in range(n)]
    return prefix, [prefix + f"Passage: (none)\nQuestion: {q}\nAnswer:" for q in questions]


def optimal_hit_rate(token_lists: list[list[int]]) -> float:
    """Best possible matched/queried ratio: each distinct prefix token computed once (last token always computed)."""
    seen: set[tuple[int, ...]] = set()
    total = matched = 0
    for ids in token_lists:
        total += len(ids)
        for i in range(1, len(ids)):          # the last token is always recomputed for its logits
            key = tuple(ids[:i])
            if key in seen:
                matched += 1
            else:
                seen.add(key)
    return matched / total


def run_sgnb(prompts: list[str], dtype: str, radix: bool, new_tokens: int, options: dict) -> tuple[float, dict]:
    from sgnb.engine import Engine

    with Engine("smollm2-135m", dtype=dtype, radix_cache=radix, **options) as engine:
        engine.generate("warm up", {"max_new_tokens": 2})
        engine.flush_cache()
        t0 = time.perf_counter()
        engine.generate(prompts, {"max_new_tokens": new_tokens, "temperature": 0, "ignore_eos": True})
        elapsed = time.perf_counter() - t0
        stats = engine.stats()
        engine.check_integrity()
    return len(prompts) / elapsed, stats


def run_hf(prompts: list[str], dtype: str, new_tokens: int, batch_size: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sgnb.engine.model_store import resolve_model

    path = resolve_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    t0 = time.perf_counter()
    for i in range(0, len(prompts), batch_size):
        enc = tok(prompts[i:i + batch_size], return_tensors="pt", padding=True)
        with torch.no_grad():
            model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tok.pad_token_id)
    return len(prompts) / (time.perf_counter() - t0)


# runs in the llama venv's Python, from the repository root (bench/llama_cpp_compat.py loads the GGUF)
LLAMA_SNIPPET = r"""
import json, sys, time
from bench.llama_cpp_compat import load_llama
prompts, new_tokens, gguf, threads = json.loads(sys.stdin.read())
llm = load_llama(gguf, n_threads=threads)
t0 = time.perf_counter()
for p in prompts:
    llm(p, max_tokens=new_tokens, temperature=0.0)
print(json.dumps(len(prompts) / (time.perf_counter() - t0)))
"""


def run_llama_cpp(python: str, prompts: list[str], new_tokens: int) -> float | None:
    import torch

    from sgnb.engine.model_store import resolve_gguf

    gguf = resolve_gguf("smollm2-135m")                      # the GGUF our safetensors were converted from
    job = [prompts, new_tokens, str(gguf), torch.get_num_threads()]
    proc = subprocess.run([python, "-c", LLAMA_SNIPPET], input=json.dumps(job), capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    if proc.returncode:
        print(f"llama-cpp-python failed (exit status {proc.returncode}): {proc.stderr[-500:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--num-questions", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--hf-subset", type=int, default=8, help="questions timed for transformers one-at-a-time")
    ap.add_argument("--hf-batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=1, help="sgnb runs per variant (median reported)")
    ap.add_argument("--llama-python", default=None, help="a Python interpreter with llama_cpp installed")
    add_engine_options(ap)
    args = ap.parse_args()

    prefix, prompts = build_prompts(args.num_questions)
    from sgnb.engine.tokenizer import load_tokenizer
    from sgnb.engine.model_store import resolve_model

    tok = load_tokenizer(resolve_model("smollm2-135m"))
    ids = [tok.encode(p) for p in prompts]
    print(f"prefix {len(tok.encode(prefix))} tokens, {len(prompts)} questions, prompts "
          f"{min(map(len, ids))}-{max(map(len, ids))} tokens, {args.new_tokens} new tokens each, dtype {args.dtype}, "
          f"quantization {args.quantization}, cpu kernels {args.cpu_kernels}")

    rates: dict[str, float] = {}
    options = engine_options(args)
    runs = [run_sgnb(prompts, args.dtype, True, args.new_tokens, options) for _ in range(args.repeats)]
    rates["sgnb"] = statistics.median(r for r, _ in runs)
    hit = runs[-1][1]["cache_hit_rate"]
    rates["sgnb, radix cache off"] = statistics.median(
        run_sgnb(prompts, args.dtype, False, args.new_tokens, options)[0] for _ in range(args.repeats))
    # each baseline alone on a fresh thread (see bench/isolate.py)
    rates["transformers, one at a time"] = run_alone(
        lambda: run_hf(prompts[:args.hf_subset], args.dtype, args.new_tokens, 1))
    rates["transformers, batched"] = run_alone(
        lambda: run_hf(prompts[:args.hf_batch * 2], args.dtype, args.new_tokens, args.hf_batch))
    if args.llama_python:
        r = run_llama_cpp(args.llama_python, prompts, args.new_tokens)   # all: it reuses the common prefix too
        if r is not None:
            rates["llama-cpp-python (Q4_1 GGUF)"] = r
    else:
        print("llama-cpp-python: skipped (pass --llama-python PATH to a Python that has llama_cpp)")

    opt = optimal_hit_rate(ids)
    print(f"\n{'system':34s} {'programs/s':>11s} {'sgnb speedup':>13s}")
    for name, rate in rates.items():
        print(f"{name:34s} {rate:11.2f} {rates['sgnb'] / rate:12.1f}x")
    print(f"\ncache hit rate {hit:.3f}, optimum {opt:.3f}, ratio {hit / opt:.1%}")


if __name__ == "__main__":
    main()
