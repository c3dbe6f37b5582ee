"""Records of evicted nodes whose pages sit in a lower tier (what the cache view shows below the pool)."""

from __future__ import annotations

from sgnb.engine.lower_tier_nodes import LowerTierNode, LowerTierNodes


def test_live_lists_parents_first_and_prunes_records_without_pages() -> None:
    nodes = LowerTierNodes()
    nodes.add(LowerTierNode(5, 2, [1, 2], [b"p5"]))    # a leaf is evicted before its parent
    nodes.add(LowerTierNode(2, 0, [3], [b"p2"]))
    nodes.add(LowerTierNode(7, 0, [4], [b"p7"]))
    held = {b"p5": "host", b"p2": "disk"}
    live = nodes.live(held.get)
    assert [(r.id, tier) for r, tier in live] == [(2, "disk"), (5, "host")]
    assert nodes.get(7) is None and len(nodes) == 2
    nodes.check_integrity()


def test_loaded_pages_drop_their_records_and_newer_records_supersede() -> None:
    nodes = LowerTierNodes()
    nodes.add(LowerTierNode(1, 0, [1], [b"a", b"b"]))
    nodes.add(LowerTierNode(2, 0, [2], [b"c"]))
    nodes.remove_pages([b"b"])
    assert nodes.get(1) is None and nodes.get(2) is not None
    nodes.add(LowerTierNode(3, 0, [2], [b"c"]))         # the same content evicted again
    assert nodes.get(2) is None and nodes.get(3) is not None
    nodes.check_integrity()


def test_keeps_at_most_max_records() -> None:
    nodes = LowerTierNodes(max_records=2)
    for i in range(4):
        nodes.add(LowerTierNode(i, 0, [i], [bytes([i])]))
    assert [nodes.get(i) is not None for i in range(4)] == [False, False, True, True]
    nodes.check_integrity()
