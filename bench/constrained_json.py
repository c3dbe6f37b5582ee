"""JSON-decoding throughput (issue 3): jump-forward on key-heavy JSON, the paper's two extraction programs.

Workloads (deterministic synthetic passages, one shared one-shot example per workload):
  character  a short wizard bio -> CHARACTER (tests/constrained/json_schemas.py): 8 keys, a nested wand object
  city       a short city description -> CITY: name, country, latitude, population, top 3 landmarks
Every program is one chat prompt and one `json_schema` generation (greedy). --whitespace picks the
layout: compact (default; what outlines and xgrammar are run with) or pretty, the paper's own layout
(one key a line, 4-space indent, arrays inline), whose newline-and-indent runs jump-forward also writes.

Compares, in one run on the same machine, batch (all prompts at once) and one at a time:
  sgnb with jump-forward  vs  sgnb without (same engine, per-request `jump_forward`, cache flushed before each run)
                          vs  outlines (outlines_core index) driving transformers `generate`
                          vs  xgrammar (its transformers LogitsProcessor) driving transformers `generate`
The last two run in a subprocess with the bench-only venv's Python (`make bench-envs` builds
bench/.venv-constrained); they are skipped, saying so, when it is missing. Their one-at-a-time
runs take the first --hf-subset programs (transformers `generate` is slow here); ratios are of programs/s.

Reports programs/s and output tokens/s (medians over --repeats), forward passes saved, the
forced-token share, tokens the retokenization rule held back (and how many of those, drafted with
their jump, the model confirmed in the same pass), output validity (json.loads +
jsonschema.validate), field accuracy against the passages' facts, and whether greedy outputs are
identical with and without jump-forward (they may differ: forced text is retokenized).

    .venv/bin/python bench/constrained_json.py [--dtype float32] [--num-programs 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_PYTHON = ROOT / "bench" / ".venv-constrained" / "bin" / "python"

# ---------------------------------------------------------------------------- workloads

WOODS = ["holly", "yew", "willow", "oak", "ash", "elm", "vine", "cherry", "walnut", "hawthorn", "larch", "rowan",
         "ebony", "alder", "cedar", "pine"]
CORES = ["dragon", "phoenix", "unicorn", "veela", "thestral"]
PATRONUSES = ["stag", "otter", "hare", "doe", "wolf", "lynx", "swan", "horse", "cat", "badger", "falcon", "dolphin"]
BOGARTS = ["spider", "dementor", "clown", "snake", "mummy", "banshee", "fire", "raven", "storm", "werewolf"]
FIRST = ["Alden", "Briar", "Cass", "Della", "Edric", "Fenna", "Gideon", "Hazel", "Ivo", "June", "Kasia", "Lin",
         "Magnus", "Nerys", "Osric", "Pia", "Quinn", "Rosa", "Silas", "Tess"]
LAST = ["Moss", "Quill", "Thorne", "Vance", "Wren", "Black", "Frost", "Hale", "Marsh", "Pike", "Reed", "Stone"]
OCCUPATION_PHRASE = {"student": "a student", "teacher": "a teacher", "auror": "an auror",
                     "ministry of magic": "an official at the ministry of magic", "death eater": "a death eater",
                     "order of the phoenix": "a member of the order of the phoenix"}
LENGTHS = [9, 9.5, 10, 10.25, 10.5, 11, 11.5, 12, 12.75, 13]

CITY_HEADS = ["Val", "Kes", "Mor", "Tal", "Bren", "Os", "Lin", "Cor", "Ard", "Sel", "Dun", "Hal"]
CITY_TAILS = ["mora", "haven", "dale", "port", "wick", "grad", "stad", "ford", "mere", "bury"]
COUNTRIES = ["Portugal", "Norway", "Chile", "Kenya", "Canada", "Japan", "Peru", "Greece", "Poland", "Vietnam",
             "Morocco", "Sweden", "Ireland", "Mexico", "Egypt", "Finland"]
LANDMARKS = ["Old Harbour", "Grand Bazaar", "Clock Tower", "Royal Palace", "Stone Bridge", "City Museum",
             "Botanic Garden", "Opera House", "Cathedral", "Castle Hill", "Market Square", "River Walk",
             "Lighthouse", "Observatory", "Zoo", "Fort"]
CITY_FILLER = ["The old town is known for its narrow streets and busy cafes.",
               "Its economy relies on shipping, tourism and a growing software industry.",
               "Winters are mild and most rain falls between October and March.",
               "A tram network links the centre with the university and the airport."]


def character_fact(rng: random.Random) -> dict:
    while True:
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if len(name) <= 12:
            break
    return {"name": name, "house": rng.choice(["Gryffindor", "Slytherin", "Ravenclaw", "Hufflepuff"]),
            "blood status": rng.choice(["Pure-blood", "Half-blood", "Muggle-born"]),
            "occupation": rng.choice(list(OCCUPATION_PHRASE)),
            "wand": {"wood": rng.choice(WOODS), "core": rng.choice(CORES), "length": rng.choice(LENGTHS)},
            "alive": rng.choice(["Alive", "Deceased"]), "patronus": rng.choice(PATRONUSES),
            "bogart": rng.choice(BOGARTS)}


def character_passage(f: dict) -> str:
    first = f["name"].split()[0]
    alive = "is still alive today" if f["alive"] == "Alive" else "is deceased, having died in the second war"
    return (f"{f['name']} was sorted into {f['house']} and is a {f['blood status'].lower()} witch or wizard who "
            f"works as {OCCUPATION_PHRASE[f['occupation']]}. The wand of {first} is made of {f['wand']['wood']} "
            f"with a {f['wand']['core']} core and measures {f['wand']['length']} inches. {first} {alive}. "
            f"The patronus of {first} is a {f['patronus']}, and the boggart of {first} takes the shape of a "
            f"{f['bogart']}.")


def city_fact(rng: random.Random) -> dict:
    return {"name": rng.choice(CITY_HEADS) + rng.choice(CITY_TAILS), "country": rng.choice(COUNTRIES),
            "latitude": round(rng.uniform(-50, 65), 2), "population": rng.randrange(20_000, 3_000_000, 100),
            "top 3 landmarks": rng.sample(LANDMARKS, 3)}


def city_passage(f: dict, rng: random.Random) -> str:
    a, b, c = f["top 3 landmarks"]
    return (f"{f['name']} is a city in {f['country']}. It lies at a latitude of {f['latitude']} degrees and has a "
            f"population of {f['population']} people. {rng.choice(CITY_FILLER)} Visitors come above all for "
            f"three landmarks: the {a}, the {b} and the {c}. {rng.choice(CITY_FILLER)}")


@dataclass(slots=True)
class Workload:
    name: str
    schema: dict
    prompts: list[str]
    facts: list[dict]
    whitespace: str = "compact"


def layout_json(value: object, whitespace: str) -> str:
    """`value` in the output layout of `whitespace`, for the prompt's example (see the module docstring)."""
    if whitespace == "compact":
        return json.dumps(value, separators=(",", ":"))
    text = json.dumps(value, indent=4)
    # arrays inline: json.dumps puts each item on its own line
    return re.sub(r"\[\n\s*(.*?)\n\s*\]", lambda m: "[" + re.sub(r",\n\s*", ", ", m.group(1)) + "]", text,
                  flags=re.S)


def build_workload(name: str, schema: dict, n: int, tokenizer, seed: int = 0,
                   whitespace: str = "compact") -> Workload:
    """n prompts: instruction + a one-shot example (shared prefix) + the program's own passage."""
    rng = random.Random(f"{name}-{seed}")
    make_fact = character_fact if name == "character" else city_fact

    def passage(f: dict) -> str:
        return character_passage(f) if name == "character" else city_passage(f, rng)

    example = make_fact(random.Random(f"{name}-example"))
    what = "character" if name == "character" else "city"
    head = (f"Extract the {what} described in the passage as one JSON object with exactly the keys of the "
            f"example, copying the facts from the passage.\n\nExample passage: {passage(example)}\n"
            f"Example JSON: {layout_json(example, whitespace)}\n\n")
    facts = [make_fact(rng) for _ in range(n)]
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": head + f"Passage: {passage(f)}\nJSON:"}],
                                             tokenize=False, add_generation_prompt=True) for f in facts]
    return Workload(name, schema, prompts, facts, whitespace)


# ---------------------------------------------------------------------------- checks


def leaves(value, path: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in leaves(sub, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, sub in enumerate(value) for k, v in leaves(sub, f"{path}/{i}").items()}
    return {path: value}


def check_outputs(texts: list[str], workload: Workload) -> tuple[int, float]:
    """(outputs that parse and validate, share of fact fields extracted exactly over all outputs)."""
    import jsonschema

    num_valid = num_right = num_fields = 0
    for text, fact in zip(texts, workload.facts):
        truth = leaves(fact)
        num_fields += len(truth)
        try:
            value = json.loads(text)
            jsonschema.validate(value, workload.schema)
        except (json.JSONDecodeError, jsonschema.ValidationError):
            continue
        num_valid += 1
        got = leaves(value)
        for key, want in truth.items():
            have = got.get(key)
            if isinstance(want, str):
                num_right += isinstance(have, str) and have.strip().lower() == want.lower()
            else:
                num_right += isinstance(have, (int, float)) and abs(have - want) < 1e-6
    return num_valid, num_right / max(num_fields, 1)


# ---------------------------------------------------------------------------- sgnb


@dataclass(slots=True)
class Run:
    seconds: float
    texts: list[str]
    num_output_tokens: int
    num_forward_passes: int = 0
    num_forced_tokens: int = 0
    num_jumps: int = 0
    num_held_back: int = 0
    num_drafted: int = 0               # held-back tokens computed with their jump as a draft
    num_draft_accepted: int = 0        # ... that the model picked itself (each saves a forward pass)
    num_cut: int = 0                   # finished by max_new_tokens instead of by the constraint
    pass_seconds: dict[str, list[float]] | None = None   # pass kind -> seconds of each forward pass


class PassTimer:
    """Times the engine's forward passes by kind, to explain the throughput: prefill (extend steps
    with prompt tokens), jump extend (extend steps of forced tokens only; running requests ride
    along as one-token extends) and decode (one token per running request)."""

    def __init__(self, engine) -> None:
        self.seconds: dict[str, list[float]] = {"prefill": [], "jump extend": [], "decode": []}
        forward = engine.runner.forward

        def timed(batch, keep_all):
            if batch.mode.name == "DECODE":
                kind = "decode"
            else:
                kind = "prefill" if any(r.kv_len < len(r.input_ids) for r in batch.reqs) else "jump extend"
            t0 = time.perf_counter()
            out = forward(batch, keep_all)
            self.seconds[kind].append(time.perf_counter() - t0)
            return out

        engine.runner.forward = timed

    def take(self) -> dict[str, list[float]]:
        taken = {k: list(v) for k, v in self.seconds.items()}
        for v in self.seconds.values():
            v.clear()
        return taken


def json_params(workload: Workload, max_new_tokens: int, jump_forward: bool) -> dict:
    return {"max_new_tokens": max_new_tokens, "temperature": 0, "json_schema": workload.schema,
            "json_whitespace": workload.whitespace, "jump_forward": jump_forward}


def run_sgnb(engine, timer: PassTimer, prompts: list[str], params: dict, batch: bool) -> Run:
    """One timed run of `prompts` with constrained sampling `params`, the cache flushed first."""
    if not engine.flush_cache():
        raise RuntimeError("flush_cache refused: requests still running")
    before = engine.stats()["num_forward_passes"]
    timer.take()
    t0 = time.perf_counter()
    if batch:
        results = engine.generate(prompts, params)
    else:
        results = [engine.generate(p, params) for p in prompts]
    seconds = time.perf_counter() - t0
    summaries = [r["meta_info"]["constraint"] for r in results]
    return Run(seconds, [r["text"] for r in results], sum(r["meta_info"]["completion_tokens"] for r in results),
               engine.stats()["num_forward_passes"] - before,
               sum(s["num_forced_tokens"] for s in summaries), sum(s["num_jumps"] for s in summaries),
               sum(s["num_held_back"] for s in summaries),
               sum(s["num_drafted"] for s in summaries), sum(s["num_draft_accepted"] for s in summaries),
               sum(r["meta_info"]["finish_reason"]["type"] == "length" for r in results), timer.take())


def sgnb_compile_ms(schema: dict, tokenizer) -> float:
    from sgnb.constrained import TokenVocab, clear_memory_cache, compile_regex, schema_to_regex

    vocab = TokenVocab.from_tokenizer(tokenizer)
    vocab.trie
    clear_memory_cache()
    t0 = time.perf_counter()
    compile_regex(schema_to_regex(schema), vocab, use_disk_cache=False)
    return (time.perf_counter() - t0) * 1e3


# ---------------------------------------------------------------------------- outlines / xgrammar (bench venv)


def hf_worker() -> None:
    """Runs under the bench venv's Python: reads the job from stdin, prints one JSON line of results.
    A workload is a JSON schema ("schema") or a grammar (bench/grammar.py: "lark" for outlines' CFG, which
    its llguidance backend compiles, and the same grammar as "ebnf" for xgrammar)."""
    import warnings

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    warnings.simplefilter("ignore")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    job = json.loads(sys.stdin.read())
    tok = AutoTokenizer.from_pretrained(job["model_path"])
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(job["model_path"], dtype=getattr(torch, job["dtype"])).eval()
    out: dict = {"versions": {"torch": torch.__version__}, "libs": {}}
    for lib in ("outlines", "xgrammar"):
        try:
            out["libs"][lib] = _hf_lib(lib, job, model, tok, out["versions"])
        except Exception as exc:  # an install or API problem: report it, keep the other library
            out["libs"][lib] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out))


def _hf_lib(lib: str, job: dict, model, tok, versions: dict) -> dict:
    import importlib.metadata

    import torch

    versions[lib] = importlib.metadata.version(lib)
    gen_kw = {"max_new_tokens": job["max_new_tokens"], "do_sample": False, "pad_token_id": tok.pad_token_id}
    if lib == "outlines":
        import outlines
        from outlines.types import JsonSchema

        omodel = outlines.from_transformers(model, tok)
    else:
        import xgrammar as xgr

        compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tok, vocab_size=model.config.vocab_size))
    result = {}
    for wl in job["workloads"]:
        prompts = wl["prompts"]
        if [tok(p)["input_ids"] for p in prompts] != wl["input_ids"]:
            raise RuntimeError("transformers tokenizes the prompts differently from sgnb")
        t0 = time.perf_counter()
        if lib == "outlines" and "lark" in wl:
            from outlines.types import CFG

            gen = outlines.Generator(omodel, CFG(wl["lark"]))
        elif lib == "outlines":  # compact whitespace, like sgnb's default
            gen = outlines.Generator(omodel, JsonSchema(wl["schema"], whitespace_pattern=""), backend="outlines_core")
        elif "ebnf" in wl:
            grammar = compiler.compile_grammar(wl["ebnf"])
        else:
            grammar = compiler.compile_json_schema(json.dumps(wl["schema"]), any_whitespace=False,
                                                   separators=(",", ":"))
        compile_ms = (time.perf_counter() - t0) * 1e3

        def one(prompt: str) -> list[str]:
            if lib == "outlines":
                return [gen(prompt, **gen_kw)]
            return many([prompt])

        def many(batch: list[str]) -> list[str]:
            if lib == "outlines":
                return gen.batch(batch, **gen_kw)
            enc = tok(batch, return_tensors="pt", padding=True)
            with torch.no_grad():
                ids = model.generate(**enc, **gen_kw, logits_processor=[xgr.contrib.hf.LogitsProcessor(grammar)])
            return tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

        one(prompts[0])  # untimed warm-up, as sgnb gets: first-call and first-state costs
        runs = {}
        for mode in job["modes"]:
            runs[mode] = []
            for _ in range(job["repeats"]):
                t0 = time.perf_counter()
                texts = many(prompts) if mode == "batch" else [t for p in prompts[:job["subset"]] for t in one(p)]
                seconds = time.perf_counter() - t0
                num_tokens = sum(len(tok(t)["input_ids"]) for t in texts)  # retokenized: outlines returns text
                runs[mode].append({"seconds": seconds, "texts": texts, "num_output_tokens": num_tokens})
        result[wl["name"]] = {"compile_ms": compile_ms, "runs": runs}
    return result


def run_hf_libs(python: Path, model_path: Path, dtype: str, workloads: list[dict], max_new_tokens: int,
                repeats: int, modes: list[str], subset: int) -> dict:
    """Runs `hf_worker` in the bench venv; each workload: name, prompts, their input_ids, and its constraint."""
    job = {"model_path": str(model_path), "dtype": dtype, "max_new_tokens": max_new_tokens, "repeats": repeats,
           "modes": modes, "subset": subset, "workloads": workloads}
    proc = subprocess.run([str(python), str(Path(__file__).resolve()), "--hf-worker"], input=json.dumps(job),
                          capture_output=True, text=True)
    if proc.returncode:
        return {"error": f"worker failed (exit {proc.returncode}): {proc.stderr[-800:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def add_hf_runs(python: Path, model_path: Path, args: argparse.Namespace, jobs: list[dict], modes: list[str],
                results: dict[tuple[str, str], dict[str, list[Run]]], compile_ms: dict[str, dict[str, float]]) -> None:
    """Run outlines and xgrammar on `jobs` in the bench venv; file their runs under (workload, mode) in `results`
    and their compile times in `compile_ms`, or print why a library (or the worker) failed."""
    hf = run_hf_libs(python, model_path, args.dtype, jobs, args.max_new_tokens, args.hf_repeats or args.repeats,
                     modes, args.hf_subset)
    if "error" in hf:
        print(f"outlines / xgrammar: {hf['error']}")
        return
    print(f"bench venv: {', '.join(f'{k} {v}' for k, v in hf['versions'].items())}")
    for lib, per_workload in hf["libs"].items():
        if "error" in per_workload:
            print(f"{lib}: failed, skipped: {per_workload['error']}")
            continue
        for job in jobs:
            entry = per_workload[job["name"]]
            compile_ms[job["name"]][lib] = entry["compile_ms"]
            for mode in modes:
                results[(job["name"], mode)][f"{lib} + transformers"] = [
                    Run(r["seconds"], r["texts"], r["num_output_tokens"]) for r in entry["runs"][mode]]


# ---------------------------------------------------------------------------- report


def median_run(runs: list[Run]) -> Run:
    """The run with the median time (its counters; counters barely vary between greedy repeats)."""
    return sorted(runs, key=lambda r: r.seconds)[(len(runs) - 1) // 2]


def print_mode(workload: Workload, mode: str, rows: dict[str, list[Run]], show_outputs: bool) -> None:
    n = len(workload.prompts)
    on, off = median_run(rows["sgnb jump-forward"]), median_run(rows["sgnb no jump-forward"])
    sizes = sorted({len(runs[0].texts) for runs in rows.values()})
    print(f"\n{workload.name}, {mode} ({' or '.join(map(str, sizes))} programs)")
    print(f"  {'system':26s} {'programs/s':>10s} {'out tok/s':>9s} {'passes':>6s} {'valid':>6s} {'fields':>6s} "
          f"{'cut':>3s} {'=no-jf':>6s} {'sgnb-jf speedup':>15s}")
    for name, runs in rows.items():
        run = median_run(runs)
        k = len(run.texts)
        valid, accuracy = check_outputs(run.texts, workload)
        passes = str(run.num_forward_passes) if name.startswith("sgnb") else "-"
        cut = str(run.num_cut) if name.startswith("sgnb") else "-"
        same = sum(a == b for a, b in zip(run.texts, off.texts))
        print(f"  {name:26s} {k / run.seconds:10.3f} {run.num_output_tokens / run.seconds:9.1f} {passes:>6s} "
              f"{valid:>3d}/{k:<2d} {accuracy:6.1%} {cut:>3s} {same:>3d}/{k:<2d} {(n / on.seconds) / (k / run.seconds):14.2f}x")
        if show_outputs:
            print(f"      first output: {run.texts[0]}")
    saved = off.num_forward_passes - on.num_forward_passes
    same = sum(a == b for a, b in zip(on.texts, off.texts))
    stable = (all(r.texts == on.texts for r in rows["sgnb jump-forward"])
              and all(r.texts == off.texts for r in rows["sgnb no jump-forward"]))
    print(f"  jump-forward: {off.seconds / on.seconds:.2f}x programs/s (target >= 1.5x), "
          f"{(on.num_output_tokens / on.seconds) / (off.num_output_tokens / off.seconds):.2f}x output tokens/s; "
          f"forward passes {off.num_forward_passes} -> {on.num_forward_passes} "
          f"(saved {saved}, {saved / max(off.num_forward_passes, 1):.0%})")
    print(f"  forced tokens {on.num_forced_tokens}/{on.num_output_tokens} "
          f"({on.num_forced_tokens / max(on.num_output_tokens, 1):.0%}) in {on.num_jumps} jumps "
          f"({on.num_forced_tokens / max(on.num_jumps, 1):.1f} tokens/jump); held back by the retokenization rule: "
          f"{on.num_held_back} tokens ({on.num_held_back / max(on.num_jumps, 1):.2f} per jump); drafted with "
          f"their jump {on.num_drafted}, confirmed by the model's own pick {on.num_draft_accepted}")
    for name, run in (("on", on), ("off", off)):
        parts = [f"{len(t)} {kind} x {sum(t) / len(t) * 1e3:.0f} ms" for kind, t in run.pass_seconds.items() if t]
        print(f"  passes with jump-forward {name}: " + " + ".join(parts))
    print(f"  greedy outputs identical with/without jump-forward: {same}/{n}; "
          f"sgnb outputs identical across repeats: {stable}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--num-programs", type=int, default=8, help="programs per workload")
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per variant (median reported)")
    ap.add_argument("--modes", default="batch,sequential", help="comma list of batch, sequential")
    ap.add_argument("--workloads", default="character,city")
    ap.add_argument("--whitespace", choices=["compact", "pretty"], default="compact",
                    help="JSON layout; outlines and xgrammar run only with compact")
    ap.add_argument("--bench-python", default=str(BENCH_PYTHON),
                    help="a Python with outlines, xgrammar and transformers (default: bench/.venv-constrained)")
    ap.add_argument("--hf-repeats", type=int, default=None, help="timed runs per outlines/xgrammar variant "
                    "(default: --repeats)")
    ap.add_argument("--hf-subset", type=int, default=4,
                    help="programs outlines / xgrammar run one at a time (their batch runs take all)")
    ap.add_argument("--show-outputs", action="store_true", help="print each system's first output")
    ap.add_argument("--dump", default=None, help="write every system's outputs (median run) to this JSON file")
    ap.add_argument("--hf-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hf_worker:
        hf_worker()
        return

    sys.path.insert(0, str(ROOT))  # the schema suite lives in tests/
    import torch

    from sgnb.engine import Engine
    from sgnb.engine.model_store import resolve_model
    from sgnb.engine.tokenizer import load_tokenizer
    from tests.constrained.json_schemas import CHARACTER, CITY

    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= {"batch", "sequential"}:
        raise SystemExit(f"--modes takes batch and/or sequential, got {args.modes!r}")
    load_start = os.getloadavg()
    model_path = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(model_path)
    schemas = {"character": CHARACTER, "city": CITY}
    workloads = [build_workload(name, schemas[name], args.num_programs, tokenizer, whitespace=args.whitespace)
                 for name in args.workloads.split(",")]
    for w in workloads:
        lens = [len(tokenizer(p)["input_ids"]) for p in w.prompts]
        print(f"{w.name}: {len(w.prompts)} prompts of {min(lens)}-{max(lens)} tokens, schema keys "
              f"{list(w.schema['properties'])}")
    print(f"dtype {args.dtype}, greedy, max_new_tokens {args.max_new_tokens}, {args.whitespace} JSON whitespace, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average {load_start[0]:.1f}")

    results: dict[tuple[str, str], dict[str, list[Run]]] = {}
    with Engine("smollm2-135m", dtype=args.dtype) as engine:
        timer = PassTimer(engine)
        for w in workloads:  # compile the FSM and warm the mask cache outside the timings
            for jf in (True, False):
                engine.generate(w.prompts[0], json_params(w, args.max_new_tokens, jf))
        for rep in range(args.repeats):
            for w in workloads:
                for mode in modes:
                    rows = results.setdefault((w.name, mode), {"sgnb jump-forward": [], "sgnb no jump-forward": []})
                    order = (True, False) if rep % 2 == 0 else (False, True)  # alternate who goes first
                    for jf in order:
                        run = run_sgnb(engine, timer, w.prompts, json_params(w, args.max_new_tokens, jf),
                                       mode == "batch")
                        rows["sgnb jump-forward" if jf else "sgnb no jump-forward"].append(run)
            print(f"  sgnb repeat {rep + 1}/{args.repeats} done, load average {os.getloadavg()[0]:.1f}", flush=True)
        engine.check_integrity()

    compile_ms = {w.name: {"sgnb": sgnb_compile_ms(w.schema, tokenizer)} for w in workloads}
    python = Path(args.bench_python)
    if args.whitespace != "compact":
        print("outlines / xgrammar: skipped, they run with compact whitespace only")
    elif python.exists():
        jobs = [{"name": w.name, "schema": w.schema, "prompts": w.prompts,
                 "input_ids": [tokenizer(p)["input_ids"] for p in w.prompts]} for w in workloads]
        add_hf_runs(python, model_path, args, jobs, modes, results, compile_ms)
    else:
        print(f"outlines / xgrammar: skipped, no bench venv at {python} (run `make bench-envs`)")

    print("\nprograms/s and output tokens/s are medians over repeats; passes = forward passes of that run; "
          "valid = json.loads + jsonschema.validate; fields = fact fields extracted exactly; "
          "cut = stopped by max_new_tokens; =no-jf = outputs identical to sgnb without jump-forward's; last column = sgnb jump-forward's programs/s / that system's")
    for w in workloads:
        for mode in modes:
            print_mode(w, mode, results[(w.name, mode)], args.show_outputs)
    if args.dump:
        Path(args.dump).write_text(json.dumps(
            {f"{name}/{mode}": {system: median_run(runs).texts for system, runs in rows.items()}
             for (name, mode), rows in results.items()}, indent=1))
    print("\ncold schema compile (ms): " + "; ".join(
        f"{name}: " + ", ".join(f"{lib} {ms:.0f}" for lib, ms in per.items()) for name, per in compile_ms.items()))
    load_end = os.getloadavg()
    print(f"load average (1 min) at start {load_start[0]:.1f}, at end {load_end[0]:.1f}, on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
