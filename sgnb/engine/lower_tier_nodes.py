"""Records of evicted radix nodes whose KV pages sit in a lower tier: what the cache view shows below the pool.

The lower tiers hold pages, not nodes. To show where an evicted prefix went, the tiered cache records each
node it moves out of the pool (its id, its parent's id, its edge's tokens, the keys of its pages) and the
record goes once none of those pages is held any more, once one of them is loaded back into the pool (the
prefix is a device node again), or once it is the oldest of ``max_records``. Display only: matching never
reads these records. Plain Python.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class LowerTierNode:
    id: int              # the evicted tree node's id (ids are never reused)
    parent_id: int       # its parent's id when it was evicted: a tree node, or another record
    key: list[int]       # token ids of its edge
    page_keys: list[bytes]


class LowerTierNodes:
    """Evicted-node records by id, oldest first; each page key belongs to at most one record."""

    def __init__(self, max_records: int = 4096) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        self.max_records = max_records
        self._records: OrderedDict[int, LowerTierNode] = OrderedDict()
        self._by_page: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._records)

    def get(self, node_id: int) -> LowerTierNode | None:
        return self._records.get(node_id)

    def add(self, record: LowerTierNode) -> None:
        """Records an evicted node; an older record holding one of its pages goes (that content moved on)."""
        self.remove_pages(record.page_keys)
        self._records[record.id] = record
        for key in record.page_keys:
            self._by_page[key] = record.id
        if len(self._records) > self.max_records:
            self._remove(next(iter(self._records)))

    def remove_pages(self, page_keys: Iterable[bytes]) -> None:
        """Drops the records that hold any of these pages (loaded back, or superseded)."""
        for key in page_keys:
            node_id = self._by_page.get(key)
            if node_id is not None:
                self._remove(node_id)

    def clear(self) -> None:
        self._records.clear()
        self._by_page.clear()

    def live(self, tier_of: Callable[[bytes], str | None]) -> list[tuple[LowerTierNode, str]]:
        """(record, tier) newest first (a parent is evicted after its children, so it comes first); the
        tier is that of its first held page (``tier_of``: None for a page no tier holds). Records with
        no page held any more are dropped."""
        out: list[tuple[LowerTierNode, str]] = []
        for record in reversed(list(self._records.values())):
            tier = next(filter(None, map(tier_of, record.page_keys)), None)
            if tier is None:
                self._remove(record.id)
            else:
                out.append((record, tier))
        return out

    def check_integrity(self) -> None:
        """Asserts that the page index and the records agree."""
        owned = {key: r.id for r in self._records.values() for key in r.page_keys}
        if owned != self._by_page:
            raise AssertionError("lower-tier node records: the page index disagrees with the records")
        if len(self._records) > self.max_records:
            raise AssertionError(f"lower-tier node records: {len(self._records)} over the cap {self.max_records}")

    def _remove(self, node_id: int) -> None:
        record = self._records.pop(node_id)
        for key in record.page_keys:
            if self._by_page.get(key) == node_id:
                del self._by_page[key]
