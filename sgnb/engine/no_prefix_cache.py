"""The prefix cache that caches nothing (`Engine(radix_cache=False)`, `sgnb serve --disable-radix-cache`).

Every match is empty and ends at a lone root; `insert` keeps nothing, so requests own all their slots
and free them when they leave. Lookups still count toward the hit rate (always 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from sgnb.engine.prefix_cache import MatchResult, PrefixCache
from sgnb.engine.radix_cache import TreeNode
from sgnb.engine.slot_allocator import SlotAllocator


class NoPrefixCache(PrefixCache):
    """A `PrefixCache` that never stores a prefix: nothing to lock, evict or flush."""

    def __init__(self, allocator: SlotAllocator) -> None:
        super().__init__(allocator)
        self.root = TreeNode(id=0, parent=None)

    def match_prefix(
        self, token_ids: Sequence[int], *, max_len: int | None = None, record_hit: bool = True
    ) -> MatchResult:
        if max_len is not None and max_len < 0:
            raise ValueError(f"max_len must be >= 0, got {max_len}")
        if record_hit:
            self.stats["queried_tokens"] += len(token_ids) if max_len is None else min(max_len, len(token_ids))
        return MatchResult(slots=[], last_node=self.root, prefix_len=0)

    def insert(self, token_ids: Sequence[int], slots: Sequence[int]) -> int:
        if len(token_ids) != len(slots):
            raise ValueError(
                f"insert needs one slot per token: got {len(token_ids)} tokens and {len(slots)} slots"
            )
        return 0

    def record_hit(self, node: TreeNode, num_queried: int) -> None:
        self.stats["queried_tokens"] += num_queried

    def inc_lock_ref(self, node: TreeNode) -> None:
        self._check_root(node)

    def dec_lock_ref(self, node: TreeNode) -> None:
        self._check_root(node)

    def evict(self, num_tokens: int) -> int:
        return 0

    def flush(self) -> None:
        pass

    def evictable_size(self) -> int:
        return 0

    def protected_size(self) -> int:
        return 0

    def check_integrity(self, used: Iterable[int] = ()) -> None:
        if self.root.children or self.root.key:
            raise AssertionError("the no-cache root must stay empty")
        self.allocator.check_integrity(used)

    def snapshot(
        self, decode: Callable[[list[int]], str] | None = None, max_nodes: int = 500, excerpt_chars: int = 40,
        node_fields: Callable[[list[int]], dict] | None = None,
    ) -> dict:
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
        root = {"id": self.root.id, "parent": None, "num_tokens": 0, "text": "", "hit_count": 0, "lock_ref": 0,
                "is_evictable": False, "last_access": 0, "lru_rank": None, "depth_tokens": 0}
        return self._snapshot([root], 1)

    def node_tokens(self, node_id: int) -> list[int]:
        if node_id != self.root.id:
            raise ValueError(f"no node with id {node_id} in the tree (evicted or never existed)")
        return []

    def _check_root(self, node: TreeNode) -> None:
        if node is not self.root:
            raise ValueError(f"node {node.id} is not in this cache (it only has its root)")
