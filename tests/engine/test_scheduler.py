"""The scheduler without a model: admission order, chunking, deferral, retraction and slot ownership.

`Sim` plays the engine's part after each forward pass (advance kv_len, commit prefill chunks,
append one token per finished extend/decode, finish at max_new_tokens) exactly as
`postprocess.process_batch` does, and checks slot integrity after every step.
"""

from __future__ import annotations

import pytest

from sgnb.engine.attention import ForwardMode
from sgnb.engine.kv_cache import ReqToTokenPool
from sgnb.engine.radix_cache import RadixCache
from sgnb.engine.request import Req
from sgnb.engine.sampling_params import SamplingParams
from sgnb.engine.scheduler import PoolExhausted, ScheduleBatch, Scheduler, SchedulerConfig
from sgnb.engine.slot_allocator import SlotAllocator


class Sim:
    def __init__(self, num_slots: int = 2048, radix_cache: bool = True, **cfg):
        self.allocator = SlotAllocator(num_slots)
        self.tree = RadixCache(self.allocator, disabled=not radix_cache)
        self.cfg = SchedulerConfig(**cfg)
        self.req_pool = ReqToTokenPool(self.cfg.max_running_requests + 1, 512, "cpu")
        self.sched = Scheduler(self.cfg, self.allocator, self.tree, self.req_pool)
        self.finished: list[Req] = []

    def cache(self, ids: list[int]) -> None:
        """Leave `ids` in the tree, as a finished earlier request would."""
        slots = self.allocator.alloc(len(ids))
        num_cached = self.tree.insert(ids, slots)
        self.allocator.free(slots[:num_cached])

    def add(self, rid: str, ids: list[int], max_new_tokens: int = 4) -> Req:
        req = Req(rid=rid, input_ids=list(ids), params=SamplingParams(max_new_tokens=max_new_tokens))
        self.sched.add(req)
        return req

    def step(self) -> ScheduleBatch | None:
        """One engine iteration: schedule, 'run', postprocess. Returns the batch that ran."""
        batch = self.sched.schedule()
        if batch is None:
            return None
        self.check(batch)
        for req, n in zip(batch.reqs, batch.extend_lens):
            req.kv_len += n
            if req.kv_len < len(req.fill_ids):          # a prefill chunk: more prompt to compute
                self.sched.commit_to_tree(req)
                continue
            req.output_ids.append(next_token(req))
            if len(req.output_ids) >= req.params.max_new_tokens:
                self.sched.finish(req)
                self.finished.append(req)
        if batch.mode is ForwardMode.EXTEND:
            for req in batch.reqs:
                if req not in self.finished and req in self.sched.pending \
                        and req.kv_len == len(req.fill_ids) - 1:
                    self.sched.pending.remove(req)
                    self.sched.running.append(req)
                    self.sched.commit_to_tree(req)
        self.check()
        return batch

    def run_to_end(self, max_steps: int = 10_000) -> list[ScheduleBatch]:
        batches = []
        while self.sched.has_work():
            batch = self.step()
            assert batch is not None, "the scheduler has work but scheduled nothing (it would spin forever)"
            batches.append(batch)
            assert len(batches) < max_steps
        return batches

    def check(self, batch: ScheduleBatch | None = None) -> None:
        """free + tree + requests' own slots (+ those handed out for a batch not yet run) == all slots."""
        used = self.sched.used_slots()
        if batch is not None:
            used += self.sched.pending_slots(batch)
        self.tree.check_integrity(used)


def next_token(req: Req) -> int:
    """A deterministic 'model': the next token depends only on the request and its length."""
    return 40_000 + (hash(req.rid) % 1000) * 8 + len(req.output_ids) % 8


def rids(batch: ScheduleBatch) -> list[str]:
    return [r.rid for r in batch.reqs]


def span(start: int, n: int) -> list[int]:
    return list(range(start, start + n))


# ------------------------------------------------------------------------------ cache-aware ordering


def test_lpm_admits_the_longest_cached_prefix_first():
    sim = Sim(schedule_policy="lpm")
    shared = span(100, 40)
    sim.cache(shared)
    a = sim.add("none", span(1000, 20))
    b = sim.add("short", shared[:10] + span(2000, 10))
    c = sim.add("long", shared[:30] + span(3000, 10))
    batch = sim.step()
    assert rids(batch) == ["long", "short", "none"]
    assert batch.extend_lens == [10, 10, 20]
    assert (c.cached_tokens, b.cached_tokens, a.cached_tokens) == (30, 10, 0)
    sim.run_to_end()


def test_fcfs_admits_in_arrival_order():
    sim = Sim(schedule_policy="fcfs")
    shared = span(100, 40)
    sim.cache(shared)
    sim.add("none", span(1000, 20))
    sim.add("short", shared[:10] + span(2000, 10))
    sim.add("long", shared[:30] + span(3000, 10))
    assert rids(sim.step()) == ["none", "short", "long"]
    sim.run_to_end()


def test_dfs_weight_visits_the_heaviest_subtree_first():
    sim = Sim(schedule_policy="dfs-weight")
    light, heavy = span(100, 30), span(200, 20)
    heavy_q, heavy_r = heavy + span(300, 4), heavy + span(400, 8)
    for ids in (light, heavy_q, heavy_r):
        sim.cache(ids)
    # arrival order deliberately opposite to the subtree weights
    sim.add("light", light + span(1000, 6))              # subtree weight 1, longest match (30)
    sim.add("none", span(5000, 6))                       # no cached prefix: a weight-1 subtree of its own
    sim.add("heavy-r", heavy_r + span(1100, 6))          # heavy subtree (weight 3), child r has weight 1
    sim.add("heavy-q1", heavy_q + span(1200, 6))         # child q has weight 2
    sim.add("heavy-q2", heavy_q + span(1300, 6))
    assert rids(sim.step()) == ["heavy-q1", "heavy-q2", "heavy-r", "light", "none"]
    sim.run_to_end()


def test_lpm_and_dfs_weight_differ_on_the_same_queue():
    def first_admitted(policy: str) -> str:
        sim = Sim(schedule_policy=policy)
        sim.cache(span(100, 30))
        sim.cache(span(200, 20))
        sim.add("light", span(100, 30) + span(1000, 6))
        for i in range(3):
            sim.add(f"heavy{i}", span(200, 20) + span(2000 + 100 * i, 6))
        return rids(sim.step())[0]

    assert first_admitted("lpm") == "light"
    assert first_admitted("dfs-weight") == "heavy0"


@pytest.mark.parametrize("policy", ["lpm", "dfs-weight"])
def test_aging_admits_a_request_passed_over_max_skips_times(policy):
    max_skips = 2
    # the budget admits one 20-token request per step
    sim = Sim(schedule_policy=policy, max_prefill_tokens=20, max_skips=max_skips)
    shared = span(100, 40)
    sim.cache(shared)
    sim.add("starved", span(5000, 20))              # arrives first, but matches nothing
    for i in range(6):
        sim.add(f"hit{i}", shared + span(1000 + 100 * i, 20))
    admitted_order = []
    while len(admitted_order) < 4:
        batch = sim.step()
        if batch.mode is ForwardMode.EXTEND:
            admitted_order += [r for r in rids(batch) if r not in admitted_order]
    # passed over max_skips times while longer matches went first, then admitted ahead of them
    assert admitted_order == ["hit0", "hit1", "starved", "hit2"]
    sim.run_to_end()


def test_aging_bounds_the_wait_under_a_steady_stream_of_better_matches():
    max_skips = 3
    sim = Sim(schedule_policy="lpm", max_prefill_tokens=20, max_skips=max_skips)
    shared = span(100, 40)
    sim.cache(shared)
    starved = sim.add("starved", span(5000, 20))
    for i in range(5):                                # a backlog of better matches...
        sim.add(f"hit{i}", shared + span(1000 + 100 * i, 20))
    num_extend_steps = 0
    while starved in sim.sched.waiting:
        batch = sim.step()
        if batch.mode is ForwardMode.EXTEND:
            num_extend_steps += 1
            sim.add(f"late{num_extend_steps}", shared + span(20_000 + 100 * num_extend_steps, 20))  # ...that keeps coming
        assert num_extend_steps <= max_skips + 1, "the starved request waited past the aging bound"
    assert starved.num_skips == max_skips
    sim.run_to_end()


# ------------------------------------------------------------------------------ batch composition


def test_request_sharing_an_uncached_prefix_with_the_batch_is_deferred_then_reuses_it():
    sim = Sim()
    common = span(100, 50)
    first = sim.add("first", common + span(1000, 5))
    second = sim.add("second", common + span(2000, 5))
    other = sim.add("other", span(3000, 40))
    batch = sim.step()
    assert rids(batch) == ["first", "other"]          # computing `common` twice would waste the batch
    assert second in sim.sched.waiting
    batch = sim.step()
    assert rids(batch) == ["second", "first", "other"]     # first and other decode inside the extend step
    assert batch.extend_lens == [5, 1, 1]
    assert second.cached_tokens == 50
    sim.run_to_end()
    assert {r.rid for r in sim.finished} == {first.rid, second.rid, other.rid}


def test_short_shared_prefix_is_not_deferred():
    sim = Sim(in_batch_prefix_threshold=32)
    common = span(100, 10)
    sim.add("a", common + span(1000, 40))
    sim.add("b", common + span(2000, 40))
    assert rids(sim.step()) == ["a", "b"]
    sim.run_to_end()


def test_new_request_joins_the_running_decode_batch():
    sim = Sim()
    sim.add("long", span(100, 10), max_new_tokens=20)
    assert sim.step().mode is ForwardMode.EXTEND
    assert sim.step().mode is ForwardMode.DECODE
    sim.add("late", span(500, 10), max_new_tokens=20)
    batch = sim.step()
    assert (batch.mode, rids(batch), batch.extend_lens) == (ForwardMode.EXTEND, ["late", "long"], [10, 1])
    batch = sim.step()
    assert (batch.mode, sorted(rids(batch))) == (ForwardMode.DECODE, ["late", "long"])
    sim.run_to_end()


def test_long_prompt_is_prefilled_in_chunks_of_max_prefill_tokens():
    sim = Sim(max_prefill_tokens=16)
    req = sim.add("long", span(100, 50), max_new_tokens=2)
    lens = []
    while req.kv_len < len(req.input_ids):
        batch = sim.step()
        assert batch.mode is ForwardMode.EXTEND
        lens += batch.extend_lens
    assert lens == [16, 16, 16, 2]
    assert len(req.output_ids) == 1
    sim.run_to_end()
    assert sim.tree.match_prefix(req.input_ids, record_hit=False).prefix_len == 50


def test_a_draft_is_extended_in_one_chunk_with_the_row_before_it():
    # the row before a draft's first token verifies it: a chunk never ends among (or right before) the draft
    sim = Sim(max_prefill_tokens=16)
    req = sim.add("draft", span(100, 30), max_new_tokens=8)
    req.draft_ids = [7, 8, 9]
    lens = [sim.sched.schedule().extend_lens[0]]
    req.kv_len += lens[-1]
    sim.sched.commit_to_tree(req)
    while req.kv_len < len(req.fill_ids):
        batch = sim.sched.schedule()
        lens += batch.extend_lens
        req.kv_len += batch.extend_lens[0]
        if req.kv_len < len(req.fill_ids):
            sim.sched.commit_to_tree(req)
    assert lens == [16, 13, 4]              # not [16, 16, 1]: the last chunk holds 29..32
    # the model declines the draft's first token: its three slots go back, the sampled token follows
    free = sim.allocator.num_free
    sim.sched.truncate_kv(req, req.kv_len - len(req.draft_ids))
    req.draft_ids = []
    req.output_ids.append(next_token(req))
    assert sim.allocator.num_free == free + 3 and req.kv_len == len(req.fill_ids) - 1
    sim.sched.pending.remove(req)
    sim.sched.running.append(req)
    sim.sched.commit_to_tree(req)
    sim.check()
    sim.run_to_end()
    assert len(req.output_ids) == 8


def test_finishing_mid_draft_keeps_the_unconfirmed_rest_out_of_the_tree():
    sim = Sim()
    req = sim.add("r", span(100, 10), max_new_tokens=8)
    req.draft_ids = [7, 8]
    batch = sim.sched.schedule()
    req.kv_len += batch.extend_lens[0]                   # prompt and draft computed: 12 tokens
    req.output_ids.append(req.draft_ids.pop(0))          # the model confirms 7, then a stop condition hits
    free = sim.allocator.num_free
    sim.sched.finish(req)
    assert sim.tree.match_prefix(span(100, 10) + [7, 8], record_hit=False).prefix_len == 11
    assert sim.allocator.num_free == free + 1 and not req.draft_ids
    sim.check()


def test_truncating_below_the_tree_is_refused():
    sim = Sim()
    req = sim.add("r", span(100, 10))
    sim.step()
    with pytest.raises(ValueError, match="cannot truncate"):
        sim.sched.truncate_kv(req, req.tree_len - 1)
    sim.run_to_end()


def test_a_cached_draft_is_computed_again_with_the_row_before_it():
    sim = Sim()
    sim.cache(span(100, 30) + [7, 8, 9, 10])
    req = sim.add("draft", span(100, 30), max_new_tokens=4)
    req.draft_ids = [7, 8, 9]
    batch = sim.sched.schedule()
    assert batch.extend_lens == [4] and req.kv_len == 29      # prompt's last token + the draft, not cached
    sim.allocator.free(sim.sched.pending_slots(batch))     # the batch does not run: its slots go back
    sim.sched.remove(req)
    sim.check()


def test_chunked_prefill_shares_the_budget_with_other_requests():
    sim = Sim(max_prefill_tokens=16)
    sim.add("long", span(100, 40))
    sim.add("short", span(500, 4))
    first = sim.step()
    assert rids(first) == ["long"] and first.extend_lens == [16]
    second = sim.step()
    assert sum(second.extend_lens) <= 16
    sim.run_to_end()
    assert len(sim.finished) == 2


def test_all_requests_finish_with_the_radix_cache_disabled():
    sim = Sim(radix_cache=False)
    shared = span(100, 40)
    for i in range(6):
        sim.add(f"r{i}", shared + span(1000 + 10 * i, 5), max_new_tokens=3)
    sim.run_to_end()
    assert len(sim.finished) == 6
    assert all(r.cached_tokens == 0 for r in sim.finished)
    assert sim.allocator.num_free == sim.allocator.num_usable


# ------------------------------------------------------------------------------ memory pressure


def test_requests_admitted_together_reserve_decode_headroom_for_each_other():
    sim = Sim(num_slots=131)                          # 130 usable: one request needs 20 + 60 reserved
    sim.add("a", span(100, 20), max_new_tokens=60)
    sim.add("b", span(300, 20), max_new_tokens=60)
    assert rids(sim.step()) == ["a"]                  # b would eat a's decode room: it waits
    sim.run_to_end()
    assert sim.sched.num_retractions == 0
    assert len(sim.finished) == 2


def test_decode_retracts_a_request_when_the_pool_is_full_and_loses_no_output():
    reference = Sim()
    # a small decode reserve admits both prompts, but the pool cannot hold both outputs
    tight = Sim(num_slots=131, decode_reserve_tokens=8)
    for sim in (reference, tight):
        sim.add("a", span(100, 20), max_new_tokens=60)
        sim.add("b", span(300, 20), max_new_tokens=60)
        sim.run_to_end()
    assert tight.sched.num_retractions >= 1
    assert reference.sched.num_retractions == 0
    outputs = {sim: {r.rid: r.output_ids for r in sim.finished} for sim in (reference, tight)}
    assert outputs[tight] == outputs[reference]
    assert all(len(ids) == 60 for ids in outputs[tight].values())


def test_eviction_frees_unlocked_cache_for_new_requests():
    sim = Sim(num_slots=101)
    for i in range(10):                               # 10 x 30 tokens through a 100-slot pool
        sim.add(f"r{i}", span(1000 * (i + 1), 26), max_new_tokens=4)
        sim.run_to_end()
    assert len(sim.finished) == 10
    assert sim.tree.stats["num_evicted_tokens"] > 0


def test_idle_scheduler_admits_a_request_whose_decode_reserve_exceeds_the_pool():
    sim = Sim(num_slots=101)                          # 100 usable slots
    req = sim.add("big", span(100, 60), max_new_tokens=128)   # 60 + 128 reserved > 100
    batch = sim.step()
    assert batch is not None and rids(batch) == ["big"]
    assert req.kv_len == 60


def test_single_request_that_outgrows_the_pool_raises_pool_exhausted():
    sim = Sim(num_slots=31)                           # 30 usable slots
    req = sim.add("big", span(100, 20), max_new_tokens=40)
    with pytest.raises(PoolExhausted) as exc:
        sim.run_to_end()
    assert exc.value.req is req
    assert "KV pool" in str(exc.value)
    sim.sched.remove(req)                             # what the engine does: abort it
    sim.check()
    assert not sim.sched.has_work()


def test_remove_returns_every_slot_and_row():
    sim = Sim()
    sim.cache(span(100, 30))
    a = sim.add("a", span(100, 30) + span(500, 10), max_new_tokens=8)
    sim.add("b", span(900, 12), max_new_tokens=8)
    sim.step()
    sim.step()
    sim.sched.remove(a)
    sim.check()
    assert a.row is None and a.last_node is None
    sim.run_to_end()
    assert sim.tree.protected_size() == 0
    assert sim.req_pool.num_free == sim.req_pool.num_rows


def test_config_rejects_unknown_policy_and_non_positive_limits():
    with pytest.raises(ValueError, match="schedule_policy"):
        SchedulerConfig(schedule_policy="random")
    for name in ("max_running_requests", "max_prefill_tokens", "max_skips"):
        with pytest.raises(ValueError, match=name):
            SchedulerConfig(**{name: 0})


def test_running_requests_decode_inside_a_chunked_prefill():
    sim = Sim(max_prefill_tokens=16)
    short = sim.add("short", span(100, 8), max_new_tokens=6)
    sim.step()                                       # short is prefilled and now decodes
    sim.add("long", span(3000, 64))                  # 64 tokens: four 16-token chunks
    mixed = [sim.step() for _ in range(4)]
    for batch in mixed:
        assert batch.mode is ForwardMode.EXTEND
        if short in batch.reqs:
            assert batch.extend_lens[batch.reqs.index(short)] == 1
    assert len(short.output_ids) >= 4, "the short request kept decoding while the long prompt was chunked"
    sim.run_to_end()
    assert short.is_finished or short in sim.finished
