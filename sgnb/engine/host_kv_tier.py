"""The host-memory tier of the tiered cache: KV pages copied out of the pool, bounded in bytes, LRU.

Pages are keyed by their content address (`sgnb.engine.page_keys`); a value is whatever the page I/O
made of the pool's rows (a CPU tensor), stored with its size in bytes. Plain Python, no torch.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class HostKVTier:
    """page key -> (page, nbytes), least recently used first; ``used_bytes <= capacity_bytes`` always."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self.used_bytes = 0
        self._pages: OrderedDict[bytes, tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pages)

    def __contains__(self, key: bytes) -> bool:
        return key in self._pages

    def get(self, key: bytes) -> Any | None:
        """The page stored under ``key`` (now the most recently used), or None."""
        entry = self._pages.get(key)
        if entry is None:
            return None
        self._pages.move_to_end(key)
        return entry[0]

    def put(self, key: bytes, page: Any, nbytes: int) -> list[bytes]:
        """Stores a page, dropping least recently used ones to make room; returns the dropped keys.

        A page larger than the whole tier is not stored (its own key is returned as dropped).
        """
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        if key in self._pages:
            self._pages.move_to_end(key)
            return []
        if nbytes > self.capacity_bytes:
            return [key]
        dropped: list[bytes] = []
        while self.used_bytes + nbytes > self.capacity_bytes:
            old, (_, old_bytes) = self._pages.popitem(last=False)
            self.used_bytes -= old_bytes
            dropped.append(old)
        self._pages[key] = (page, nbytes)
        self.used_bytes += nbytes
        return dropped

    def clear(self) -> None:
        self._pages.clear()
        self.used_bytes = 0

    def check_integrity(self) -> None:
        """Asserts that the byte count matches the pages and stays within the capacity."""
        total = sum(nbytes for _, nbytes in self._pages.values())
        if total != self.used_bytes:
            raise AssertionError(f"host tier: used_bytes {self.used_bytes} != sum of its pages {total}")
        if total > self.capacity_bytes:
            raise AssertionError(f"host tier: {total} bytes stored over its capacity {self.capacity_bytes}")
