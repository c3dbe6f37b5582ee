"""Cache-aware continuous batching: which requests run next, and who owns which KV slots.

Plain Python (no torch compute). Every step the engine asks `schedule()` for one batch:
an EXTEND batch (new requests after their cached prefix, prefill chunks, jump-forward
tokens) when there is work and room for it, otherwise a DECODE batch of every running
request. Slot ownership invariant, per admitted request:

    table[row, :tree_len]        slots owned by the prefix cache, locked through `last_node`
    table[row, tree_len:kv_len]  slots owned by the request itself

The scheduler owns its queues (waiting -> pending -> running, and back on retraction or jump-forward):
every move goes through one of its methods.
"""

from __future__ import annotations

from dataclasses import dataclass

from sgnb.engine.attention import ForwardMode
from sgnb.engine.errors import PoolExhausted
from sgnb.engine.kv_cache import ReqToTokenPool
from sgnb.engine.policy import first_come_first_served, get_policy
from sgnb.engine.prefix_cache import MatchResult, PrefixCache
from sgnb.engine.request import Req
from sgnb.engine.slot_allocator import SlotAllocator


@dataclass(slots=True)
class SchedulerConfig:
    schedule_policy: str = "lpm"
    max_running_requests: int = 64
    max_prefill_tokens: int = 2048        # tokens computed in one extend step (longer prompts are chunked)
    decode_reserve_tokens: int = 128      # per-request headroom kept free for future decode tokens
    max_skips: int = 8                    # a request passed over this many times goes first (aging)
    in_batch_prefix_threshold: int = 32   # defer a request whose uncached start duplicates one already in the batch
    policy_queue_limit: int = 256         # above this many waiting requests, fall back to FCFS ordering
    mix_decode: bool = True               # running requests decode inside extend steps instead of waiting

    def __post_init__(self) -> None:
        get_policy(self.schedule_policy)        # ValueError naming the known ones
        for name in ("max_running_requests", "max_prefill_tokens", "max_skips"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(slots=True)
class ScheduleBatch:
    mode: ForwardMode
    reqs: list[Req]
    extend_lens: list[int]     # tokens computed this step, per request (1 in decode)


class Scheduler:
    def __init__(self, cfg: SchedulerConfig, allocator: SlotAllocator, cache: PrefixCache,
                 req_pool: ReqToTokenPool):
        self.cfg = cfg
        self.allocator = allocator
        self.cache = cache
        self.req_pool = req_pool
        self.policy = get_policy(cfg.schedule_policy)
        self.waiting: list[Req] = []       # not admitted: no row, no locks, no slots
        self.pending: list[Req] = []       # admitted, with tokens still to extend (prefill chunks, jump-forward)
        self.running: list[Req] = []       # admitted, decoding one token per step
        self.num_retractions = 0

    # ------------------------------------------------------------------ queues

    def add(self, req: Req) -> None:
        self.waiting.append(req)

    @property
    def admitted(self) -> list[Req]:
        return self.pending + self.running

    def has_work(self) -> bool:
        return bool(self.waiting or self.pending or self.running)

    def start_decoding(self, req: Req) -> None:
        """A pending request whose extends left only its last token to compute decodes from now on; its
        computed tokens go to the cache. A running request (it decoded inside the extend step) stays."""
        if req in self.pending:
            self.pending.remove(req)
            self.running.append(req)
            self.commit_to_tree(req)

    def move_to_pending(self, req: Req) -> None:
        """An admitted request got several tokens at once (jump-forward): extend them next."""
        if req in self.running:
            self.running.remove(req)
        if req not in self.pending:
            self.pending.append(req)

    def remove(self, req: Req) -> None:
        """Take a request out of every queue, giving back its row, locks and own slots."""
        for queue in (self.waiting, self.pending, self.running):
            if req in queue:
                queue.remove(req)
        if req.row is not None:
            self._release(req)

    # ------------------------------------------------------------------ scheduling

    def schedule(self) -> ScheduleBatch | None:
        batch = self._schedule_extend()
        if batch is not None:
            return batch
        if self.running:
            return self._schedule_decode()
        return None

    def _schedule_extend(self) -> ScheduleBatch | None:
        budget = self.cfg.max_prefill_tokens
        reqs: list[Req] = []
        lens: list[int] = []
        for req in list(self.pending):
            if budget <= 0:
                break
            n = _chunk_len(req, req.kv_len, budget)
            if n <= 0 or not self._grow(req, n):
                break
            reqs.append(req)
            lens.append(n)
            budget -= n
        if self._admit_waiting(budget, reqs, lens):
            for req in self.waiting:
                req.num_skips += 1
        if not reqs and self.pending and not self.running:
            req = self.pending[0]
            raise PoolExhausted(req, f"the KV pool ({self.allocator.num_slots} slots) cannot hold the next "
                                     f"{len(req.fill_ids) - req.kv_len} tokens of request {req.rid}")
        if not reqs:
            return None
        if self.cfg.mix_decode and self.running:
            # running requests ride along as one-token extends, so a long prefill does not stall them
            slots = self._alloc(len(self.running))
            if slots is not None:
                for req, slot in zip(self.running, slots):
                    self.req_pool.write(req.row, req.kv_len, [slot])
                reqs += self.running
                lens += [1] * len(self.running)
        return ScheduleBatch(ForwardMode.EXTEND, reqs, lens)

    def _admit_waiting(self, budget: int, reqs: list[Req], lens: list[int]) -> int:
        num_admitted = 0
        for req in self._ordered_waiting():
            if budget <= 0 or len(self.admitted) >= self.cfg.max_running_requests:
                break
            match = self._match(req)          # fresh: earlier admissions this round may have evicted
            if self._duplicates_batch_prefix(req, match.prefix_len, reqs):
                continue
            extend_len = len(req.fill_ids) - match.prefix_len
            n = _chunk_len(req, match.prefix_len, budget)
            if n < extend_len and reqs and n < self.cfg.in_batch_prefix_threshold:
                break                                   # too little budget left to start a chunk
            if n <= 0 or not self._admit(req, match, n):
                break
            self.waiting.remove(req)
            self.pending.append(req)
            reqs.append(req)
            lens.append(n)
            budget -= n
            num_admitted += 1
        return num_admitted

    def _ordered_waiting(self) -> list[Req]:
        """Waiting requests in policy order (FCFS when the queue is too long to rank cheaply)."""
        policy = self.policy if len(self.waiting) <= self.cfg.policy_queue_limit else first_come_first_served
        queue = policy(list(self.waiting), self._match, self.cache)
        # aging: requests passed over too often go first, oldest first
        starved = sorted((r for r in queue if r.num_skips >= self.cfg.max_skips), key=lambda r: r.arrival)
        if starved:
            queue = starved + [r for r in queue if r.num_skips < self.cfg.max_skips]
        return queue

    def _match(self, req: Req) -> MatchResult:
        # the last token is always computed: it gives the logits (and so is a draft with the token before it)
        max_len = len(req.fill_ids) - req.num_tail_rows
        if req.wants_input_logprobs:
            max_len = min(max_len, max(req.logprob_start_len - 1, 0))
        return self.cache.match_prefix(req.cache_key, max_len=max_len, record_hit=False)

    def _duplicates_batch_prefix(self, req: Req, prefix_len: int, batch: list[Req]) -> bool:
        """True if the start of req's uncached part is being computed by another request in this batch.

        Admitting it next round lets it reuse that KV from the tree instead of computing it twice.
        """
        end = prefix_len + self.cfg.in_batch_prefix_threshold
        if end >= len(req.fill_ids):
            return False
        head = req.cache_key[:end]
        return any(other.cache_key[:end] == head for other in batch)

    def _admit(self, req: Req, match: MatchResult, extend_len: int) -> bool:
        """Lock req's cached prefix, give it a row and slots for `extend_len` tokens; False if no room."""
        self.cache.inc_lock_ref(match.last_node)
        # decode headroom is a soft reservation: alone in the engine, a request runs anyway (its decode
        # raises PoolExhausted if it really outgrows the pool), otherwise it would wait forever
        headroom = sum(self._reserve(r) for r in self.admitted) + self._reserve(req) if self.admitted else 0
        row = self.req_pool.alloc() if self._available() >= extend_len + headroom else None
        slots = self._alloc(extend_len) if row is not None else None
        if slots is None:
            if row is not None:
                self.req_pool.free(row)
            self.cache.dec_lock_ref(match.last_node)
            return False
        req.row, req.last_node = row, match.last_node
        req.tree_len = req.kv_len = match.prefix_len
        if req.num_retractions == 0:
            req.cached_tokens = match.prefix_len
            self.cache.record_hit(match.last_node, len(req.fill_ids))
        self.req_pool.write(row, 0, match.slots)
        self.req_pool.write(row, req.kv_len, slots)
        return True

    def _grow(self, req: Req, n: int) -> bool:
        """Slots for the next `n` tokens of an admitted request."""
        slots = self._alloc(n)
        if slots is None:
            return False
        self.req_pool.write(req.row, req.kv_len, slots)
        return True

    def _schedule_decode(self) -> ScheduleBatch:
        while True:
            slots = self._alloc(len(self.running))
            if slots is not None:
                break
            if len(self.running) == 1:
                req = self.running[0]
                raise PoolExhausted(req, f"the KV pool ({self.allocator.num_slots} slots) cannot hold one more "
                                         f"token of request {req.rid}")
            self.retract(self._retraction_victim())
        for req, slot in zip(self.running, slots):
            self.req_pool.write(req.row, req.kv_len, [slot])
        return ScheduleBatch(ForwardMode.DECODE, list(self.running), [1] * len(self.running))

    def _retraction_victim(self) -> Req:
        # the request with the least progress loses the least work
        return min(self.running, key=lambda r: (len(r.output_ids), -len(r.input_ids)))

    def retract(self, req: Req) -> None:
        """Send a running request back to the queue; its KV goes to the tree, its output is kept."""
        self.running.remove(req)
        self._release(req)
        req.num_retractions += 1
        self.num_retractions += 1
        self.waiting.insert(0, req)

    # ------------------------------------------------------------------ KV ownership

    def commit_to_tree(self, req: Req) -> None:
        """Offer req's computed tokens to the cache and lock what it holds (those own slots become its).

        Slots that duplicate what the cache already holds are freed and req's row points at the cache's.
        """
        if req.kv_len == req.tree_len:
            return
        ids = req.cache_key[:req.kv_len]
        own = self.req_pool.read(req.row, req.tree_len, req.kv_len)
        slots = self.req_pool.read(req.row, 0, req.tree_len) + own
        existing = self.cache.insert(ids, slots)
        match = self.cache.match_prefix(ids, record_hit=False)
        if existing > req.tree_len:
            self.allocator.free(own[:existing - req.tree_len])
            self.req_pool.write(req.row, req.tree_len, match.slots[req.tree_len:existing])
        self.cache.inc_lock_ref(match.last_node)
        self.cache.dec_lock_ref(req.last_node)
        req.last_node, req.tree_len = match.last_node, match.prefix_len

    def drop_draft(self, req: Req) -> None:
        """Forget req's draft (the model declined it, or req ends before confirming all of it); whatever K/V
        was computed for it goes back to the pool, never into the tree."""
        keep = len(req.fill_ids) - len(req.draft_ids)
        req.draft_ids = []
        if req.kv_len > keep:
            self.truncate_kv(req, keep)

    def truncate_kv(self, req: Req, kv_len: int) -> None:
        """Drop req's own K/V after its first `kv_len` tokens."""
        if not req.tree_len <= kv_len <= req.kv_len:
            raise ValueError(f"cannot truncate request {req.rid} to {kv_len} tokens: it holds {req.kv_len}, "
                             f"{req.tree_len} of them in the tree")
        self.allocator.free(self.req_pool.read(req.row, kv_len, req.kv_len))
        req.kv_len = kv_len

    def finish(self, req: Req) -> None:
        """A finished request: its KV stays in the tree for later requests (or is freed without a cache)."""
        for queue in (self.pending, self.running):
            if req in queue:
                queue.remove(req)
        self._release(req)

    def _release(self, req: Req) -> None:
        """Give back req's row, its lock and its own slots; its computed tokens stay in the cache."""
        self.drop_draft(req)
        self.commit_to_tree(req)
        own = self.req_pool.read(req.row, req.tree_len, req.kv_len)
        if own:
            self.allocator.free(own)
        if req.last_node is not None:
            self.cache.dec_lock_ref(req.last_node)
        self.req_pool.free(req.row)
        req.row, req.last_node, req.kv_len, req.tree_len = None, None, 0, 0

    def used_slots(self) -> list[int]:
        """Slots owned by admitted requests themselves (not by the tree): for integrity checks."""
        used: list[int] = []
        for req in self.admitted:
            used += self.req_pool.read(req.row, req.tree_len, req.kv_len)
        return used

    def pending_slots(self, batch: ScheduleBatch) -> list[int]:
        """Slots handed out for a batch that has not run (yet): owned by its requests beyond kv_len."""
        out: list[int] = []
        for req, n in zip(batch.reqs, batch.extend_lens):
            out += self.req_pool.read(req.row, req.kv_len, req.kv_len + n)
        return out

    # ------------------------------------------------------------------ capacity

    def _available(self) -> int:
        return self.allocator.num_free + self.cache.evictable_size()

    def _reserve(self, req: Req) -> int:
        if req.is_score:
            return 0
        return min(req.max_output_len - len(req.output_ids), self.cfg.decode_reserve_tokens)

    def _alloc(self, n: int) -> list[int] | None:
        if self.allocator.num_free < n:
            self.cache.evict(n - self.allocator.num_free)
        return self.allocator.alloc(n)


def _chunk_len(req: Req, start: int, budget: int) -> int:
    """Tokens of req to extend from `start` within `budget`; a chunk that stops short of the end leaves the
    last one all the rows it must give (`Req.num_tail_rows`). May be <= 0: nothing fits now."""
    remaining = len(req.fill_ids) - start
    return remaining if remaining <= budget else min(budget, remaining - req.num_tail_rows)

