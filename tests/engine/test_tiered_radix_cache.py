"""The tiered radix cache end to end: evicted KV comes back from host memory and disk, exactly.

Tiny random-weight models (`make_tiny_model`) except the restart test, which runs the real SmolLM2 in
two fresh processes. Every engine ends with `check_integrity()`.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from sgnb.engine import Engine
from sgnb.engine.page_keys import PAGE_SIZE, page_keys
from tests.conftest import make_tiny_model

GREEDY = {"max_new_tokens": 8, "temperature": 0}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, smollm2_path) -> str:
    return str(make_tiny_model(tmp_path_factory.mktemp("tiny"), smollm2_path))


def _ids(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(100, 40000) for _ in range(n)]


def _rel_err(got: list[float], want: list[float]) -> float:
    num = sum((a - b) ** 2 for a, b in zip(got, want, strict=True)) ** 0.5
    return num / max(sum(b * b for b in want) ** 0.5, 1e-30)


def _logprobs(result: dict) -> list[float]:
    return [lp for lp, _, _ in result["meta_info"]["input_token_logprobs"]]


def _page_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.kv"))


def _pool_cache(num_slots: int):
    """A tiered cache over a real 2-layer KV pool whose rows say which token they hold."""
    import torch

    from sgnb.engine.kv_cache import KVPool
    from sgnb.engine.kv_page_io import KVPageIO
    from sgnb.engine.model_config import ModelConfig
    from sgnb.engine.slot_allocator import SlotAllocator
    from sgnb.engine.tiered_radix_cache import TieredRadixCache

    cfg = ModelConfig(architecture="LlamaForCausalLM", vocab_size=1000, hidden_size=8, intermediate_size=8,
                      num_layers=2, num_heads=2, num_kv_heads=1, head_dim=4)
    pool = KVPool(cfg, num_slots, torch.float32, "cpu")
    cache = TieredRadixCache(SlotAllocator(num_slots), KVPageIO(pool), b"n" * 16, host_capacity_bytes=10**6)

    def store(ids: list[int]) -> list[int]:
        slots = cache.allocator.alloc(len(ids))
        for layer_index, layer in enumerate(pool.layers):
            layer[slots] = torch.tensor(ids, dtype=torch.float32).view(-1, 1, 1, 1) + 1000 * layer_index
        cache.insert(ids, slots)
        return slots

    def held(slots: list[int]) -> list[list[int]]:
        return [(layer[slots, 0, 0, 0] - 1000 * i).int().tolist() for i, layer in enumerate(pool.layers)]

    return cache, store, held


def test_loads_as_many_pages_as_fit_and_never_evicts_the_matched_path() -> None:
    cache, store, held = _pool_cache(num_slots=65)                         # 64 usable slots
    a, b = list(range(1, 49)), list(range(500, 540))
    store(a)
    assert cache.evict(48) == 48 and len(cache.host) == 3                 # a's 3 pages went to host memory
    store(b)
    cache.inc_lock_ref(cache.match_prefix(b).last_node)                    # a running request holds b
    match = cache.match_prefix(a)
    assert match.prefix_len == 16 and cache.allocator.num_free == 8      # 24 free slots: one page fits
    assert held(match.slots) == [a[:16], a[:16]]
    cache.check_integrity()
    cache.dec_lock_ref(cache.match_prefix(b, record_hit=False).last_node)
    cache.inc_lock_ref(match.last_node)                                    # now a's first page is in use
    match = cache.match_prefix(a)
    assert match.prefix_len == 48 and held(match.slots) == [a, a]          # b was evicted to make room
    assert cache.match_prefix(b, record_hit=False).prefix_len == 32        # ...and b comes back in turn
    assert cache.tier_stats()["hits_by_tier"]["host"] == 48 + 32
    cache.check_integrity()


def test_logprobs_after_a_prefix_loaded_from_host_or_disk_equal_computed_ones(tiny, tmp_path) -> None:
    prefix, cont = _ids(1, 96), _ids(2, 16)
    ids = prefix + cont
    engine = Engine(tiny, max_total_tokens=200, hicache_storage_dir=tmp_path)
    computed = engine.score(input_ids=ids, logprob_start_len=len(prefix))
    assert computed["meta_info"]["cached_tokens"] == 0
    engine.generate(input_ids=_ids(3, 180), sampling_params=GREEDY)         # the pool evicts the prefix
    from_host = engine.score(input_ids=ids, logprob_start_len=len(prefix))
    hicache = engine.stats()["hicache"]
    engine.check_integrity()
    engine.shutdown()
    # the match may reach logprob_start_len - 1 = 95 tokens: 5 whole pages
    assert from_host["meta_info"]["cached_tokens"] == 5 * PAGE_SIZE
    assert hicache["hits_by_tier"]["host"] >= 5 * PAGE_SIZE and hicache["pages_loaded"] >= 5
    assert _rel_err(_logprobs(from_host), _logprobs(computed)) <= 1e-5

    engine = Engine(tiny, max_total_tokens=200, hicache_storage_dir=tmp_path)    # a fresh pool and host tier
    from_disk = engine.score(input_ids=ids, logprob_start_len=len(prefix))
    hicache = engine.stats()["hicache"]
    engine.check_integrity()
    engine.shutdown()
    assert from_disk["meta_info"]["cached_tokens"] == 5 * PAGE_SIZE
    assert hicache["hits_by_tier"]["disk"] == 5 * PAGE_SIZE and hicache["hits_by_tier"]["host"] == 0
    assert _rel_err(_logprobs(from_disk), _logprobs(computed)) <= 1e-5


def test_match_continues_from_host_inside_a_page_the_pool_holds_part_of(tiny) -> None:
    shared = _ids(5, 40)                                  # ends 8 tokens into page 2
    a, b, cont = shared + _ids(6, 60), shared + _ids(7, 60), _ids(8, 16)
    engine = Engine(tiny, max_total_tokens=260, enable_hierarchical_cache=True)
    computed = engine.score(input_ids=a + cont, logprob_start_len=len(a))
    engine.generate(input_ids=_ids(9, 200), sampling_params=GREEDY)         # a goes to the host tier
    engine.generate(input_ids=b, sampling_params=GREEDY)                    # the pool holds `shared` again
    host_hits = engine.stats()["hicache"]["hits_by_tier"]["host"]
    loaded = engine.score(input_ids=a + cont, logprob_start_len=len(a))
    # the pool gives 40 tokens, the host tier the rest of pages 2-5 (a's 99 matchable tokens: 6 pages)
    assert loaded["meta_info"]["cached_tokens"] == 6 * PAGE_SIZE
    assert engine.stats()["hicache"]["hits_by_tier"]["host"] - host_hits == 6 * PAGE_SIZE - len(shared)
    assert _rel_err(_logprobs(loaded), _logprobs(computed)) <= 1e-5
    engine.check_integrity()
    engine.shutdown()


def _mixed_workload(engine: Engine) -> list[list[int]]:
    system = _ids(10, 48)
    outputs = []
    for turn in range(3):                                  # conversations that come back after eviction
        for user in range(3):
            r = engine.generate(input_ids=system + _ids(100 + user, 40 + 8 * turn), sampling_params=GREEDY)
            outputs.append(r["output_ids"])
    batch = [system + _ids(200 + i, 30) for i in range(3)] + [_ids(300, 70)]
    outputs += [r["output_ids"] for r in engine.generate(input_ids=batch, sampling_params=GREEDY)]
    stop = {**GREEDY, "max_new_tokens": 12, "stop_token_ids": [outputs[0][2]]}
    outputs.append(engine.generate(input_ids=system + _ids(101, 40), sampling_params=stop)["output_ids"])
    return outputs


def test_greedy_outputs_are_identical_with_tiers_on_and_off(tiny) -> None:
    off = Engine(tiny, max_total_tokens=260)
    want = _mixed_workload(off)
    off.check_integrity()
    off.shutdown()
    on = Engine(tiny, max_total_tokens=260, enable_hierarchical_cache=True)
    got = _mixed_workload(on)
    stats = on.stats()
    on.check_integrity()
    on.shutdown()
    assert got == want
    assert stats["num_evicted_tokens"] > 0 and stats["hicache"]["hits_by_tier"]["host"] > 0
    assert stats["hicache"]["write_policy"] == "write_back" and stats["hicache"]["disk_capacity_bytes"] == 0


def test_stats_and_snapshot_show_each_tier(tiny, tmp_path) -> None:
    engine = Engine(tiny, max_total_tokens=200, hicache_storage_dir=tmp_path, hicache_size=0.5,
                    hicache_storage_size=1.0)
    first = _ids(20, 100)
    engine.generate(input_ids=first, sampling_params=GREEDY)
    engine.generate(input_ids=_ids(21, 150), sampling_params=GREEDY)       # evicts the first prompt
    snap = engine.snapshot()
    hicache = engine.stats()["hicache"]
    assert snap["tiers"]["device"] == {"used": snap["cache"]["cached_tokens"], "capacity": 199}
    assert snap["tiers"]["host"] == {"used_bytes": hicache["host_used_bytes"], "capacity_bytes": 2**29}
    assert snap["tiers"]["disk"]["capacity_bytes"] == 2**30 and snap["tiers"]["disk"]["used_bytes"] > 0
    assert hicache["write_policy"] == "write_through" and hicache["pages_written"] > 0
    tiers = {n["id"]: n["tier"] for n in snap["cache"]["nodes"]}
    assert set(tiers.values()) == {"device", "host"}
    host_node = next(n for n in snap["cache"]["nodes"] if n["tier"] == "host")
    assert host_node["parent"] in tiers
    assert engine.node_text(host_node["id"])["num_tokens"] == host_node["depth_tokens"]
    assert engine.flush_cache()
    assert engine.stats()["hicache"]["host_used_bytes"] == 0 and _page_files(tmp_path)   # the disk tier stays
    r = engine.generate(input_ids=first, sampling_params=GREEDY)
    assert r["meta_info"]["cached_tokens"] == (len(first) - 1) // PAGE_SIZE * PAGE_SIZE
    assert engine.stats()["hicache"]["hits_by_tier"]["disk"] > 0
    engine.check_integrity()
    engine.shutdown()


def test_without_tiers_there_is_no_tier_view(tiny) -> None:
    engine = Engine(tiny, max_total_tokens=200)
    engine.generate(input_ids=_ids(1, 20), sampling_params=GREEDY)
    assert "tiers" not in engine.snapshot() and "hicache" not in engine.stats()
    engine.check_integrity()
    engine.shutdown()


def _generate_recording_warnings(engine: Engine, ids: list[int]) -> tuple[dict, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = engine.generate(input_ids=ids, sampling_params=GREEDY)
    return result, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_damaged_and_foreign_pages_are_recomputed_with_one_warning_each(tiny, tmp_path) -> None:
    ids = _ids(30, 150)                                   # 9 whole pages
    ours = tmp_path / "ours"
    engine = Engine(tiny, max_total_tokens=400, hicache_storage_dir=ours)
    want = engine.generate(input_ids=ids, sampling_params=GREEDY)["output_ids"]
    engine.check_integrity()
    engine.shutdown()
    # a page of the same prompt in another namespace: the same model in bfloat16
    other = Engine(tiny, dtype="bfloat16", max_total_tokens=400, hicache_storage_dir=tmp_path / "bf16")
    other.generate(input_ids=ids, sampling_params=GREEDY)
    other.shutdown()

    engine = Engine(tiny, max_total_tokens=400, hicache_storage_dir=ours)
    disk = engine.tree.disk
    path = [disk.path(key) for key in page_keys(engine.tree.namespace, ids)]
    foreign = [other.tree.disk.path(key) for key in page_keys(other.tree.namespace, ids)]
    data = bytearray(path[3].read_bytes())
    data[-1] ^= 1                                         # a flipped bit in page 3
    path[3].write_bytes(bytes(data))
    got, said = _generate_recording_warnings(engine, ids)
    assert got["output_ids"] == want and got["meta_info"]["cached_tokens"] == 3 * PAGE_SIZE
    assert len(said) == 1 and "corrupt" in said[0]
    engine.check_integrity()
    engine.shutdown()                                     # the recomputed pages were written again
    assert all(disk.check_file(f) is None for f in _page_files(ours))

    engine = Engine(tiny, max_total_tokens=400, hicache_storage_dir=ours)
    path[2].write_bytes(path[2].read_bytes()[:500])       # a writer killed mid-file...
    path[2].with_name(path[2].name + ".123.4.tmp").write_bytes(b"partial")   # ...or before its rename
    path[6].write_bytes(foreign[6].read_bytes())          # another namespace's page under our page's name
    got, said = _generate_recording_warnings(engine, ids)
    assert got["output_ids"] == want and got["meta_info"]["cached_tokens"] == 2 * PAGE_SIZE
    assert len(said) == 1 and "truncated" in said[0]      # loading stops at the first bad page
    assert engine.flush_cache()                           # the pool forgets; pages 3-5 are on disk again
    got, said = _generate_recording_warnings(engine, ids)
    assert got["output_ids"] == want and got["meta_info"]["cached_tokens"] == 6 * PAGE_SIZE
    assert len(said) == 1 and "foreign" in said[0]
    engine.check_integrity()
    engine.shutdown()


def test_unwritable_storage_folder_warns_once_and_keeps_serving(tiny, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = Engine(tiny, max_total_tokens=200, hicache_storage_dir=blocker)
        ids = _ids(40, 60)
        first = engine.generate(input_ids=ids, sampling_params=GREEDY)
        engine.generate(input_ids=_ids(41, 150), sampling_params=GREEDY)
        again = engine.generate(input_ids=ids, sampling_params=GREEDY)
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(said) == 1 and "read-only" in said[0]
    assert again["output_ids"] == first["output_ids"] and again["meta_info"]["cached_tokens"] == 48   # from host
    engine.check_integrity()
    engine.shutdown()


def test_two_engines_sharing_a_folder_leave_every_page_readable(tiny, tmp_path) -> None:
    # two engines at once on one folder (the disk tier's own tests run two processes)
    system = _ids(50, 64)
    prompts = [system + _ids(51 + i, 40) for i in range(4)]
    engines = [Engine(tiny, max_total_tokens=300, hicache_storage_dir=tmp_path) for _ in range(2)]
    outs: list[list[list[int]]] = [[], []]

    def run(i: int) -> None:
        for ids in (prompts if i == 0 else prompts[::-1]):
            outs[i].append(engines[i].generate(input_ids=ids, sampling_params=GREEDY)["output_ids"])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for engine in engines:
        engine.check_integrity()
        engine.shutdown()
    assert outs[0] == outs[1][::-1]                       # the same prompts, whichever engine computed them
    files = _page_files(tmp_path)
    assert files and all(engines[0].tree.disk.check_file(f) is None for f in files)
    assert not list(tmp_path.rglob("*.tmp"))


_RESTART_RUN = """
import json, sys, time
from sgnb.engine import Engine
model, folder, prompt = sys.argv[1], sys.argv[2], sys.argv[3]
engine = Engine(model, dtype="float32", hicache_storage_dir=folder)
engine.generate("Warm up.", {"max_new_tokens": 2})          # first-call costs out of the timing
start = time.perf_counter()
first = engine.generate(prompt, {"max_new_tokens": 1, "temperature": 0})
ttft = time.perf_counter() - start
disk_hits = engine.stats()["hicache"]["hits_by_tier"]["disk"]
out = engine.generate(prompt, {"max_new_tokens": 16, "temperature": 0})
engine.check_integrity()
engine.shutdown()
print(json.dumps({"ttft": ttft, "disk_hits": disk_hits, "cached_tokens": first["meta_info"]["cached_tokens"],
                  "prompt_tokens": first["meta_info"]["prompt_tokens"],
                  "first": first["output_ids"], "output": out["output_ids"]}))
"""


def _few_shot_prompt() -> str:
    shots = "".join(f"Question: What is {a} plus {b}?\nAnswer: {a + b}\n\n"
                    for a, b in zip(range(11, 390, 13), range(7, 900, 19)))
    return "Answer each question with a number.\n\n" + shots + "Question: What is 123 plus 456?\nAnswer:"


@pytest.mark.slow
def test_prompt_comes_back_from_disk_after_a_restart(smollm2_path, tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    runs = []
    for _ in range(2):                                    # two processes: the second is a restarted kernel
        proc = subprocess.run([sys.executable, "-c", _RESTART_RUN, str(smollm2_path), str(tmp_path),
                               _few_shot_prompt()], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    assert 650 <= cold["prompt_tokens"] <= 800 and cold["cached_tokens"] == 0
    assert warm["cached_tokens"] >= 0.9 * warm["prompt_tokens"]
    assert cold["disk_hits"] == 0 and warm["disk_hits"] >= 0.9 * warm["prompt_tokens"]     # read back, not recomputed
    assert warm["first"] == cold["first"] and warm["output"] == cold["output"]
    ratio = cold["ttft"] / warm["ttft"]
    # timing is the benchmark's (bench/multi_turn.py --restart); a shared machine makes it noise here
    print(f"time to first token: cold {cold['ttft']:.3f} s, from disk {warm['ttft']:.3f} s ({ratio:.1f}x)")
