"""The engine's running totals and the stats dict built from them (`Engine.stats()`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sgnb.engine.prefix_cache import PrefixCache
from sgnb.engine.scheduler import Scheduler
from sgnb.engine.slot_allocator import SlotAllocator


@dataclass(slots=True)
class Counters:
    started: float = field(default_factory=time.monotonic)
    num_finished: int = 0
    num_prefill_tokens: int = 0       # prompt tokens computed (cache misses)
    num_generated_tokens: int = 0
    num_forced_tokens: int = 0        # appended by jump-forward, not sampled
    num_forward_passes: int = 0
    num_image_encodes: int = 0        # vision encoder runs, one per image
    num_image_cache_hits: int = 0     # image embeddings reused from the image embedding cache


def engine_stats(counters: Counters, cache: PrefixCache, allocator: SlotAllocator, scheduler: Scheduler) -> dict:
    """Cache, pool, queue and throughput figures, all plain numbers."""
    c = counters
    elapsed = max(time.monotonic() - c.started, 1e-9)
    num_usable = allocator.num_usable
    tiers = cache.tier_stats()
    return {
        "cache_hit_rate": cache.hit_rate(),
        "queried_tokens": cache.stats["queried_tokens"],
        "cached_tokens": cache.stats["matched_tokens"],
        "num_evicted_tokens": cache.stats["num_evicted_tokens"],
        "tree_tokens": cache.total_size(),
        "pool_usage": 1 - allocator.num_free / num_usable,
        "num_slots": num_usable,
        "num_free_slots": allocator.num_free,
        "num_running": len(scheduler.admitted),
        "num_waiting": len(scheduler.waiting),
        "num_retractions": scheduler.num_retractions,
        "num_finished": c.num_finished,
        "num_prefill_tokens": c.num_prefill_tokens,
        "num_generated_tokens": c.num_generated_tokens,
        "num_forced_tokens": c.num_forced_tokens,
        "num_forward_passes": c.num_forward_passes,
        "num_image_encodes": c.num_image_encodes,
        "num_image_cache_hits": c.num_image_cache_hits,
        "generation_throughput": c.num_generated_tokens / elapsed,
        "uptime_seconds": elapsed,
    } | ({} if tiers is None else {"hicache": tiers})
