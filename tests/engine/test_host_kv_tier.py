"""The host-memory tier: an LRU of pages bounded in bytes."""

from __future__ import annotations

import pytest

from sgnb.engine.host_kv_tier import HostKVTier


def test_drops_least_recently_used_pages_to_fit() -> None:
    tier = HostKVTier(capacity_bytes=300)
    assert tier.put(b"a", "A", 100) == [] and tier.put(b"b", "B", 100) == [] and tier.put(b"c", "C", 100) == []
    assert tier.get(b"a") == "A"                     # a is now the most recent
    assert tier.put(b"d", "D", 150) == [b"b", b"c"]
    assert b"a" in tier and b"d" in tier and len(tier) == 2
    assert tier.used_bytes == 250
    tier.check_integrity()


def test_a_page_larger_than_the_tier_is_not_stored() -> None:
    tier = HostKVTier(capacity_bytes=100)
    tier.put(b"a", "A", 60)
    assert tier.put(b"big", "X", 101) == [b"big"]
    assert b"big" not in tier and tier.get(b"a") == "A" and tier.used_bytes == 60


def test_putting_a_stored_key_keeps_one_copy() -> None:
    tier = HostKVTier(capacity_bytes=200)
    tier.put(b"a", "A", 100)
    tier.put(b"b", "B", 100)
    assert tier.put(b"a", "A2", 100) == []           # refreshed, not stored twice
    assert tier.used_bytes == 200 and tier.put(b"c", "C", 100) == [b"b"]


def test_clear_and_integrity() -> None:
    tier = HostKVTier(capacity_bytes=100)
    tier.put(b"a", "A", 40)
    tier.clear()
    assert len(tier) == 0 and tier.used_bytes == 0 and tier.get(b"a") is None
    tier.put(b"a", "A", 40)
    tier.used_bytes += 1                             # a broken counter is caught
    with pytest.raises(AssertionError, match="used_bytes"):
        tier.check_integrity()


def test_rejects_negative_sizes() -> None:
    with pytest.raises(ValueError, match="capacity_bytes"):
        HostKVTier(-1)
    with pytest.raises(ValueError, match="nbytes"):
        HostKVTier(10).put(b"a", "A", -1)
