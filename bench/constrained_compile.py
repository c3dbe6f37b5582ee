"""Constrained-decoding compile benchmark (issue 3): JSON schema -> token FSM over SmolLM2's 49k vocabulary.

For every schema of the suite (tests/constrained/json_schemas.py), measures with the memory cache
cleared and the disk cache off (cold): schema -> regex, regex -> byte DFA -> token index (best of
--repeats; the machine is shared). Prints per-schema times, p50 / p90 / max over the suite, and
the warm disk-cache load time.

Baseline measured in the same run: one unconstrained decode step of the model (transformers,
batch 1, fp32, with KV cache): the compile time is also reported in decode steps.
With --naive, also times the per-state full-vocabulary scan the trie walk replaces, on one schema.

    .venv/bin/python bench/constrained_compile.py [--repeats 3] [--naive]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the schema suite lives in tests/


def decode_step_seconds(model_path: Path, repeats: int = 10) -> float:
    """Seconds of one batch-1 decode step (transformers, fp32, KV cache): the best of `repeats`
    after 3 warm-up steps (the machine is shared: the minimum is the least disturbed)."""
    import warnings

    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32).eval()
    ids = torch.tensor([[1, 504, 3458, 314, 253, 1345]])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model(ids, use_cache=True)
        past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        times = []
        for i in range(repeats + 3):  # 3 warm-up steps
            t0 = time.perf_counter()
            out = model(token, past_key_values=past, use_cache=True)
            if i >= 3:
                times.append(time.perf_counter() - t0)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
    return min(times)


def naive_index_seconds(pattern: str, vocab) -> float:
    """The baseline the trie replaces: every state scans every token byte by byte (pure Python)."""
    from sgnb.constrained.regex_dfa import regex_to_byte_dfa

    dfa = regex_to_byte_dfa(pattern)
    rows, classes = dfa.transitions.tolist(), dfa.byte_classes.tolist()
    tokens = [(i, b) for i, b in enumerate(vocab.token_bytes) if b]
    t0 = time.perf_counter()
    for start in range(dfa.num_states):
        allowed = []
        for token, data in tokens:
            state = start
            for byte in data:
                state = rows[state][classes[byte]]
                if state < 0:
                    break
            else:
                allowed.append((token, state))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=3, help="cold compiles per schema (the best is kept)")
    parser.add_argument("--naive", action="store_true", help="also time the full-vocabulary scan baseline")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from sgnb.constrained import TokenVocab, clear_memory_cache, compile_regex, schema_to_regex
    from sgnb.constrained.vocab import _vocab_from_tokenizer, build_vocab_trie
    from sgnb.engine.model_store import resolve_model
    from tests.constrained.json_schemas import SCHEMAS

    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    t0 = time.perf_counter()
    _vocab_from_tokenizer(tokenizer, None)
    vocab_seconds = time.perf_counter() - t0
    vocab = TokenVocab.from_tokenizer(tokenizer)
    t0 = time.perf_counter()
    build_vocab_trie(vocab.token_bytes)
    trie_seconds = time.perf_counter() - t0
    vocab.trie  # built once per vocabulary, outside the per-schema timings
    print(f"vocab: {vocab.vocab_size} tokens, TokenVocab.from_tokenizer {vocab_seconds * 1e3:.0f} ms, "
          f"trie {vocab.trie.num_nodes} nodes in {trie_seconds * 1e3:.0f} ms")

    step = decode_step_seconds(path)
    print(f"baseline: one unconstrained decode step (transformers, fp32, batch 1) = {step * 1e3:.1f} ms\n")

    compile_regex("warm-up", vocab, use_disk_cache=False)
    rows = []
    with tempfile.TemporaryDirectory() as cache_root:
        import os

        os.environ["SGNB_CACHE"] = cache_root
        for name, schema in SCHEMAS.items():
            t0 = time.perf_counter()
            pattern = schema_to_regex(schema, max_recursion_depth=3)
            to_regex = time.perf_counter() - t0
            times = []
            for _ in range(args.repeats):
                clear_memory_cache()
                t0 = time.perf_counter()
                fsm = compile_regex(pattern, vocab, use_disk_cache=False)
                times.append(time.perf_counter() - t0)
            clear_memory_cache()
            compile_regex(pattern, vocab)  # writes the disk cache
            clear_memory_cache()
            t0 = time.perf_counter()
            loaded = compile_regex(pattern, vocab)
            load = time.perf_counter() - t0
            assert loaded.stats["loaded_from_disk"]
            rows.append((name, to_regex, min(times), load, fsm.num_states, fsm.stats["num_edges"]))
        clear_memory_cache()

    print(f"{'schema':20s} {'to regex':>9s} {'compile':>9s} {'disk load':>9s} {'states':>7s} {'edges':>9s}")
    for name, to_regex, compiled, load, states, edges in rows:
        print(f"{name:20s} {to_regex * 1e3:7.1f}ms {compiled * 1e3:7.1f}ms {load * 1e3:7.1f}ms {states:7d} {edges:9d}")
    totals = sorted(r[1] + r[2] for r in rows)
    p50 = statistics.median(totals)
    p90 = totals[int(0.9 * (len(totals) - 1))]
    worst = max(rows, key=lambda r: r[1] + r[2])
    print(f"\ncold compile over {len(rows)} schemas (schema -> token FSM, 49k vocab):")
    print(f"  p50 {p50 * 1e3:.0f} ms = {p50 / step:.1f} decode steps   (target <= 500 ms)")
    print(f"  p90 {p90 * 1e3:.0f} ms = {p90 / step:.1f} decode steps")
    print(f"  max {totals[-1] * 1e3:.0f} ms = {totals[-1] / step:.1f} decode steps ({worst[0]})")
    print(f"  warm disk-cache load p50 {statistics.median(r[3] for r in rows) * 1e3:.1f} ms")

    if args.naive:
        pattern = schema_to_regex(SCHEMAS["person"])
        clear_memory_cache()
        t0 = time.perf_counter()
        compile_regex(pattern, vocab, use_disk_cache=False)
        trie = time.perf_counter() - t0
        naive = naive_index_seconds(pattern, vocab)
        print(f"\nperson schema: trie walk compile {trie * 1e3:.0f} ms vs per-state full-vocabulary scan "
              f"{naive * 1e3:.0f} ms ({naive / trie:.1f}x)")


if __name__ == "__main__":
    main()
