"""Runs the model on one scheduled batch: gathers token ids, positions and paged-KV metadata."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sgnb.engine.attention import AttentionContext, ForwardMode
from sgnb.engine.image_embedding_cache import ImageEmbeddingCache
from sgnb.engine.kv_cache import KVPool, ReqToTokenPool
from sgnb.engine.models.base import CausalLM
from sgnb.engine.scheduler import ScheduleBatch
from sgnb.kernels.backend import AttentionOps


@dataclass(slots=True)
class ForwardOutput:
    logits: torch.Tensor          # [num_rows, vocab] fp32
    last_row: list[int]           # per request: row of its last token's logits
    first_row: list[int]          # per request: first row kept (its first computed token's if all rows are kept;
                                  # the row before its draft if it has one; else == last_row)


class ModelRunner:
    def __init__(self, model: CausalLM, kv_pool: KVPool, req_pool: ReqToTokenPool, ops: AttentionOps, device: str,
                 cuda_graph_batch_sizes: list[int] | None = None, image_cache: ImageEmbeddingCache | None = None):
        """image_cache: a vision-language model's image embeddings (None for a text-only model)."""
        self.model = model
        self.image_cache = image_cache
        self.kv_pool = kv_pool
        self.req_pool = req_pool
        self.ops = ops
        self.device = device
        self.sm_scale = model.cfg.head_dim ** -0.5
        self.graph = None
        if cuda_graph_batch_sizes:
            self.graph = self._capture_decode_graphs(cuda_graph_batch_sizes)

    def _capture_decode_graphs(self, batch_sizes: list[int]):
        from sgnb.kernels.cuda_graph import DecodeGraphRunner

        if not self.ops.is_graph_safe:
            raise ValueError(f"cuda_graph=True needs a graph-safe attention backend (triton), not {self.ops.name!r}")
        max_num_kv = max(batch_sizes) * self.req_pool.table.shape[1]
        with torch.inference_mode():
            return DecodeGraphRunner(self._decode_forward, batch_sizes, max_num_kv, self.device)

    def _decode_forward(self, input_ids, positions, out_cache_loc, kv_indptr, kv_indices) -> torch.Tensor:
        """A decode step with no host reads of tensor values, as CUDA-graph capture requires."""
        ctx = AttentionContext(mode=ForwardMode.DECODE, ops=self.ops, k_buffers=self.kv_pool.k_buffers,
                               v_buffers=self.kv_pool.v_buffers, out_cache_loc=out_cache_loc, qo_indptr=kv_indptr,
                               kv_indptr=kv_indptr, kv_indices=kv_indices, sm_scale=self.sm_scale)
        return self.model(input_ids, positions, ctx)

    @torch.inference_mode()
    def forward(self, batch: ScheduleBatch, keep_all_rows: list[bool]) -> ForwardOutput:
        """keep_all_rows[i]: project every computed token of request i (input logprobs), not just its last."""
        table = self.req_pool.table
        ids: list[int] = []
        positions: list[int] = []
        locs: list[torch.Tensor] = []
        kv_rows: list[torch.Tensor] = []
        kv_lens: list[int] = []
        logit_rows: list[int] = []
        first_row: list[int] = []
        last_row: list[int] = []
        is_decode = batch.mode is ForwardMode.DECODE
        # short extends (jump-forward chunks, one-token riders) attend as decode queries where the backend
        # allows it: token k's K/V is stored first, so it reads the pool up to and including itself
        as_decode = is_decode or max(batch.extend_lens) <= self.ops.max_decode_form_extend
        for req, n, keep_all in zip(batch.reqs, batch.extend_lens, keep_all_rows):
            start = req.kv_len
            row = table[req.row]
            base = len(ids)
            fill = req.fill_ids
            ids += fill[start:start + n]
            positions += range(start, start + n)
            locs.append(row[start:start + n])
            if as_decode:
                for end in range(start + 1, start + n + 1):
                    kv_rows.append(row[:end])
                    kv_lens.append(end)
            else:                                            # extend kernels take the cached prefix only
                kv_rows.append(row[:start])
                kv_lens.append(start)
            first_row.append(len(logit_rows))
            # the chunk that ends a draft gives the rows that verify it too (the scheduler keeps them in one chunk)
            tail = min(req.num_tail_rows, n) if start + n == len(fill) else 1
            logit_rows += range(base, base + n) if keep_all else range(base + n - tail, base + n)
            last_row.append(len(logit_rows) - 1)
        dev = self.device
        qo = torch.tensor([0] + batch.extend_lens, device=dev).cumsum(0)
        kv_indptr = torch.tensor([0] + kv_lens, device=dev).cumsum(0)
        out_cache_loc = torch.cat(locs).to(dev)
        kv_indices = torch.cat(kv_rows).to(dev)
        input_ids = torch.tensor(ids, device=dev)
        pos = torch.tensor(positions, device=dev)
        if is_decode and self.graph is not None and self.graph.can_run(len(ids), kv_indices.numel()):
            logits = self.graph.replay(input_ids, pos, out_cache_loc, kv_indptr, kv_indices).float()
            return ForwardOutput(logits.cpu(), last_row, first_row)
        ctx = AttentionContext(
            mode=ForwardMode.DECODE if as_decode else batch.mode, ops=self.ops,
            k_buffers=self.kv_pool.k_buffers, v_buffers=self.kv_pool.v_buffers,
            out_cache_loc=out_cache_loc,
            qo_indptr=qo, kv_indptr=kv_indptr,
            kv_indices=kv_indices,
            sm_scale=self.sm_scale,
        )
        rows = None if len(logit_rows) == len(ids) else torch.tensor(logit_rows, device=dev)
        embeds = None if is_decode else self._input_embeds(batch, input_ids)     # decode steps are text only
        logits = self.model(input_ids, pos, ctx, rows, input_embeds=embeds)
        return ForwardOutput(logits.cpu(), last_row, first_row)

    def _input_embeds(self, batch: ScheduleBatch, input_ids: torch.Tensor) -> torch.Tensor | None:
        """The token embeddings [num_tokens, hidden] with the image rows this step computes scattered in at
        their positions; None when it computes no image row. An image whose rows all lie outside the step
        (in the cached prefix, or in a later chunk) is not encoded; a chunk that cuts through one takes its
        slice of the rows."""
        if not any(req.image_items for req in batch.reqs):
            return None
        dst: list[int] = []                  # rows of the step's tokens
        src: list[torch.Tensor] = []         # their image embedding rows, in the same order
        base = 0                             # the request's first row in the step
        for req, n in zip(batch.reqs, batch.extend_lens):
            start = req.kv_len               # the step computes positions [start, start + n)
            for item in req.image_items:
                emb = None
                row = 0                      # the item's embedding row of its span's first position
                for span_start, length in item.spans:
                    lo, hi = max(span_start, start), min(span_start + length, start + n)
                    if lo < hi:
                        emb = self.image_cache.get(item) if emb is None else emb
                        dst += range(base + lo - start, base + hi - start)
                        src.append(emb[row + lo - span_start:row + hi - span_start])
                    row += length
            base += n
        if not src:
            return None
        embeds = self.model.embed_tokens(input_ids)
        embeds[torch.tensor(dst, device=self.device)] = torch.cat(src).to(embeds.dtype)
        return embeds
