"""What the cache tree shows, as plain data, from ``Engine.snapshot()``.

``cache_data(engine.snapshot())`` ->::

    {"nodes": [{"id", "parent", "num_tokens", "text", "hit_count", "lock_ref", "is_evictable",
                "last_access", "lru_rank", "depth_tokens", "tier", "num_image_tokens",
                "num_children"}],   # BFS order, root first; num_image_tokens: the node's image rows
     "num_nodes", "num_shown", "truncated", "num_locked_nodes",
     "cached_tokens", "evictable_tokens", "protected_tokens", "num_free_slots", "num_slots",
     "hit_rate", "pool_usage", "num_evicted_tokens", "num_running", "num_waiting",
     "tiers", "hicache"}

``lru_rank`` is the node's place in the eviction order (0 = evicted first; only unlocked leaves have one).
``tier`` is where the node's KV sits: ``"device"`` (the KV pool), ``"host"`` (host memory) or ``"disk"``; a
snapshot without tiers has every node in the pool. With the tiered cache on, ``tiers`` is each tier's usage
(``{"device": {"used", "capacity"}`` in tokens, ``"host"`` / ``"disk"``: ``{"used_bytes", "capacity_bytes"}}``,
with a ``"usage"`` fraction added to each) and ``hicache`` the tier counters of ``stats()["hicache"]``
(``hits_by_tier``, ``pages_written``, ``pages_loaded``, ``pages_dropped``, ``write_policy``); both are None
when it is off.
Plain Python; the static HTML renderer, the rich renderer and the widget all read this.
"""

from __future__ import annotations

_NODE_KEYS = ("id", "parent", "num_tokens", "text", "hit_count", "lock_ref", "is_evictable", "last_access",
              "lru_rank", "depth_tokens")
TIER_LABELS = {"device": "pool", "host": "host memory", "disk": "disk"}  # top to bottom: where KV sits
TIERS = tuple(TIER_LABELS)
_HICACHE_KEYS = ("hits_by_tier", "pages_written", "pages_loaded", "pages_dropped", "write_policy")


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
        tier = node.get("tier", "device")
        if tier not in TIERS:
            raise ValueError(f"cache node {node['id']!r} has tier {tier!r}, expected one of {TIERS}")
        nodes.append({**{k: node[k] for k in _NODE_KEYS}, "tier": tier,
                      "num_image_tokens": int(node.get("num_image_tokens", 0)),
                      "num_children": num_children.get(node["id"], 0)})
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
        "tiers": _tiers(snapshot.get("tiers")),
        "hicache": {k: stats["hicache"][k] for k in _HICACHE_KEYS} if stats.get("hicache") else None,
    }


def _tiers(tiers: dict | None) -> dict | None:
    """Each tier's usage with its fraction full added (``usage``); None without tiers."""
    if not tiers:
        return None
    out = {}
    for name in TIERS:
        tier = dict(tiers[name])
        used, capacity = ("used", "capacity") if name == "device" else ("used_bytes", "capacity_bytes")
        tier["usage"] = tier[used] / tier[capacity] if tier[capacity] else 0.0
        out[name] = tier
    return out


def change_key(snapshot: dict) -> tuple:
    """What must differ for the view to change (stats like uptime and throughput tick on every call)."""
    cache = snapshot.get("cache", snapshot)
    nodes = tuple((n["id"], n["parent"], n["num_tokens"], n["hit_count"], n["lock_ref"], n["lru_rank"],
                   n.get("tier")) for n in cache.get("nodes", []))
    tiers = snapshot.get("tiers") or {}
    usage = tuple(sorted((name, tuple(sorted(tier.items()))) for name, tier in tiers.items()))
    return (nodes, cache.get("num_free_slots"), cache.get("hit_rate"), cache.get("num_evicted_tokens"),
            tuple(snapshot.get("running") or ()), tuple(snapshot.get("waiting") or ()), usage)
