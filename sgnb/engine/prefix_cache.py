"""The prefix-cache interface the scheduler and the engine talk to.

A prefix cache maps token-id prefixes to the KV slots that hold them, so a new request skips computing
what an earlier one already computed. The engine picks one implementation at start:
`RadixCache` (RadixAttention, `radix_cache=True`) or `NoPrefixCache` (`radix_cache=False`).

Ownership contract: slots stored by `insert` belong to the cache, which frees them into its allocator
when it evicts them; `insert` never frees anything, the caller frees its own duplicates. A request locks
the cached prefix it uses (`inc_lock_ref` on its match's `last_node`) so eviction keeps it, and unlocks
it once (`dec_lock_ref`) when it leaves. Match results end at a node of a tree rooted at `root`
(`parent`/`children` links), which cache-aware scheduling policies walk.

Plain Python, no torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sgnb.engine.slot_allocator import SlotAllocator

if TYPE_CHECKING:
    from sgnb.engine.radix_cache import TreeNode


@dataclass(slots=True)
class MatchResult:
    slots: list[int]  # KV slots of the matched prefix, in position order
    last_node: TreeNode  # node whose root path is exactly the matched prefix (root if nothing matched)
    prefix_len: int  # == len(slots)


class PrefixCache(ABC):
    """Token-prefix -> KV-slot cache with lock references and eviction (see the module docstring).

    `stats` counts `queried_tokens`, `matched_tokens` (of recorded lookups) and `num_evicted_tokens`.
    """

    root: TreeNode

    def __init__(self, allocator: SlotAllocator) -> None:
        self.allocator = allocator
        self.stats: dict[str, int] = {
            "queried_tokens": 0,
            "matched_tokens": 0,
            "num_evicted_tokens": 0,
        }

    # ------------------------------------------------------------------ lookup / insert

    @abstractmethod
    def match_prefix(
        self, token_ids: Sequence[int], *, max_len: int | None = None, record_hit: bool = True
    ) -> MatchResult:
        """Longest cached prefix of ``token_ids`` (at most ``max_len`` tokens; ValueError if negative).

        With ``record_hit`` the lookup counts toward the hit rate; ranking lookups pass False and call
        ``record_hit`` once they use the match.
        """

    @abstractmethod
    def insert(self, token_ids: Sequence[int], slots: Sequence[int]) -> int:
        """Offers ``token_ids`` -> ``slots`` (one slot per token, else ValueError) to the cache.

        Returns how many leading tokens were already cached: the caller frees its own slots for that range
        where they differ from the cache's. Slots past it now belong to the cache if it stored them, which
        a following ``match_prefix`` of the same ids shows (its ``prefix_len``); the rest stay the caller's.
        """

    @abstractmethod
    def record_hit(self, node: TreeNode, num_queried: int) -> None:
        """Count a lookup of ``num_queried`` tokens whose cached prefix ends at ``node``."""

    def hit_rate(self) -> float:
        """Matched / queried tokens over every recorded lookup (0.0 before the first)."""
        queried = self.stats["queried_tokens"]
        return self.stats["matched_tokens"] / queried if queried else 0.0

    # ------------------------------------------------------------------ locks

    @abstractmethod
    def inc_lock_ref(self, node: TreeNode) -> None:
        """Protects the root path of ``node`` from eviction (one reference per request using it)."""

    @abstractmethod
    def dec_lock_ref(self, node: TreeNode) -> None:
        """Releases one reference taken by ``inc_lock_ref`` on the same node."""

    # ------------------------------------------------------------------ eviction and sizes

    @abstractmethod
    def evict(self, num_tokens: int) -> int:
        """Frees unlocked cached tokens (at least ``num_tokens`` if it can) into the allocator; returns how many."""

    @abstractmethod
    def flush(self) -> None:
        """Evicts everything unlocked."""

    @abstractmethod
    def evictable_size(self) -> int:
        """Cached tokens that no request locks (what ``evict`` can free)."""

    @abstractmethod
    def protected_size(self) -> int:
        """Cached tokens locked by requests."""

    def total_size(self) -> int:
        return self.evictable_size() + self.protected_size()

    # ------------------------------------------------------------------ inspection

    @abstractmethod
    def check_integrity(self, used: Iterable[int] = ()) -> None:
        """Asserts the cache's invariants and free + cached + ``used`` == all slots; raises AssertionError.

        ``used`` are the slots held outside the cache (running requests' own slots).
        """

    @abstractmethod
    def snapshot(
        self, decode: Callable[[list[int]], str] | None = None, max_nodes: int = 500, excerpt_chars: int = 40,
        node_fields: Callable[[list[int]], dict] | None = None,
    ) -> dict:
        """Plain JSON-able view for widgets: ``nodes`` (at most ``max_nodes``) and the cache's totals.

        ``node_fields(key)``: extra fields for a node's view, from the token ids of its own edge.
        """

    def _snapshot(self, nodes: list[dict], num_nodes: int) -> dict:
        """A snapshot of these node views (out of ``num_nodes``) with the cache's and the pool's totals."""
        return {
            "nodes": nodes,
            "num_nodes": num_nodes,
            "cached_tokens": self.total_size(),
            "evictable_tokens": self.evictable_size(),
            "protected_tokens": self.protected_size(),
            "num_free_slots": self.allocator.num_free,
            "num_slots": self.allocator.num_slots,
            "hit_rate": self.hit_rate(),
            "num_evicted_tokens": self.stats["num_evicted_tokens"],
            "truncated": len(nodes) < num_nodes,
        }

    @abstractmethod
    def node_tokens(self, node_id: int) -> list[int]:
        """Token ids of the whole root path down to node ``node_id`` (ValueError if it is not cached)."""

    # ------------------------------------------------------------------ lower tiers (the tiered cache)

    def tier_stats(self) -> dict | None:
        """``stats()["hicache"]`` of a cache with tiers below the pool; None for one without."""
        return None

    def tier_usage(self) -> dict | None:
        """``snapshot()["tiers"]``: each tier's usage, for a cache with tiers below the pool; else None."""
        return None

    def close(self) -> None:
        """Finishes background work (the tiered cache's pending disk writes); the engine calls it at shutdown."""
