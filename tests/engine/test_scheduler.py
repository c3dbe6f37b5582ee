"""The scheduler without a model: admission order, chunking, deferral, retraction and slot ownership.

`Sim` (tests/engine/scheduler_sim.py) plays the engine's part after each forward pass and checks slot
integrity after every step.
"""

from __future__ import annotations

import pytest

from sgnb.engine.attention import ForwardMode
from sgnb.engine.errors import PoolExhausted
from sgnb.engine.scheduler import SchedulerConfig
from tests.engine.scheduler_sim import Sim, next_token, rids, span


# ------------------------------------------------------------------------------ aging


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


def test_start_decoding_moves_a_prefilled_request_to_running_and_caches_its_prompt():
    sim = Sim()
    req = sim.add("r", span(100, 10), max_new_tokens=8)
    batch = sim.sched.schedule()
    req.kv_len += batch.extend_lens[0]
    req.output_ids.append(next_token(req))
    assert sim.sched.pending == [req] and sim.sched.running == []
    sim.sched.start_decoding(req)
    assert sim.sched.pending == [] and sim.sched.running == [req]
    assert req.tree_len == 10 and sim.tree.match_prefix(span(100, 10), record_hit=False).prefix_len == 10
    sim.check()
    sim.sched.start_decoding(req)                   # a running request stays where it is
    assert sim.sched.running == [req] and sim.sched.pending == []
    sim.run_to_end()
    assert sim.finished == [req]


def test_without_a_prefix_cache_requests_keep_their_own_slots():
    sim = Sim(radix_cache=False)
    req = sim.add("r", span(100, 10), max_new_tokens=8)
    sim.step()
    assert sim.sched.running == [req] and req.tree_len == 0
    assert len(sim.sched.used_slots()) == req.kv_len == 10
    sim.run_to_end()
    assert sim.allocator.num_free == sim.allocator.num_usable


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
    sim.sched.start_decoding(req)
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
