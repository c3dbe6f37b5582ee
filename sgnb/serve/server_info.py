"""Read-only routes about the server's state: `GET /get_server_info`, `/cache_snapshot`, `/cache_node_text`.

- `GET /get_server_info`: the load: `model`, `model_path`, `num_running`, `num_waiting`, `num_slots`,
  `num_free_slots`, `num_used_slots`, `pool_usage`, `cache_hit_rate`, `stats` (the engine's `stats()`, with
  `stats["hicache"]` when the tiered cache is on), and the tiered cache's options under SGLang's server-argument
  names (`enable_hierarchical_cache`, `hicache_size`, `hicache_storage_dir`, `hicache_storage_size`), and
  `quantization`, `cpu_kernels` (what kernels and packed weights are in use: `stats["kernels"]`).
- `GET /cache_snapshot?max_nodes=N` (default 200, 1..2000): `engine.snapshot(max_nodes)` as JSON (the radix
  tree BFS from the root with node excerpts, the queues' request ids, the stats): what a remote `CacheTree`
  draws. Throttled: asked again within `SNAPSHOT_MAX_AGE` seconds (for the same N) it answers the snapshot
  it already took, so many watching notebooks cost the engine one snapshot per interval.
- `GET /cache_node_text?node_id=N`: `{"id", "text", "num_tokens"}`, the decoded root path down to node N
  (what a click on a node shows); 404 when the node is gone (evicted since the snapshot).

None of them is public: with an API key, they need it like every route but /health.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter

from sgnb.serve.engine_bridge import EngineBridge
from sgnb.serve.errors import APIError

DEFAULT_MAX_NODES = 200
MAX_MAX_NODES = 2000
SNAPSHOT_MAX_AGE = 0.2  # seconds a snapshot is served again instead of taking a new one
# Engine options reported as they are, under SGLang's server-argument names.
REPORTED_OPTIONS = ("enable_hierarchical_cache", "hicache_size", "hicache_storage_dir", "hicache_storage_size",
                    "quantization", "cpu_kernels")


def server_info(engine: Any, model_info: dict[str, Any]) -> dict[str, Any]:
    """What `GET /get_server_info` answers (blocking: takes the engine's lock once, in `stats()`)."""
    stats = engine.stats()
    return {
        "model": model_info["served_model_name"],
        "model_path": model_info["model_path"],
        "num_running": stats["num_running"],
        "num_waiting": stats["num_waiting"],
        "num_slots": stats["num_slots"],
        "num_free_slots": stats["num_free_slots"],
        "num_used_slots": stats["num_slots"] - stats["num_free_slots"],
        "pool_usage": stats["pool_usage"],
        "cache_hit_rate": stats["cache_hit_rate"],
        "stats": stats,
        **{name: getattr(engine.config, name) for name in REPORTED_OPTIONS},
    }


def node_text(engine: Any, node_id: int) -> dict[str, Any] | None:
    """The decoded root path down to radix node ``node_id``; None when the tree has no such node."""
    try:
        return engine.node_text(node_id)
    except ValueError:
        return None


def parse_int_query(name: str, value: str | None, default: int | None, low: int, high: int) -> int:
    """A query parameter as an int in [low, high] (``default`` when absent); APIError 400 naming it otherwise."""
    if value is None:
        if default is None:
            raise APIError(400, f"query parameter '{name}' is required", param=name)
        return default
    try:
        number = int(value)
    except ValueError:
        raise APIError(400, f"'{name}' must be an integer, got {value!r}", param=name) from None
    if not low <= number <= high:
        raise APIError(400, f"'{name}' must be in [{low}, {high}], got {number}", param=name)
    return number


class SnapshotThrottle:
    """Takes `engine.snapshot(max_nodes)` at most once per `max_age` seconds per `max_nodes`.

    Concurrent askers wait on one lock, so a burst of polls costs one snapshot. Entries older than
    `max_age` are dropped on every call: the cache holds only what is still fresh.
    """

    def __init__(self, bridge: EngineBridge, max_age: float = SNAPSHOT_MAX_AGE) -> None:
        self._bridge = bridge
        self.max_age = max_age
        self.num_snapshots = 0
        self._fresh: dict[int, tuple[float, dict[str, Any]]] = {}  # max_nodes -> (taken at, snapshot)
        self._lock = asyncio.Lock()

    async def get(self, max_nodes: int) -> dict[str, Any]:
        async with self._lock:
            now = time.monotonic()
            self._fresh = {n: entry for n, entry in self._fresh.items() if now - entry[0] < self.max_age}
            entry = self._fresh.get(max_nodes)
            if entry is None:
                snapshot = await self._bridge.call(self._bridge.engine.snapshot, max_nodes=max_nodes)
                self.num_snapshots += 1
                entry = self._fresh[max_nodes] = (time.monotonic(), snapshot)
            return entry[1]


def build_router(bridge: EngineBridge, model_info: dict[str, Any]) -> APIRouter:
    router = APIRouter()
    throttle = SnapshotThrottle(bridge)

    @router.get("/get_server_info")
    async def get_server_info() -> dict[str, Any]:
        return await bridge.call(server_info, bridge.engine, model_info)

    @router.get("/cache_snapshot")
    async def cache_snapshot(max_nodes: str | None = None) -> dict[str, Any]:
        count = parse_int_query("max_nodes", max_nodes, DEFAULT_MAX_NODES, 1, MAX_MAX_NODES)
        return await throttle.get(count)

    @router.get("/cache_node_text")
    async def cache_node_text(node_id: str | None = None) -> dict[str, Any]:
        node = parse_int_query("node_id", node_id, None, 0, 2**63 - 1)
        answer = await bridge.call(node_text, bridge.engine, node)
        if answer is None:
            raise APIError(404, f"no node with id {node} in the radix cache (evicted or never existed)",
                           param="node_id")
        return answer

    return router
