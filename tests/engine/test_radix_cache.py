from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sgnb.engine.radix_cache import RadixCache, TreeNode
from sgnb.engine.slot_allocator import SlotAllocator


def chars(text: str) -> list[int]:
    """A character-level vocabulary: token id == code point."""
    return [ord(c) for c in text]


def decode(ids: list[int]) -> str:
    return "".join(map(chr, ids))


def make_cache(num_slots: int = 256) -> RadixCache:
    return RadixCache(SlotAllocator(num_slots))


def finish_request(cache: RadixCache, text: str) -> list[int]:
    """What the engine does when a request that matched nothing finishes: alloc, insert, free duplicates."""
    ids = chars(text)
    slots = cache.allocator.alloc(len(ids))
    assert slots is not None
    num_cached = cache.insert(ids, slots)
    cache.allocator.free(slots[:num_cached])
    return cache.match_prefix(ids, record_hit=False).slots


def path_slots(node: TreeNode) -> list[int]:
    parts = []
    while node.parent is not None:
        parts.append(node.value)
        node = node.parent
    return [s for part in reversed(parts) for s in part]


def test_match_on_empty_tree_returns_root() -> None:
    cache = make_cache()
    m = cache.match_prefix(chars("hello"))
    assert m.prefix_len == 0 and m.slots == [] and m.last_node is cache.root


def test_match_returns_inserted_slots_in_order() -> None:
    cache = make_cache()
    slots = cache.allocator.alloc(5)
    assert cache.insert(chars("hello"), slots) == 0
    m = cache.match_prefix(chars("hello world"))
    assert m.prefix_len == 5 and m.slots == slots
    cache.check_integrity()


def test_match_splits_node_mid_edge() -> None:
    cache = make_cache()
    slots = finish_request(cache, "abcdef")
    leaf = cache.match_prefix(chars("abcdef")).last_node
    m = cache.match_prefix(chars("abcXYZ"))
    assert m.prefix_len == 3 and m.slots == slots[:3]
    upper = m.last_node
    assert upper.key == chars("abc") and upper.value == slots[:3]
    # The lower part keeps its identity (and id), re-parented under the new node.
    assert leaf.key == chars("def") and leaf.value == slots[3:] and leaf.parent is upper
    assert upper.children == {ord("d"): leaf}
    assert cache.root.children[ord("a")] is upper
    assert cache.node_tokens(upper.id) == chars("abc")
    cache.check_integrity()


def test_split_keeps_lock_ref_and_hit_count_on_both_parts() -> None:
    cache = make_cache()
    finish_request(cache, "abcdef")
    m = cache.match_prefix(chars("abcdef"))
    cache.inc_lock_ref(m.last_node)
    cache.match_prefix(chars("abcdef"))
    before = m.last_node.hit_count
    part = cache.match_prefix(chars("ab"), record_hit=False).last_node
    assert part.lock_ref == 1 and m.last_node.lock_ref == 1
    assert part.hit_count == before and m.last_node.hit_count == before
    assert cache.protected_size() == 6 and cache.evictable_size() == 0
    cache.dec_lock_ref(m.last_node)
    assert cache.protected_size() == 0 and cache.evictable_size() == 6
    cache.check_integrity()


def test_match_respects_max_len() -> None:
    cache = make_cache()
    slots = finish_request(cache, "abcdef")
    m = cache.match_prefix(chars("abcdef"), max_len=5)
    assert m.prefix_len == 5 and m.slots == slots[:5]
    assert cache.match_prefix(chars("abcdef"), max_len=0).prefix_len == 0
    with pytest.raises(ValueError, match="max_len must be >= 0"):
        cache.match_prefix(chars("abc"), max_len=-1)


def test_insert_returns_existing_prefix_len_and_keeps_tree_slots() -> None:
    cache = make_cache()
    first = finish_request(cache, "abcd")
    mine = cache.allocator.alloc(6)
    num_cached = cache.insert(chars("abcdxy"), mine)
    assert num_cached == 4
    assert cache.match_prefix(chars("abcdxy")).slots == first + mine[4:]
    # insert never frees: the caller's duplicates are still allocated until it frees them.
    with pytest.raises(AssertionError, match="4 slot\\(s\\) leaked"):
        cache.check_integrity()
    cache.allocator.free(mine[:num_cached])
    cache.check_integrity()


def test_insert_diverging_mid_edge_creates_branch() -> None:
    cache = make_cache()
    finish_request(cache, "abcdef")
    finish_request(cache, "abcxyz")
    ab = cache.match_prefix(chars("abc"), record_hit=False).last_node
    assert sorted(decode(c.key) for c in ab.children.values()) == ["def", "xyz"]
    assert cache.total_size() == 9
    cache.check_integrity()


def test_insert_of_cached_prefix_changes_nothing() -> None:
    cache = make_cache()
    finish_request(cache, "abcdef")
    num_nodes = len(cache)
    slots = cache.allocator.alloc(3)
    assert cache.insert(chars("abc"), slots) == 3
    cache.allocator.free(slots)
    assert len(cache) == num_nodes and cache.total_size() == 6
    cache.check_integrity()


def test_insert_rejects_mismatched_lengths() -> None:
    cache = make_cache()
    with pytest.raises(ValueError, match="one slot per token"):
        cache.insert([1, 2, 3], [1, 2])


def test_evicts_lru_leaf_first() -> None:
    cache = make_cache()
    finish_request(cache, "aaa")
    finish_request(cache, "bbb")
    finish_request(cache, "ccc")
    cache.match_prefix(chars("aaa"))  # "bbb" is now least recently used
    free_before = cache.allocator.num_free
    assert cache.evict(1) == 3
    assert cache.allocator.num_free == free_before + 3
    assert cache.match_prefix(chars("bbb")).prefix_len == 0
    assert cache.match_prefix(chars("aaa")).prefix_len == 3
    assert cache.match_prefix(chars("ccc")).prefix_len == 3
    assert cache.stats["num_evicted_tokens"] == 3
    cache.check_integrity()


def test_locked_path_is_never_evicted() -> None:
    cache = make_cache()
    slots = finish_request(cache, "abcdef")
    finish_request(cache, "abcxyz")
    m = cache.match_prefix(chars("abcdef"))
    cache.inc_lock_ref(m.last_node)
    assert cache.evict(100) == 3  # only "xyz" could go
    assert cache.evictable_size() == 0 and cache.protected_size() == 6
    assert cache.match_prefix(chars("abcdef")).slots == slots
    cache.check_integrity()
    cache.dec_lock_ref(m.last_node)
    assert cache.evict(100) == 6
    assert cache.total_size() == 0
    cache.check_integrity()


def test_lock_on_inner_node_protects_only_its_path() -> None:
    cache = make_cache()
    finish_request(cache, "abcdef")
    m = cache.match_prefix(chars("abc"))
    cache.inc_lock_ref(m.last_node)
    assert cache.evict(100) == 3
    assert cache.match_prefix(chars("abcdef")).prefix_len == 3
    cache.dec_lock_ref(m.last_node)
    cache.check_integrity()


def test_parent_becomes_candidate_after_child_evicted() -> None:
    cache = make_cache()
    finish_request(cache, "abcdef")
    finish_request(cache, "abcxyz")
    finish_request(cache, "qq")
    cache.match_prefix(chars("qq"))  # the "abc" subtree is older
    # Freeing the two "abc" leaves makes "abc" an unlocked leaf, which is older than "qq".
    assert cache.evict(7) == 9
    assert cache.match_prefix(chars("abc")).prefix_len == 0
    assert cache.match_prefix(chars("qq")).prefix_len == 2
    cache.check_integrity()


def test_evict_returns_zero_when_nothing_is_evictable() -> None:
    cache = make_cache()
    assert cache.evict(10) == 0
    finish_request(cache, "abc")
    node = cache.match_prefix(chars("abc")).last_node
    cache.inc_lock_ref(node)
    assert cache.evict(10) == 0
    cache.dec_lock_ref(node)


def test_dec_lock_ref_below_zero_raises() -> None:
    cache = make_cache()
    finish_request(cache, "abc")
    node = cache.match_prefix(chars("abc")).last_node
    with pytest.raises(ValueError, match="lock_ref is already 0"):
        cache.dec_lock_ref(node)
    cache.check_integrity()


def test_lock_on_evicted_node_raises() -> None:
    cache = make_cache()
    finish_request(cache, "abc")
    node = cache.match_prefix(chars("abc")).last_node
    cache.evict(3)
    with pytest.raises(ValueError, match="not in this tree"):
        cache.inc_lock_ref(node)


def test_flush_keeps_locked_paths() -> None:
    cache = make_cache()
    finish_request(cache, "abcdef")
    finish_request(cache, "abcxyz")
    finish_request(cache, "hello")
    m = cache.match_prefix(chars("abcxyz"))
    cache.inc_lock_ref(m.last_node)
    cache.flush()
    assert cache.evictable_size() == 0 and cache.total_size() == 6
    assert cache.match_prefix(chars("abcxyz")).prefix_len == 6
    assert cache.match_prefix(chars("abcdef")).prefix_len == 3
    assert cache.match_prefix(chars("hello")).prefix_len == 0
    cache.check_integrity()
    cache.dec_lock_ref(m.last_node)
    cache.flush()
    assert cache.total_size() == 0 and len(cache) == 1
    assert cache.allocator.num_free == cache.allocator.num_slots - 1


def test_hit_stats_count_queried_and_matched_tokens() -> None:
    cache = make_cache()
    finish_request(cache, "abcd")
    cache.match_prefix(chars("abcdef"))
    cache.match_prefix(chars("abzz"))
    assert cache.stats["queried_tokens"] == 10
    assert cache.stats["matched_tokens"] == 6
    assert cache.hit_rate() == pytest.approx(0.6)
    assert cache.match_prefix(chars("ab"), record_hit=False).last_node.hit_count == 2


def test_snapshot_reports_lru_rank_and_locks() -> None:
    cache = make_cache()
    finish_request(cache, "the cat")
    finish_request(cache, "the dog")
    finish_request(cache, "zebra")
    locked = cache.match_prefix(chars("the dog")).last_node
    cache.inc_lock_ref(locked)
    cache.match_prefix(chars("zebra"))
    snap = cache.snapshot(decode)
    json.dumps(snap)  # plain data
    by_text = {n["text"]: n for n in snap["nodes"]}
    assert set(by_text) == {"", "the ", "cat", "dog", "zebra"}
    assert by_text[""]["parent"] is None and by_text[""]["depth_tokens"] == 0
    assert by_text["the "]["lock_ref"] == 1 and not by_text["the "]["is_evictable"]
    assert by_text["dog"]["lock_ref"] == 1 and by_text["dog"]["lru_rank"] is None
    assert by_text["cat"]["lru_rank"] == 0 and by_text["zebra"]["lru_rank"] == 1
    assert by_text["cat"]["is_evictable"] and by_text["cat"]["depth_tokens"] == 7
    assert by_text["cat"]["parent"] == by_text["the "]["id"]
    assert snap["cached_tokens"] == 15 and snap["protected_tokens"] == 7 and snap["evictable_tokens"] == 8
    assert snap["num_nodes"] == 5 and not snap["truncated"]
    assert snap["num_free_slots"] == cache.allocator.num_free
    # The rank predicts what evict does.
    cache.evict(1)
    assert cache.match_prefix(chars("the cat"), record_hit=False).prefix_len == 4
    cache.dec_lock_ref(locked)


def test_snapshot_truncates_to_nodes_nearest_root() -> None:
    cache = make_cache(2048)
    for i in range(30):
        finish_request(cache, f"{chr(65 + i)}xyz" + "q" * 50)
    snap = cache.snapshot(decode, max_nodes=10, excerpt_chars=5)
    assert snap["truncated"] and len(snap["nodes"]) == 10 and snap["num_nodes"] == 31
    assert snap["nodes"][0]["parent"] is None
    assert all(n["parent"] == snap["nodes"][0]["id"] for n in snap["nodes"][1:])
    assert all(n["text"].endswith("…") and len(n["text"]) == 6 for n in snap["nodes"][1:])
    assert cache.snapshot()["nodes"][1]["text"] == ""


def test_node_tokens_returns_the_full_root_path() -> None:
    cache = make_cache()
    finish_request(cache, "Once upon a time")
    finish_request(cache, "Once upon a midnight")
    node = cache.match_prefix(chars("Once upon a midnight")).last_node
    assert decode(cache.node_tokens(node.id)) == "Once upon a midnight"
    cache.evict(100)
    with pytest.raises(ValueError, match=f"no node with id {node.id}"):
        cache.node_tokens(node.id)


def test_check_integrity_detects_leaked_slot() -> None:
    cache = make_cache()
    finish_request(cache, "abc")
    cache.check_integrity()
    running = cache.allocator.alloc(2)
    cache.check_integrity(used=running)
    with pytest.raises(AssertionError, match="1 slot\\(s\\) leaked"):
        cache.check_integrity(used=running[:1])


def test_check_integrity_detects_slot_in_tree_and_used() -> None:
    cache = make_cache()
    slots = finish_request(cache, "abc")
    with pytest.raises(AssertionError, match="in the tree and in used"):
        cache.check_integrity(used=[slots[0]])


def test_check_integrity_detects_corrupted_counters_and_links() -> None:
    cache = make_cache()
    finish_request(cache, "abcdef")
    node = cache.match_prefix(chars("abcdef")).last_node
    node.lock_ref = 1  # bypassing inc_lock_ref breaks both the parent rule and the counters
    with pytest.raises(AssertionError, match="exceeds its parent|counter"):
        cache.check_integrity()
    node.lock_ref = 0
    node.value.append(node.value[0])
    with pytest.raises(AssertionError, match="len\\(key\\)=6 != len\\(value\\)=7"):
        cache.check_integrity()


def test_match_and_insert_of_long_sequences_are_linear() -> None:
    cache = make_cache(4096)
    ids = list(range(1000, 2000))
    slots = cache.allocator.alloc(1000)
    cache.insert(ids, slots)
    assert cache.match_prefix(ids).slots == slots
    other = ids[:999] + [7]
    m = cache.match_prefix(other)
    assert m.prefix_len == 999 and m.slots == slots[:999]
    cache.check_integrity(used=())


# ---------------------------------------------------------------------------- property test


@dataclass
class Running:
    tokens: list[int]
    node: TreeNode
    prefix_slots: list[int]
    own_slots: list[int]


tokens_st = st.lists(st.integers(0, 2), min_size=1, max_size=10)


class RadixCacheMachine(RuleBasedStateMachine):
    """Engine-like request lifecycles over a tiny vocabulary and a small pool.

    ``kv`` is a shadow of the pool: kv[slot] is the token sequence whose last token's KV a slot
    holds (K/V at position i depend on tokens[:i+1]). Written at allocation, it must agree with
    every matched prefix, so a slot freed while still referenced would be caught once reused.
    """

    def __init__(self) -> None:
        super().__init__()
        self.cache = RadixCache(SlotAllocator(40))
        self.kv: dict[int, tuple[int, ...]] = {}
        self.running: list[Running] = []

    def _check_match(self, tokens: list[int], slots: list[int]) -> None:
        for i, s in enumerate(slots):
            assert self.kv[s] == tuple(tokens[: i + 1])

    @rule(tokens=tokens_st, leave_last=st.booleans(), use_cache=st.booleans())
    def start_request(self, tokens: list[int], leave_last: bool, use_cache: bool) -> None:
        max_len = (len(tokens) - 1 if leave_last else None) if use_cache else 0
        m = self.cache.match_prefix(tokens, max_len=max_len)
        assert m.prefix_len == len(m.slots)
        self._check_match(tokens, m.slots)
        self.cache.inc_lock_ref(m.last_node)
        need = len(tokens) - m.prefix_len
        if not self.cache.allocator.can_alloc(need):
            self.cache.evict(need - self.cache.allocator.num_free)
        own = self.cache.allocator.alloc(need)
        if own is None:
            self.cache.dec_lock_ref(m.last_node)
            return
        for i, s in enumerate(own, start=m.prefix_len):
            self.kv[s] = tuple(tokens[: i + 1])
        self.running.append(Running(tokens, m.last_node, m.slots, own))

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def finish_request(self, data: st.DataObject) -> None:
        req = self.running.pop(data.draw(st.integers(0, len(self.running) - 1)))
        slots = req.prefix_slots + req.own_slots
        num_cached = self.cache.insert(req.tokens, slots)
        prefix_len = len(req.prefix_slots)
        assert num_cached >= prefix_len  # the locked prefix is still there
        self.cache.allocator.free(slots[prefix_len:num_cached])
        self.cache.dec_lock_ref(req.node)
        m = self.cache.match_prefix(req.tokens, record_hit=False)
        assert m.prefix_len == len(req.tokens)
        self._check_match(req.tokens, m.slots)

    @rule(tokens=tokens_st)
    def lookup(self, tokens: list[int]) -> None:
        m = self.cache.match_prefix(tokens)
        self._check_match(tokens, m.slots)

    @rule(num_tokens=st.integers(0, 45))
    def evict(self, num_tokens: int) -> None:
        evictable = self.cache.evictable_size()
        freed = self.cache.evict(num_tokens)
        assert freed <= evictable
        assert freed >= min(num_tokens, evictable)
        assert self.cache.evictable_size() == evictable - freed

    @rule()
    def flush(self) -> None:
        self.cache.flush()
        assert self.cache.evictable_size() == 0

    @invariant()
    def locked_paths_are_intact(self) -> None:
        for req in self.running:
            assert req.node is self.cache.root or req.node.parent is not None, "locked node was evicted"
            assert path_slots(req.node) == req.prefix_slots
            self._check_match(req.tokens, req.prefix_slots)

    @invariant()
    def integrity_holds(self) -> None:
        self.cache.check_integrity(used=[s for r in self.running for s in r.own_slots])
        assert self.cache.protected_size() + self.cache.evictable_size() == self.cache.total_size()

    def teardown(self) -> None:
        for req in self.running:
            self.cache.allocator.free(req.own_slots)
            self.cache.dec_lock_ref(req.node)
        self.running.clear()
        self.cache.flush()
        assert self.cache.total_size() == 0
        self.cache.check_integrity()


RadixCacheMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_radix_cache_state_machine = RadixCacheMachine.TestCase
