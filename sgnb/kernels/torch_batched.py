"""The CPU attention backend: paged attention in padded batches, with shared prefixes computed once.

Same signatures as `torch_ref`, which the tests hold this module to. Two ideas make it fast:

- **Padded batches.** A decode step, and all requests that extend by at most
  `PADDED_MAX_EXTEND_LEN` tokens (jump-forward chunks, decode riders in mixed steps, short
  questions after a cached few-shot prefix), run as one attention call over a [batch, keys]
  padded layout instead of a Python loop over requests. Longer extends (prefill chunks) run
  one by one, each as one fused attention call with grouped-query heads (no K/V copy per query
  head) and a bottom-right causal mask built once per forward: 4-7x faster than the reference's.
- **Shared prefixes, once.** Requests behind one radix-cache prefix point at the very same KV
  slots. When all requests of a padded batch start with the same >= `MIN_SHARED_PREFIX_LEN`
  slots, all their queries attend to that prefix together, in one matmul over the un-padded
  prefix, and to their remaining keys separately; the halves merge through their log-sum-exps.
  Without this, 64 requests behind a 1,000-token prefix copy 64 x 1,000 keys per layer per step.

Index plans are built once per forward pass (every layer passes the very same index tensors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sgnb.kernels.paged_kv import PoolReader, Slots, as_range, kv_pair

PADDED_MAX_EXTEND_LEN = 64
# extends this short are cheaper as decode queries, one per token, than as a padded extend (see backend.py)
DECODE_FORM_MAX_EXTEND = 16
MIN_SHARED_PREFIX_LEN = 32


@dataclass(slots=True)
class _Padded:
    """Requests laid out as a padded batch of keys, after their shared prefix (if any)."""

    slots: Slots                        # [batch, keys] pool slots (0 where padded); one request: [keys] or a run
    mask: torch.Tensor | None           # [batch, 1, rows | 1, keys] bool; None when nothing is masked
    shared_slots: Slots | None          # [shared_len] slots every request starts with
    additive: torch.Tensor | None = None   # `mask` as 0 / -inf in the query dtype, made on first use

    def additive_mask(self, dtype: torch.dtype) -> torch.Tensor | None:
        if self.mask is None:
            return None
        if self.additive is None or self.additive.dtype != dtype:
            self.additive = torch.zeros(self.mask.shape, dtype=dtype, device=self.mask.device).masked_fill_(
                ~self.mask, float("-inf"))
        return self.additive


# ------------------------------------------------------------------ store

def store_kv(k_buffer: torch.Tensor, v_buffer: torch.Tensor, loc: torch.Tensor,
             k: torch.Tensor, v: torch.Tensor) -> None:
    """See `torch_ref.store_kv`: index_copy_ over distinct slots, a cheaper scatter than index_put on the CPU.

    When the pool keeps K and V side by side and the new k, v lie side by side too (the model's fused
    projection), one copy stores both.
    """
    loc = loc if loc.dtype == torch.int64 else loc.long()
    pair = kv_pair(k_buffer, v_buffer)
    new = kv_pair(k, v) if pair is not None else None
    if new is not None and new.dtype == pair.dtype:
        pair.index_copy_(0, loc, new)
        return
    k_buffer.index_copy_(0, loc, k if k.dtype == k_buffer.dtype else k.to(k_buffer.dtype))
    v_buffer.index_copy_(0, loc, v if v.dtype == v_buffer.dtype else v.to(v_buffer.dtype))


# ------------------------------------------------------------------ decode

def decode_attention(q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                     kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
                     sm_scale: float) -> torch.Tensor:
    """See `torch_ref.decode_attention`: the whole batch padded into one call."""
    batch, num_heads, head_dim = q.shape
    num_kv_heads = k_buffer.shape[1]
    plan = _cached(_decode_plan, kv_indptr, kv_indices)
    qg = q.view(batch, num_kv_heads, num_heads // num_kv_heads, head_dim)    # a KV head's query heads as rows
    # [batch, num_kv_heads, keys, head_dim]
    pool = PoolReader.of(k_buffer, v_buffer)
    k, v = pool.gather(plan.slots, q.dtype)
    k = k.view(batch, -1, num_kv_heads, head_dim).permute(0, 2, 1, 3)
    v = v.view(batch, -1, num_kv_heads, head_dim).permute(0, 2, 1, 3)
    o = _attend(qg, k, v, plan, pool, sm_scale)
    return o.reshape(batch, num_heads, head_dim)


def _decode_plan(kv_indptr: torch.Tensor, kv_indices: torch.Tensor) -> _Padded:
    if kv_indptr.numel() == 2:          # one request: alone in the engine its slots are usually one run
        return _Padded(as_range(kv_indices[int(kv_indptr[0]):int(kv_indptr[1])]), None, None)
    starts, lens = kv_indptr[:-1], kv_indptr[1:] - kv_indptr[:-1]
    slots, valid = _padded_slots(starts, lens, kv_indices)                 # [batch, max_len]
    shared = _shared_prefix_len(slots, int(lens.min()) - 1)                 # a request's own token is never shared
    slots, valid = slots[:, shared:], valid[:, shared:]
    mask = None if bool(valid.all()) else valid[:, None, None, :]
    return _Padded(slots, mask, _first_run(kv_indices, starts, shared))


# ------------------------------------------------------------------ extend

def extend_attention(q: torch.Tensor, k_extend: torch.Tensor, v_extend: torch.Tensor,
                     k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                     qo_indptr: torch.Tensor, kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
                     sm_scale: float) -> torch.Tensor:
    """See `torch_ref.extend_attention`: short extends padded together, long ones one by one."""
    out = torch.empty_like(q)
    plan = _cached(_extend_plan, qo_indptr, kv_indptr, kv_indices)
    pool = PoolReader.of(k_buffer, v_buffer)
    if plan.short is not None:
        _extend_short(out, q, k_extend, v_extend, pool, plan.short, sm_scale)
    for span in plan.long:
        _extend_long(out, q, k_extend, v_extend, pool, span, sm_scale)
    return out


@dataclass(slots=True)
class _ShortExtends:
    """Short extends as one padded batch: keys = [remaining prefix | own tokens], rows = own tokens."""

    padded: _Padded                     # slots: the prefix after the shared part; mask covers both halves
    token_rows: torch.Tensor            # [num_group_tokens] rows of q / k_extend in the group
    padded_pos: torch.Tensor            # [num_group_tokens] their flat index in [batch * max_extend_len]
    batch: int
    max_extend_len: int
    grouped: _Padded | None = None      # `padded` with mask rows repeated per query head of a KV head

    def for_group(self, group: int) -> _Padded:
        if self.grouped is None:
            p = self.padded
            mask = p.mask.repeat(1, 1, group, 1) if group > 1 else p.mask
            self.grouped = _Padded(p.slots, mask, p.shared_slots)
        return self.grouped


@dataclass(slots=True)
class _LongExtend:
    """One request's extend computed on its own: query rows q0..q1 after its cached prefix."""

    q0: int
    q1: int
    prefix: Slots                       # [prefix_len] pool slots
    prefix_len: int
    device: torch.device
    mask: torch.Tensor | None = None    # [extend_len, prefix_len + extend_len] additive, made on first use

    def additive_mask(self, dtype: torch.dtype) -> torch.Tensor:
        # query j sits at position prefix_len + j and sees keys 0..prefix_len + j (bottom-right causal)
        if self.mask is None or self.mask.dtype != dtype:
            rows = torch.arange(self.q1 - self.q0, device=self.device).unsqueeze(1) + self.prefix_len
            cols = torch.arange(self.prefix_len + self.q1 - self.q0, device=self.device).unsqueeze(0)
            self.mask = torch.zeros(rows.shape[0], cols.shape[1], dtype=dtype, device=self.device
                                    ).masked_fill_(cols > rows, float("-inf"))
        return self.mask


@dataclass(slots=True)
class _ExtendPlan:
    short: _ShortExtends | None
    long: list[_LongExtend]             # requests computed one by one


def _extend_plan(qo_indptr: torch.Tensor, kv_indptr: torch.Tensor, kv_indices: torch.Tensor) -> _ExtendPlan:
    qo, kvp = qo_indptr.tolist(), kv_indptr.tolist()
    spans = [(qo[i], qo[i + 1], kvp[i], kvp[i + 1]) for i in range(len(qo) - 1) if qo[i + 1] > qo[i]]
    # short extends share one padded call; a long one (a prefill chunk) is worth its own
    short = [s for s in spans if s[1] - s[0] <= PADDED_MAX_EXTEND_LEN]
    long = [_LongExtend(q0, q1, as_range(kv_indices[p0:p1]), p1 - p0, kv_indices.device)
            for q0, q1, p0, p1 in spans if q1 - q0 > PADDED_MAX_EXTEND_LEN]
    return _ExtendPlan(_short_extends(short, kv_indices) if short else None, long)


def _short_extends(spans: list[tuple[int, int, int, int]], kv_indices: torch.Tensor) -> _ShortExtends:
    dev = kv_indices.device
    extend_lens = [q1 - q0 for q0, q1, _, _ in spans]
    max_e = max(extend_lens)
    starts = torch.tensor([p0 for _, _, p0, _ in spans], device=dev)
    prefix_lens = torch.tensor([p1 - p0 for _, _, p0, p1 in spans], device=dev)
    slots, prefix_valid = _padded_slots(starts, prefix_lens, kv_indices)   # [batch, max_prefix_len]
    shared = _shared_prefix_len(slots, int(prefix_lens.min()))
    slots, prefix_valid = slots[:, shared:], prefix_valid[:, shared:]
    e = torch.tensor(extend_lens, device=dev).view(-1, 1, 1)
    j = torch.arange(max_e, device=dev)
    # own key c is visible to row r when c <= r and c is a real token; padded rows (r >= extend_len)
    # still see key 0, so no row is fully masked (their outputs are dropped)
    own = (j.view(1, 1, -1) <= j.view(1, -1, 1)) & (j.view(1, 1, -1) < e)           # [batch, max_e, max_e]
    mask = torch.cat([prefix_valid.unsqueeze(1).expand(-1, max_e, -1), own], dim=2).unsqueeze(1)
    token_rows = torch.cat([torch.arange(q0, q1, device=dev) for q0, q1, _, _ in spans])
    padded_pos = torch.cat([torch.arange(n, device=dev) + b * max_e for b, n in enumerate(extend_lens)])
    padded = _Padded(slots, mask, _first_run(kv_indices, starts, shared))
    return _ShortExtends(padded, token_rows, padded_pos, len(spans), max_e)


def _extend_short(out, q, k_extend, v_extend, pool: PoolReader, g: _ShortExtends, sm_scale: float) -> None:
    num_heads, head_dim = q.shape[1], q.shape[2]
    num_kv_heads = pool.k.shape[1]
    group = num_heads // num_kv_heads
    b, e = g.batch, g.max_extend_len

    def padded(x: torch.Tensor) -> torch.Tensor:        # [num_tokens, heads, d] -> [batch, max_e, heads, d]
        buf = x.new_zeros(b * e, x.shape[1], head_dim)
        buf[g.padded_pos] = x[g.token_rows]
        return buf.view(b, e, x.shape[1], head_dim)

    slots = g.padded.slots
    # [b, kvh, keys, d]
    k_prefix, v_prefix = pool.gather(slots, q.dtype)
    k = torch.cat([k_prefix, padded(k_extend)], dim=1).permute(0, 2, 1, 3)
    v = torch.cat([v_prefix, padded(v_extend)], dim=1).permute(0, 2, 1, 3)
    # a KV head's query heads, each with its own max_e rows: [b, kvh, group * max_e, d]
    qg = padded(q).view(b, e, num_kv_heads, group, head_dim).permute(0, 2, 3, 1, 4).reshape(
        b, num_kv_heads, group * e, head_dim)
    o = _attend(qg, k, v, g.for_group(group), pool, sm_scale)
    o = o.view(b, num_kv_heads, group, e, head_dim).permute(0, 3, 1, 2, 4).reshape(b * e, num_heads, head_dim)
    out[g.token_rows] = o[g.padded_pos]


def _extend_long(out, q, k_extend, v_extend, pool: PoolReader, span: _LongExtend, sm_scale: float) -> None:
    q0, q1 = span.q0, span.q1
    k, v = k_extend[q0:q1], v_extend[q0:q1]
    has_prefix = span.prefix_len > 0
    if has_prefix:
        k_prefix, v_prefix = pool.gather(span.prefix, q.dtype)
        k, v = torch.cat([k_prefix, k]), torch.cat([v_prefix, v])
    # [1, heads, tokens, head_dim]; without a prefix the causal mask is the plain (top-left) one
    o = _sdpa_gqa(q[q0:q1].transpose(0, 1).unsqueeze(0), k.transpose(0, 1).unsqueeze(0),
                  v.transpose(0, 1).unsqueeze(0), span.additive_mask(q.dtype) if has_prefix else None,
                  not has_prefix, sm_scale)
    out[q0:q1] = o[0].transpose(0, 1)


# ------------------------------------------------------------------ shared pieces

# SDPA takes fewer K/V heads than query heads itself since torch 2.5; before, K/V are repeated per query head
_HAS_SDPA_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)


def _sdpa_gqa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, is_causal: bool,
              sm_scale: float) -> torch.Tensor:
    """SDPA with q [b, heads, n, d] over k, v [b, kv_heads, m, d] (grouped-query attention)."""
    if _HAS_SDPA_GQA:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=sm_scale,
                                              enable_gqa=True)
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=sm_scale)


def _attend(qg: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: _Padded, pool: PoolReader,
            sm_scale: float) -> torch.Tensor:
    """qg [batch, kv_heads, rows, d] over k, v [batch, kv_heads, keys, d] and the shared prefix, if any."""
    if plan.shared_slots is None:
        return F.scaled_dot_product_attention(qg, k, v, attn_mask=plan.mask, scale=sm_scale)
    b, kvh, rows, d = qg.shape
    # [1, kv_heads, shared, d]
    shared_k, shared_v = pool.gather(plan.shared_slots, qg.dtype)
    shared_k, shared_v = shared_k.transpose(0, 1).unsqueeze(0), shared_v.transpose(0, 1).unsqueeze(0)
    # every query row of the batch against the one copy of the shared prefix: [1, kv_heads, b * rows, d]
    o1, lse1 = _attention_lse(qg.transpose(0, 1).reshape(1, kvh, b * rows, d), shared_k, shared_v, None,
                              sm_scale)
    o1 = o1.view(kvh, b, rows, d).transpose(0, 1)
    lse1 = lse1.view(kvh, b, rows, 1).transpose(0, 1)
    o2, lse2 = _attention_lse(qg, k, v, plan, sm_scale)
    # softmax over both key sets = o2 + (o1 - o2) * e1 / (e1 + e2), where e1 / (e1 + e2) = sigmoid(lse1 - lse2):
    # one fused lerp instead of a dozen small ops (each costs more than its math here)
    weight = torch.sigmoid(lse1 - lse2)                                   # fp32 [b, kv_heads, rows, 1]
    return torch.lerp(o2, o1, weight.to(o1.dtype))


# torch's CPU flash-attention op returns the log-sum-exp that the merge needs (torch >= 2.2)
_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _attention_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: _Padded | None,
                   sm_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention and its fp32 log-sum-exp: q [b, h, n, d], k/v [b, h, m, d] -> [b, h, n, d], [b, h, n, 1]."""
    if _FLASH_CPU is not None and q.device.type == "cpu":
        o, lse = _FLASH_CPU(q, k, v, 0.0, False, attn_mask=plan and plan.additive_mask(q.dtype), scale=sm_scale)
        return o, lse.unsqueeze(-1)
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)).mul_(sm_scale)
    if plan is not None and plan.mask is not None:
        scores.masked_fill_(~plan.mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1, keepdim=True)
    return torch.matmul(scores.sub_(lse).exp_(), v.float()).to(q.dtype), lse


def _padded_slots(starts: torch.Tensor, lens: torch.Tensor, kv_indices: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs kv_indices[starts[i]:starts[i] + lens[i]] as a padded [batch, max_len] slot matrix, and validity."""
    max_len = int(lens.max()) if lens.numel() else 0
    offsets = torch.arange(max_len, device=kv_indices.device)
    valid = offsets.unsqueeze(0) < lens.unsqueeze(1)                      # [batch, max_len]
    idx = (starts.unsqueeze(1) + offsets).clamp_(max=max(kv_indices.numel() - 1, 0))
    return torch.where(valid, kv_indices[idx], torch.zeros_like(idx)), valid


def _shared_prefix_len(slots: torch.Tensor, limit: int) -> int:
    """How many leading slots all rows share (at most `limit`); 0 when too few to be worth a split."""
    if slots.shape[0] < 2 or limit < MIN_SHARED_PREFIX_LEN:
        return 0
    same = (slots[:, :limit] == slots[:1, :limit]).all(dim=0)              # [limit]
    shared = limit if bool(same.all()) else int(same.logical_not().nonzero()[0, 0])
    return shared if shared >= MIN_SHARED_PREFIX_LEN else 0


def _first_run(kv_indices: torch.Tensor, starts: torch.Tensor, shared_len: int) -> Slots | None:
    if not shared_len:
        return None
    start = int(starts[0])
    return as_range(kv_indices[start:start + shared_len])


_last: dict[Callable, tuple[tuple, object]] = {}


def _cached(build: Callable, *key: torch.Tensor):
    """build(*key), reused while the very same index tensors come back (strong references keep ids valid)."""
    hit = _last.get(build)
    if hit is not None and len(hit[0]) == len(key) and all(a is b for a, b in zip(hit[0], key)):
        return hit[1]
    plan = build(*key)
    _last[build] = (key, plan)
    return plan
