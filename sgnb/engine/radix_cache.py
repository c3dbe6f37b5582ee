"""RadixAttention prefix cache (SGLang paper, arXiv 2312.07104).

A radix tree whose edges are runs of token ids and whose node values are the KV slot ids of those
tokens. A request looks up its longest cached prefix (``match_prefix``), locks that path while it
runs (``inc_lock_ref``), and when it finishes puts its whole sequence back (``insert``), freeing the
slots that duplicate ones the tree already holds. Under memory pressure, unlocked leaves are evicted
in LRU order (``evict``); a parent that becomes an unlocked leaf joins the candidates. It implements
`sgnb.engine.prefix_cache.PrefixCache`.

Invariants (checked by ``check_integrity``):
- every non-root node has ``len(key) == len(value) > 0`` and is stored in its parent's
  ``children`` under ``key[0]``;
- ``lock_ref >= 0`` and a node's ``lock_ref`` is >= each child's (locks cover whole root paths),
  so an unlocked node has only unlocked descendants;
- ``evictable_size`` counts tokens of nodes with ``lock_ref == 0``, ``protected_size`` the others;
- no slot appears twice; free slots + tree slots + slots held by running requests == all slots.

Plain Python, no torch.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sgnb.engine.prefix_cache import MatchResult, PrefixCache
from sgnb.engine.slot_allocator import SlotAllocator

_CHUNK = 32  # edge comparison granularity: slices of this many tokens, then a per-token scan


@dataclass(eq=False)
class TreeNode:
    """One edge of the radix tree plus the node it leads to. Identity-hashed."""

    id: int
    parent: TreeNode | None
    children: dict[int, TreeNode] = field(default_factory=dict)  # keyed by the child's key[0]
    key: list[int] = field(default_factory=list)  # token ids on the edge
    value: list[int] = field(default_factory=list)  # KV slot ids, same length as key
    lock_ref: int = 0  # number of running requests whose path goes through this node
    last_access: int = 0  # tick of the cache's logical clock (one per match/insert) of the last one through here
    hit_count: int = 0  # how many matches went through (or ended at) this node

    def __repr__(self) -> str:
        return (
            f"TreeNode(id={self.id}, num_tokens={len(self.key)}, num_children={len(self.children)}, "
            f"lock_ref={self.lock_ref}, last_access={self.last_access}, hit_count={self.hit_count})"
        )


def _common_prefix_len(edge: list[int], key: list[int], start: int) -> int:
    """Length of the common prefix of ``edge`` and ``key[start:]``, compared in slices."""
    n = min(len(edge), len(key) - start)
    i = 0
    while i < n:
        j = min(i + _CHUNK, n)
        if edge[i:j] != key[start + i : start + j]:
            while edge[i] == key[start + i]:
                i += 1
            return i
        i = j
    return n


def node_excerpt(key: list[int], decode: Callable[[list[int]], str] | None, excerpt_chars: int) -> str:
    """The start of an edge's text for a snapshot (at most ``excerpt_chars``, "…" when cut); "" without ``decode``."""
    if decode is None or not key:
        return ""
    text = decode(key[: excerpt_chars + 8])
    if len(text) > excerpt_chars or len(key) > excerpt_chars + 8:
        text = text[:excerpt_chars] + "…"
    return text


class RadixCache(PrefixCache):
    """Token-prefix -> KV-slot radix tree with lock references and LRU leaf eviction.

    The tree owns the slots stored in it: ``evict`` frees them into ``allocator``. ``insert`` never
    frees anything: it reports how many leading tokens were already cached, and the caller frees its
    own duplicate slots for that range.
    """

    def __init__(self, allocator: SlotAllocator) -> None:
        super().__init__(allocator)
        self._ids = itertools.count()
        self._clock = 0
        self.root = TreeNode(id=next(self._ids), parent=None)
        self._nodes: dict[int, TreeNode] = {self.root.id: self.root}
        # Non-root leaves with lock_ref == 0: the eviction candidates.
        self._evictable_leaves: set[TreeNode] = set()
        self._evictable_size = 0
        self._protected_size = 0

    # ------------------------------------------------------------------ lookup / insert

    def match_prefix(
        self, token_ids: Sequence[int], *, max_len: int | None = None, record_hit: bool = True
    ) -> MatchResult:
        """Longest cached prefix of ``token_ids`` (at most ``max_len`` tokens).

        When the match ends inside an edge the node is split, so ``last_node``'s root path is exactly
        the matched prefix (lock it with ``inc_lock_ref`` to keep those slots alive).
        """
        if max_len is not None and max_len < 0:
            raise ValueError(f"max_len must be >= 0, got {max_len}")
        key = list(token_ids) if max_len is None else list(token_ids[:max_len])
        if record_hit:
            self.stats["queried_tokens"] += len(key)
        if not key:
            return MatchResult(slots=[], last_node=self.root, prefix_len=0)
        self._clock += 1
        now = self._clock
        node = self.root
        node.last_access = now
        slots: list[int] = []
        pos = 0
        while pos < len(key):
            child = node.children.get(key[pos])
            if child is None:
                break
            edge_len = len(child.key)
            if key[pos : pos + edge_len] == child.key:
                matched = edge_len
            else:
                matched = _common_prefix_len(child.key, key, pos)
                child = self._split(child, matched)
            child.last_access = now
            if record_hit:
                child.hit_count += 1
            slots.extend(child.value)
            pos += matched
            node = child
            if matched < edge_len:
                break
        if record_hit:
            self.stats["matched_tokens"] += pos
        return MatchResult(slots=slots, last_node=node, prefix_len=pos)

    def insert(self, token_ids: Sequence[int], slots: Sequence[int]) -> int:
        """Stores ``token_ids`` -> ``slots``; returns how many leading tokens were already cached.

        Where a prefix is already in the tree the tree keeps *its* slots; the caller must free its
        own ``slots[:returned]`` that differ from the tree's (typically ``slots[prefix_len:returned]``,
        where ``prefix_len`` is what its own ``match_prefix`` returned). Never frees anything itself.
        """
        if len(token_ids) != len(slots):
            raise ValueError(
                f"insert needs one slot per token: got {len(token_ids)} tokens and {len(slots)} slots"
            )
        if not token_ids:
            return 0
        key = list(token_ids)
        self._clock += 1
        now = self._clock
        node = self.root
        node.last_access = now
        pos = 0
        while pos < len(key):
            child = node.children.get(key[pos])
            if child is None:
                self._add_leaf(node, key[pos:], list(slots[pos:]), now)
                return pos
            edge_len = len(child.key)
            if key[pos : pos + edge_len] == child.key:
                matched = edge_len
            else:
                matched = _common_prefix_len(child.key, key, pos)
                if pos + matched == len(key):
                    # The key ends inside this edge: it is fully cached, no need to split.
                    child.last_access = now
                    return len(key)
                child = self._split(child, matched)
            child.last_access = now
            pos += matched
            node = child
        return pos

    # ------------------------------------------------------------------ locks

    def inc_lock_ref(self, node: TreeNode) -> None:
        """Protects the root path of ``node`` from eviction (one reference per running request)."""
        self._check_attached(node)
        while node is not self.root:
            if node.lock_ref == 0:
                n = len(node.key)
                self._evictable_size -= n
                self._protected_size += n
                self._evictable_leaves.discard(node)
            node.lock_ref += 1
            node = node.parent  # type: ignore[assignment]

    def dec_lock_ref(self, node: TreeNode) -> None:
        """Releases one reference taken by ``inc_lock_ref`` on the same node."""
        self._check_attached(node)
        if node is not self.root and node.lock_ref <= 0:
            raise ValueError(f"dec_lock_ref on node {node.id} whose lock_ref is already 0")
        # lock_ref(parent) >= lock_ref(child), so every ancestor is >= 1 too: no partial update.
        while node is not self.root:
            node.lock_ref -= 1
            if node.lock_ref == 0:
                n = len(node.key)
                self._evictable_size += n
                self._protected_size -= n
                if not node.children:
                    self._evictable_leaves.add(node)
            node = node.parent  # type: ignore[assignment]

    # ------------------------------------------------------------------ eviction

    def evict(self, num_tokens: int) -> int:
        """Frees LRU unlocked leaves until ``num_tokens`` are freed or nothing is evictable.

        Whole leaves are freed, so the result may exceed ``num_tokens``. Returns tokens freed.
        """
        if num_tokens <= 0 or not self._evictable_leaves:
            return 0
        heap = [(n.last_access, n.id, n) for n in self._evictable_leaves]
        heapq.heapify(heap)
        num_freed = 0
        while num_freed < num_tokens and heap:
            _, _, node = heapq.heappop(heap)
            self._on_evict(node)
            self.allocator.free(node.value)
            num_freed += len(node.value)
            parent = self._remove_leaf(node)
            if parent is not self.root and parent.lock_ref == 0 and not parent.children:
                self._evictable_leaves.add(parent)
                heapq.heappush(heap, (parent.last_access, parent.id, parent))
        self.stats["num_evicted_tokens"] += num_freed
        return num_freed

    def flush(self) -> None:
        """Evicts every unlocked node; locked paths stay."""
        self.evict(self._evictable_size)

    def evictable_size(self) -> int:
        return self._evictable_size

    def protected_size(self) -> int:
        return self._protected_size

    def record_hit(self, node: TreeNode, num_queried: int) -> None:
        """Count a lookup of ``num_queried`` tokens whose cached prefix ends at ``node``.

        For callers that matched with ``record_hit=False`` (to rank requests) and only now use the match.
        """
        self.stats["queried_tokens"] += num_queried
        depth = 0
        while node is not self.root and node is not None:
            node.hit_count += 1
            depth += len(node.key)
            node = node.parent
        self.stats["matched_tokens"] += depth

    # ------------------------------------------------------------------ inspection

    def check_integrity(self, used: Iterable[int] = ()) -> None:
        """Asserts the tree invariants and, with the allocator, free + tree + ``used`` == all slots.

        ``used`` are slots held outside the tree (running requests' own slots). Raises AssertionError.
        """
        root = self.root
        if root.key or root.value or root.parent is not None:
            raise AssertionError("root must have an empty key/value and no parent")
        tree_slots: set[int] = set()
        evictable = protected = 0
        leaves: set[TreeNode] = set()
        num_nodes = 1
        stack = [root]
        while stack:
            node = stack.pop()
            for first, child in node.children.items():
                num_nodes += 1
                cid = child.id
                if child.parent is not node:
                    raise AssertionError(f"node {cid}: parent link does not point to node {node.id}")
                if not child.key:
                    raise AssertionError(f"node {cid}: empty non-root node")
                if len(child.key) != len(child.value):
                    raise AssertionError(
                        f"node {cid}: len(key)={len(child.key)} != len(value)={len(child.value)}"
                    )
                if child.key[0] != first:
                    raise AssertionError(f"node {cid}: stored under token {first} but key starts with {child.key[0]}")
                if child.lock_ref < 0:
                    raise AssertionError(f"node {cid}: negative lock_ref {child.lock_ref}")
                if node is not root and node.lock_ref < child.lock_ref:
                    raise AssertionError(
                        f"node {cid}: lock_ref {child.lock_ref} exceeds its parent {node.id}'s {node.lock_ref}"
                    )
                if self._nodes.get(cid) is not child:
                    raise AssertionError(f"node {cid}: missing from the id index")
                before = len(tree_slots)
                tree_slots.update(child.value)
                if len(tree_slots) != before + len(child.value):
                    raise AssertionError(f"node {cid}: holds a slot that appears twice in the tree")
                if child.lock_ref == 0:
                    evictable += len(child.key)
                    if not child.children:
                        leaves.add(child)
                else:
                    protected += len(child.key)
                stack.append(child)
        if num_nodes != len(self._nodes):
            raise AssertionError(f"id index holds {len(self._nodes)} nodes but the tree has {num_nodes}")
        if evictable != self._evictable_size:
            raise AssertionError(f"evictable_size counter {self._evictable_size} != recomputed {evictable}")
        if protected != self._protected_size:
            raise AssertionError(f"protected_size counter {self._protected_size} != recomputed {protected}")
        if leaves != self._evictable_leaves:
            raise AssertionError(
                f"eviction candidates {sorted(n.id for n in self._evictable_leaves)} != "
                f"unlocked leaves {sorted(n.id for n in leaves)}"
            )
        used = list(used)
        overlap = tree_slots.intersection(used)
        if overlap:
            raise AssertionError(f"slot(s) {sorted(overlap)[:10]} are double-counted: in the tree and in used")
        self.allocator.check_integrity(itertools.chain(tree_slots, used))

    def snapshot(
        self,
        decode: Callable[[list[int]], str] | None = None,
        max_nodes: int = 500,
        excerpt_chars: int = 40,
        node_fields: Callable[[list[int]], dict] | None = None,
    ) -> dict:
        """Plain JSON-able view of the tree for widgets (BFS from the root, at most ``max_nodes``)."""
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
        ranked = sorted(self._evictable_leaves, key=lambda n: (n.last_access, n.id))
        lru_rank = {n.id: rank for rank, n in enumerate(ranked)}
        nodes: list[dict] = []
        queue: deque[tuple[TreeNode, int]] = deque([(self.root, 0)])
        while queue and len(nodes) < max_nodes:
            node, depth = queue.popleft()
            depth += len(node.key)
            text = node_excerpt(node.key, decode, excerpt_chars)
            nodes.append(
                {
                    "id": node.id,
                    "parent": None if node.parent is None else node.parent.id,
                    "num_tokens": len(node.key),
                    "text": text,
                    "hit_count": node.hit_count,
                    "lock_ref": node.lock_ref,
                    "is_evictable": node is not self.root and node.lock_ref == 0,
                    "last_access": node.last_access,
                    "lru_rank": lru_rank.get(node.id),
                    "depth_tokens": depth,
                }
            )
            if node_fields is not None:
                nodes[-1].update(node_fields(node.key))
            queue.extend((c, depth) for c in node.children.values())
        return self._snapshot(nodes, len(self._nodes))

    def node_tokens(self, node_id: int) -> list[int]:
        """Token ids of the whole root path down to node ``node_id``."""
        node = self._nodes.get(node_id)
        if node is None:
            raise ValueError(f"no node with id {node_id} in the tree (evicted or never existed)")
        parts: list[list[int]] = []
        while node is not None:
            parts.append(node.key)
            node = node.parent
        return [t for part in reversed(parts) for t in part]

    def __len__(self) -> int:
        """Number of nodes, root included."""
        return len(self._nodes)

    # ------------------------------------------------------------------ internals

    def _on_evict(self, node: TreeNode) -> None:
        """Called for each leaf ``evict`` takes, still attached, right before its slots are freed."""

    def _split(self, node: TreeNode, at: int) -> TreeNode:
        """Splits ``node``'s edge after ``at`` tokens; returns the new upper node.

        ``node`` keeps its identity (and id) as the lower part, so locks and MatchResults pointing at
        it stay valid; both parts keep lock_ref, hit_count and last_access.
        """
        assert 0 < at < len(node.key)
        parent = node.parent
        assert parent is not None
        upper = TreeNode(
            id=next(self._ids),
            parent=parent,
            key=node.key[:at],
            value=node.value[:at],
            lock_ref=node.lock_ref,
            last_access=node.last_access,
            hit_count=node.hit_count,
        )
        node.key = node.key[at:]
        node.value = node.value[at:]
        node.parent = upper
        upper.children[node.key[0]] = node
        parent.children[upper.key[0]] = upper
        self._nodes[upper.id] = upper
        return upper

    def _add_leaf(self, parent: TreeNode, key: list[int], value: list[int], now: int) -> TreeNode:
        leaf = TreeNode(id=next(self._ids), parent=parent, key=key, value=value, last_access=now)
        parent.children[key[0]] = leaf
        self._nodes[leaf.id] = leaf
        self._evictable_leaves.discard(parent)  # no-op for the root and for locked parents
        self._evictable_leaves.add(leaf)
        self._evictable_size += len(key)
        return leaf

    def _remove_leaf(self, node: TreeNode) -> TreeNode:
        parent = node.parent
        assert parent is not None and not node.children and node.lock_ref == 0
        del parent.children[node.key[0]]
        del self._nodes[node.id]
        self._evictable_leaves.discard(node)
        self._evictable_size -= len(node.key)
        node.parent = None  # marks it detached
        return parent

    def _check_attached(self, node: TreeNode) -> None:
        if node is not self.root and (node.parent is None or self._nodes.get(node.id) is not node):
            raise ValueError(f"node {node.id} is not in this tree (evicted, or from another cache)")
