"""A model-free engine loop around a real Scheduler, prefix cache, SlotAllocator and ReqToTokenPool.

`Sim` plays the engine's part after each forward pass (advance kv_len, commit prefill chunks, append one
token per finished extend/decode, finish at max_new_tokens, start decoding) as `postprocess.process_batch`
does, and checks slot integrity after every step.
"""

from __future__ import annotations

from sgnb.engine.attention import ForwardMode
from sgnb.engine.kv_cache import ReqToTokenPool
from sgnb.engine.no_prefix_cache import NoPrefixCache
from sgnb.engine.prefix_cache import PrefixCache
from sgnb.engine.radix_cache import RadixCache
from sgnb.engine.request import Req
from sgnb.engine.sampling_params import SamplingParams
from sgnb.engine.scheduler import ScheduleBatch, Scheduler, SchedulerConfig
from sgnb.engine.slot_allocator import SlotAllocator


class Sim:
    def __init__(self, num_slots: int = 2048, radix_cache: bool = True, **cfg):
        self.allocator = SlotAllocator(num_slots)
        self.tree: PrefixCache = RadixCache(self.allocator) if radix_cache else NoPrefixCache(self.allocator)
        self.cfg = SchedulerConfig(**cfg)
        self.req_pool = ReqToTokenPool(self.cfg.max_running_requests + 1, 512, "cpu")
        self.sched = Scheduler(self.cfg, self.allocator, self.tree, self.req_pool)
        self.finished: list[Req] = []

    def cache(self, ids: list[int]) -> None:
        """Leave `ids` in the tree, as a finished earlier request would."""
        slots = self.allocator.alloc(len(ids))
        num_cached = self.tree.insert(ids, slots)
        self.allocator.free(slots[:num_cached])

    def add(self, rid: str, ids: list[int], max_new_tokens: int = 4) -> Req:
        req = Req(rid=rid, input_ids=list(ids), params=SamplingParams(max_new_tokens=max_new_tokens))
        self.sched.add(req)
        return req

    def step(self) -> ScheduleBatch | None:
        """One engine iteration: schedule, 'run', postprocess. Returns the batch that ran."""
        batch = self.sched.schedule()
        if batch is None:
            return None
        self.check(batch)
        for req, n in zip(batch.reqs, batch.extend_lens):
            req.kv_len += n
            if req.kv_len < len(req.fill_ids):          # a prefill chunk: more prompt to compute
                self.sched.commit_to_tree(req)
                continue
            req.output_ids.append(next_token(req))
            if len(req.output_ids) >= req.params.max_new_tokens:
                self.sched.finish(req)
                self.finished.append(req)
        if batch.mode is ForwardMode.EXTEND:
            for req in batch.reqs:
                if req not in self.finished and req.kv_len == len(req.fill_ids) - 1:
                    self.sched.start_decoding(req)
        self.check()
        return batch

    def run_to_end(self, max_steps: int = 10_000) -> list[ScheduleBatch]:
        batches = []
        while self.sched.has_work():
            batch = self.step()
            assert batch is not None, "the scheduler has work but scheduled nothing (it would spin forever)"
            batches.append(batch)
            assert len(batches) < max_steps
        return batches

    def check(self, batch: ScheduleBatch | None = None) -> None:
        """free + tree + requests' own slots (+ those handed out for a batch not yet run) == all slots."""
        used = self.sched.used_slots()
        if batch is not None:
            used += self.sched.pending_slots(batch)
        self.tree.check_integrity(used)


def next_token(req: Req) -> int:
    """A deterministic 'model': the next token depends only on the request and its length."""
    return 40_000 + (hash(req.rid) % 1000) * 8 + len(req.output_ids) % 8


def rids(batch: ScheduleBatch) -> list[str]:
    return [r.rid for r in batch.reqs]


def span(start: int, n: int) -> list[int]:
    return list(range(start, start + n))
