"""Scheduling policies: each registered function's admission order, through a real Scheduler and cache."""

from __future__ import annotations

import pytest

from sgnb.engine.policy import get_policy, policy_names, register
from tests.engine.scheduler_sim import Sim, rids, span


def test_the_registry_names_every_policy():
    assert set(policy_names()) == {"lpm", "dfs-weight", "fcfs"}


def test_unknown_policy_is_a_value_error_naming_the_known_ones():
    with pytest.raises(ValueError, match="schedule_policy must be one of .*'lpm'.*got 'random'"):
        get_policy("random")


def test_registering_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="'fcfs' is registered twice"):
        register("fcfs")(lambda queue, match, cache: list(queue))
    assert get_policy("fcfs")(["a", "b"], None, None) == ["a", "b"]


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


def test_dfs_weight_without_a_prefix_cache_admits_in_arrival_order():
    sim = Sim(schedule_policy="dfs-weight", radix_cache=False)
    sim.add("a", span(100, 8))
    sim.add("b", span(100, 4) + span(500, 4))
    sim.add("c", span(900, 8))
    assert rids(sim.step()) == ["a", "b", "c"]
    sim.run_to_end()


def test_a_queue_longer_than_the_limit_is_served_first_come_first_served():
    def admitted(policy_queue_limit: int) -> list[str]:
        sim = Sim(schedule_policy="lpm", policy_queue_limit=policy_queue_limit)
        sim.cache(span(100, 40))
        sim.add("none", span(1000, 20))
        sim.add("short", span(100, 10) + span(2000, 10))
        sim.add("long", span(100, 30) + span(3000, 10))
        order = rids(sim.step())
        sim.run_to_end()
        return order

    assert admitted(policy_queue_limit=3) == ["long", "short", "none"]
    assert admitted(policy_queue_limit=2) == ["none", "short", "long"]
