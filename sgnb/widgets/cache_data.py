"""What the cache tree shows, as plain data, from ``Engine.snapshot()``.

``cache_data(engine.snapshot())`` ->::

    {"nodes": [{"id", "parent", "num_tokens", "text", "hit_count", "lock_ref", "is_evictable",
                "last_access", "lru_rank", "depth_tokens", "num_children"}],   # BFS order, root first
     "num_nodes", "num_shown", "truncated", "num_locked_nodes",
     "cached_tokens", "evictable_tokens", "protected_tokens", "num_free_slots", "num_slots",
     "hit_rate", "pool_usage", "num_evicted_tokens", "num_running", "num_waiting"}

``lru_rank`` is the node's place in the eviction order (0 = evicted first; only unlocked leaves have one).
Plain Python; the static HTML renderer, the rich renderer and the widget all read this.
"""

from __future__ import annotations

_NODE_KEYS = ("id", "parent", "num_tokens", "text", "hit_count", "lock_ref", "is_evictable", "last_access",
              "lru_rank", "depth_tokens")


def cache_data(snapshot: dict) -> dict:
    """The view model of an ``Engine.snapshot()`` (or of its ``"cache"`` part alone)."""
    if not isinstance(snapshot, dict):
        raise ValueError(f"cache_data needs an Engine.snapshot() dict, got {type(snapshot).__name__}")
    cache = snapshot.get("cache", snapshot)
    stats = snapshot.get("stats") or {}
    if "nodes" not in cache:
        raise ValueError("cache_data needs an Engine.snapshot() dict with a 'cache' tree (no 'nodes' found)")
    nodes = []
    num_children: dict[int, int] = {}
    for node in cache["nodes"]:
        missing = [k for k in _NODE_KEYS if k not in node]
        if missing:
            raise ValueError(f"cache node {node.get('id')!r} lacks {missing}")
        if node["parent"] is not None:
            num_children[node["parent"]] = num_children.get(node["parent"], 0) + 1
    for node in cache["nodes"]:
        nodes.append({**{k: node[k] for k in _NODE_KEYS}, "num_children": num_children.get(node["id"], 0)})
    num_slots = int(cache.get("num_slots") or 0)
    num_free = int(cache.get("num_free_slots") or 0)
    pool_usage = stats.get("pool_usage")
    if pool_usage is None:
        pool_usage = 1 - num_free / num_slots if num_slots else 0.0
    return {
        "nodes": nodes,
        "num_nodes": int(cache.get("num_nodes", len(nodes))),
        "num_shown": len(nodes),
        "truncated": bool(cache.get("truncated")),
        "num_locked_nodes": sum(1 for n in nodes if n["lock_ref"] > 0),
        "cached_tokens": int(cache.get("cached_tokens") or 0),
        "evictable_tokens": int(cache.get("evictable_tokens") or 0),
        "protected_tokens": int(cache.get("protected_tokens") or 0),
        "num_free_slots": num_free,
        "num_slots": num_slots,
        "hit_rate": float(cache.get("hit_rate") or 0.0),
        "pool_usage": float(pool_usage),
        "num_evicted_tokens": int(cache.get("num_evicted_tokens") or 0),
        "num_running": len(snapshot.get("running") or []),
        "num_waiting": len(snapshot.get("waiting") or []),
    }


def change_key(snapshot: dict) -> tuple:
    """What must differ for the view to change (stats like uptime and throughput tick on every call)."""
    cache = snapshot.get("cache", snapshot)
    nodes = tuple((n["id"], n["parent"], n["num_tokens"], n["hit_count"], n["lock_ref"], n["lru_rank"])
                  for n in cache.get("nodes", []))
    return (nodes, cache.get("num_free_slots"), cache.get("hit_rate"), cache.get("num_evicted_tokens"),
            tuple(snapshot.get("running") or ()), tuple(snapshot.get("waiting") or ()))
