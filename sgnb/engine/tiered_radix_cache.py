"""The tiered radix cache (`Engine(enable_hierarchical_cache=True)`): RadixAttention over the memory hierarchy.

Tier 0 is the KV pool, holding the radix tree (`RadixCache`, unchanged). Below it lie pages of
``PAGE_SIZE`` tokens keyed by the hash of their whole prefix (`sgnb.engine.page_keys`): a host-memory
tier (`HostKVTier`, bounded in bytes, LRU) and, with ``hicache_storage_dir``, a disk tier
(`DiskKVTier`, bounded in bytes, LRU, shared by processes and restarts).

- Eviction: a leaf the pool evicts has its whole pages copied to the host tier before its slots are freed
  (a page that starts in its parent takes the parent's rows too; a tail of less than a page is dropped).
- Matching: past the part of a prompt the tree holds, successive page keys of the prompt are looked up in
  the host tier, then on disk; the pages found are copied into fresh pool slots (evicting LRU leaves
  first if needed, never the matched path; as many pages as fit) and inserted into the tree, so the
  match, and the scheduler, see the longer prefix.
- Write policy: host memory is write-back (KV leaves the pool only when evicted: nothing is copied for
  KV that is never evicted, and eviction pays a memory copy). The disk tier is write-through: each whole
  page is copied out when it enters the tree and written by a background thread, so a prefix survives a
  restart even if it was never evicted, at the price of disk writes for pages never reused.
- `flush` empties the pool's tree and the host tier; the disk tier stays (it is shared and persistent).

Plain Python: the torch copies go through a `KVPageIO`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sgnb.engine.host_kv_tier import HostKVTier
from sgnb.engine.lower_tier_nodes import LowerTierNode, LowerTierNodes
from sgnb.engine.page_keys import PAGE_SIZE, page_keys
from sgnb.engine.prefix_cache import MatchResult
from sgnb.engine.radix_cache import RadixCache, TreeNode, node_excerpt
from sgnb.engine.slot_allocator import SlotAllocator

if TYPE_CHECKING:
    from sgnb.engine.disk_kv_tier import DiskKVTier
    from sgnb.engine.kv_page_io import KVPageIO


class TieredRadixCache(RadixCache):
    """A `RadixCache` whose evicted KV goes to host memory (and disk) and comes back on a match."""

    def __init__(self, allocator: SlotAllocator, page_io: KVPageIO, namespace: bytes, host_capacity_bytes: int,
                 disk: DiskKVTier | None = None) -> None:
        super().__init__(allocator)
        self.page_io = page_io
        self.namespace = namespace
        self.host = HostKVTier(host_capacity_bytes)
        self.disk = disk
        self.lower_nodes = LowerTierNodes()
        self.hits_by_tier = {"host": 0, "disk": 0}    # tokens loaded back from each lower tier
        self.num_pages_written = 0                    # pages copied into the host tier
        self.num_pages_loaded = 0
        self.num_pages_dropped = 0                    # pages the host tier dropped that no disk tier holds
        self._is_flushing = False

    # ------------------------------------------------------------------ lookup / insert

    def match_prefix(
        self, token_ids: Sequence[int], *, max_len: int | None = None, record_hit: bool = True
    ) -> MatchResult:
        """Longest prefix held in any tier; what the lower tiers held is in the pool (and tree) afterwards."""
        match = super().match_prefix(token_ids, max_len=max_len, record_hit=False)
        limit = len(token_ids) if max_len is None else min(max_len, len(token_ids))
        if (match.prefix_len // PAGE_SIZE + 1) * PAGE_SIZE <= limit and self._load(token_ids, match, limit):
            match = super().match_prefix(token_ids, max_len=max_len, record_hit=False)
        if record_hit:
            self.record_hit(match.last_node, limit)
        return match

    def insert(self, token_ids: Sequence[int], slots: Sequence[int]) -> int:
        """`RadixCache.insert`; with a disk tier, also queues the whole pages it adds for writing."""
        existing = super().insert(token_ids, slots)
        disk = self.disk
        num_pages = len(token_ids) // PAGE_SIZE
        if disk is None or not disk.is_writable or existing >= num_pages * PAGE_SIZE:
            return existing
        keys = list(page_keys(self.namespace, token_ids))
        new = [k for k in range(existing // PAGE_SIZE, num_pages) if not disk.has(keys[k])]
        # views of one copy: they live only until the writer thread has written them
        pages = self.page_io.gather([s for k in new for s in slots[k * PAGE_SIZE:(k + 1) * PAGE_SIZE]],
                                    own_storage=False)
        for k, page in zip(new, pages):
            disk.submit(keys[k], token_ids[k * PAGE_SIZE:(k + 1) * PAGE_SIZE], page)
        return existing

    def _load(self, token_ids: Sequence[int], match: MatchResult, limit: int) -> bool:
        """Copies the pages after ``match`` that a lower tier holds into the pool and the tree; False if none."""
        first = match.prefix_len // PAGE_SIZE
        keys: list[bytes] = []
        found: list[tuple[Any, str]] = []
        for k, key in enumerate(page_keys(self.namespace, token_ids[:limit])):
            if k < first:
                continue
            page, tier = self.host.get(key), "host"
            if page is None and self.disk is not None:
                page, tier = self.disk.read(key, token_ids[k * PAGE_SIZE:(k + 1) * PAGE_SIZE]), "disk"
            if page is None:
                break
            keys.append(key)
            found.append((page, tier))
        if not found:
            return False
        skip = match.prefix_len - first * PAGE_SIZE       # rows of the first page the tree already holds
        self.inc_lock_ref(match.last_node)                 # eviction to make room must keep the matched path
        try:
            needed = len(found) * PAGE_SIZE - skip
            if self.allocator.num_free < needed:
                self.evict(needed - self.allocator.num_free)
            fits = (self.allocator.num_free + skip) // PAGE_SIZE
            found = found[:fits]
            if not found:
                return False
            slots = self.allocator.alloc(len(found) * PAGE_SIZE - skip)
            assert slots is not None                        # checked just above: num_free suffices
            try:
                self.page_io.scatter(slots, [page for page, _ in found], skip)
            except Exception:
                self.allocator.free(slots)                  # a failed copy leaks no slot
                raise
            end = match.prefix_len + len(slots)
            self.insert(token_ids[:end], match.slots + slots)
        finally:
            self.dec_lock_ref(match.last_node)
        for i, (_, tier) in enumerate(found):
            self.hits_by_tier[tier] += PAGE_SIZE - (skip if i == 0 else 0)
        self.num_pages_loaded += len(found)
        self.lower_nodes.remove_pages(keys[:len(found)])
        return True

    # ------------------------------------------------------------------ eviction

    def _on_evict(self, node: TreeNode) -> None:
        """Copies the whole pages that end inside ``node`` to the host tier (the pool's copy goes next)."""
        if self._is_flushing:
            return
        tokens, slots = self._root_path(node)
        first, end = (len(tokens) - len(node.key)) // PAGE_SIZE, len(tokens) // PAGE_SIZE
        if first >= end:
            return
        keys = list(page_keys(self.namespace, tokens))
        new = [k for k in range(first, end) if keys[k] not in self.host]
        pages = self.page_io.gather([s for k in new for s in slots[k * PAGE_SIZE:(k + 1) * PAGE_SIZE]])
        for k, page in zip(new, pages):
            for dropped in self.host.put(keys[k], page, self.page_io.page_nbytes):
                if self.disk is None or not self.disk.has(dropped):
                    self.num_pages_dropped += 1
            self.num_pages_written += keys[k] in self.host
        assert node.parent is not None
        self.lower_nodes.add(LowerTierNode(node.id, node.parent.id, node.key, keys[first:end]))

    def flush(self) -> None:
        """Evicts every unlocked node without keeping its KV and empties the host tier; the disk tier stays."""
        self._is_flushing = True
        try:
            super().flush()
        finally:
            self._is_flushing = False
        self.host.clear()
        self.lower_nodes.clear()

    def close(self) -> None:
        if self.disk is not None:
            self.disk.close(timeout=60)

    # ------------------------------------------------------------------ inspection

    def tier_of(self, key: bytes) -> str | None:
        """The highest lower tier holding page ``key``: "host", "disk" or None."""
        if key in self.host:
            return "host"
        if self.disk is not None and self.disk.has(key):
            return "disk"
        return None

    def tier_stats(self) -> dict:
        """``hits_by_tier``: matched tokens by where they came from (host, disk: loaded back; device: the rest);
        ``pages_written``: pages copied to host memory plus page files written; ``pages_loaded``: pages copied
        back into the pool; ``pages_dropped``: pages the last tier holding them let go (host memory without a
        disk tier, disk LRU); each tier's bytes; ``write_policy``: "write_through" with a disk tier (pages go
        to disk as they enter the tree), else "write_back" (KV leaves the pool only when evicted)."""
        disk = self.disk
        host_hits, disk_hits = self.hits_by_tier["host"], self.hits_by_tier["disk"]
        return {
            "hits_by_tier": {"device": max(self.stats["matched_tokens"] - host_hits - disk_hits, 0),
                             "host": host_hits, "disk": disk_hits},
            "pages_written": self.num_pages_written + (disk.num_written if disk else 0),
            "pages_loaded": self.num_pages_loaded,
            "pages_dropped": self.num_pages_dropped + (disk.num_dropped if disk else 0),
            "host_used_bytes": self.host.used_bytes,
            "host_capacity_bytes": self.host.capacity_bytes,
            "disk_used_bytes": disk.used_bytes if disk else 0,
            "disk_capacity_bytes": disk.capacity_bytes if disk else 0,
            "write_policy": "write_through" if disk else "write_back",
        }

    def tier_usage(self) -> dict:
        disk = self.disk
        return {
            "device": {"used": self.total_size(), "capacity": self.allocator.num_usable},
            "host": {"used_bytes": self.host.used_bytes, "capacity_bytes": self.host.capacity_bytes},
            "disk": {"used_bytes": disk.used_bytes if disk else 0,
                     "capacity_bytes": disk.capacity_bytes if disk else 0},
        }

    def check_integrity(self, used: Iterable[int] = ()) -> None:
        """The radix tree's and the pool's invariants, and each lower tier's bookkeeping."""
        super().check_integrity(used)
        self.host.check_integrity()
        if self.disk is not None:
            self.disk.check_integrity()
        self.lower_nodes.check_integrity()

    def snapshot(
        self, decode: Callable[[list[int]], str] | None = None, max_nodes: int = 500, excerpt_chars: int = 40,
        node_fields: Callable[[list[int]], dict] | None = None,
    ) -> dict:
        """`RadixCache.snapshot` with each node's ``tier``: the tree's nodes are "device"; evicted nodes whose
        pages a lower tier holds follow as "host" or "disk" nodes under their parents."""
        snap = super().snapshot(decode, max_nodes, excerpt_chars, node_fields)
        nodes = snap["nodes"]
        depth = {}
        for view in nodes:
            view["tier"] = "device"
            depth[view["id"]] = view["depth_tokens"]
        live = self.lower_nodes.live(self.tier_of)
        for record, tier in live:
            if len(nodes) >= max_nodes:
                break
            if record.parent_id not in depth:
                continue                                    # its parent is not shown (or gone): neither is it
            depth[record.id] = depth[record.parent_id] + len(record.key)
            view = {"id": record.id, "parent": record.parent_id, "num_tokens": len(record.key),
                    "text": node_excerpt(record.key, decode, excerpt_chars), "hit_count": 0, "lock_ref": 0,
                    "is_evictable": False, "last_access": 0, "lru_rank": None,
                    "depth_tokens": depth[record.id], "tier": tier}
            if node_fields is not None:
                view.update(node_fields(record.key))
            nodes.append(view)
        snap["num_nodes"] += len(live)
        snap["truncated"] = len(nodes) < snap["num_nodes"]
        return snap

    def node_tokens(self, node_id: int) -> list[int]:
        """Token ids of the root path down to node ``node_id``, a tree node or an evicted one's record."""
        record = self.lower_nodes.get(node_id)
        if record is None:
            return super().node_tokens(node_id)
        return self.node_tokens(record.parent_id) + record.key

    # ------------------------------------------------------------------ internals

    def _root_path(self, node: TreeNode) -> tuple[list[int], list[int]]:
        """Token ids and slots of the whole root path down to ``node``."""
        keys: list[list[int]] = []
        values: list[list[int]] = []
        walk: TreeNode | None = node
        while walk is not None:
            keys.append(walk.key)
            values.append(walk.value)
            walk = walk.parent
        return [t for k in reversed(keys) for t in k], [s for v in reversed(values) for s in v]
