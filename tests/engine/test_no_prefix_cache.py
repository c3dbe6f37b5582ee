"""NoPrefixCache: the prefix cache of `Engine(radix_cache=False)` stores nothing and leaves slots to requests."""

from __future__ import annotations

import json

import pytest

from sgnb.engine.no_prefix_cache import NoPrefixCache
from sgnb.engine.radix_cache import RadixCache, TreeNode
from sgnb.engine.slot_allocator import SlotAllocator


def test_matches_nothing_and_leaves_every_slot_to_the_caller() -> None:
    cache = NoPrefixCache(SlotAllocator(64))
    slots = cache.allocator.alloc(3)
    assert cache.insert([1, 2, 3], slots) == 0
    match = cache.match_prefix([1, 2, 3])
    assert match.prefix_len == 0 and match.slots == [] and match.last_node is cache.root
    assert cache.total_size() == 0 and cache.evictable_size() == 0 and cache.evict(10) == 0
    cache.check_integrity(used=slots)
    with pytest.raises(AssertionError, match="3 slot\\(s\\) leaked"):
        cache.check_integrity()
    cache.allocator.free(slots)
    cache.inc_lock_ref(cache.root)
    cache.dec_lock_ref(cache.root)
    cache.flush()
    cache.check_integrity()


def test_lookups_count_toward_a_zero_hit_rate() -> None:
    cache = NoPrefixCache(SlotAllocator(64))
    assert cache.hit_rate() == 0.0
    cache.match_prefix([1, 2, 3, 4], max_len=3)
    cache.match_prefix([1, 2], record_hit=False)
    cache.record_hit(cache.root, 5)
    assert cache.stats["queried_tokens"] == 8 and cache.stats["matched_tokens"] == 0
    assert cache.hit_rate() == 0.0


def test_snapshot_has_the_radix_cache_shape_with_only_a_root() -> None:
    allocator = SlotAllocator(64)
    snap = NoPrefixCache(allocator).snapshot(max_nodes=5)
    json.dumps(snap)
    empty_radix = RadixCache(SlotAllocator(64)).snapshot(max_nodes=5)
    assert snap.keys() == empty_radix.keys()
    assert snap["nodes"][0].keys() == empty_radix["nodes"][0].keys()
    assert snap["num_nodes"] == 1 and snap["nodes"][0]["parent"] is None and snap["cached_tokens"] == 0
    assert snap["num_free_slots"] == allocator.num_free and not snap["truncated"]


def test_bad_arguments_are_value_errors() -> None:
    cache = NoPrefixCache(SlotAllocator(64))
    with pytest.raises(ValueError, match="one slot per token"):
        cache.insert([1, 2], [5])
    with pytest.raises(ValueError, match="max_len"):
        cache.match_prefix([1], max_len=-1)
    with pytest.raises(ValueError, match="no node with id 7"):
        cache.node_tokens(7)
    assert cache.node_tokens(cache.root.id) == []
    with pytest.raises(ValueError, match="not in this cache"):
        cache.inc_lock_ref(TreeNode(id=3, parent=cache.root))
    with pytest.raises(ValueError, match="max_nodes"):
        cache.snapshot(max_nodes=0)
