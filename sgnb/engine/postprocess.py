"""After a forward pass: logprobs, sampling, detokenization, stop checks, streaming and finishing.

Plain functions over a `PostprocessContext` (the few parts of the engine they need, built once by the
engine); the engine calls them with its lock held. Queue moves go through the scheduler's methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sgnb.engine import sampler
from sgnb.engine.attention import ForwardMode
from sgnb.engine.counters import Counters
from sgnb.engine.detokenizer import IncrementalDetokenizer, find_stop, held_back_len
from sgnb.engine.model_runner import ForwardOutput
from sgnb.engine.request import Req
from sgnb.engine.sampling_params import SamplingParams
from sgnb.engine.scheduler import ScheduleBatch, Scheduler


# the constraint trace looks for masked tokens among the model's this many favourites
MODEL_TOP_K = 64


@dataclass(slots=True)
class PostprocessContext:
    """What postprocessing reads and updates; the engine builds it once and owns every part of it."""

    tokenizer: Any                    # the HF tokenizer (token texts for logprobs)
    eos_ids: tuple[int, ...]          # end the output unless `ignore_eos`
    max_context_len: int              # a request whose tokens reach it finishes with reason "length"
    counters: Counters
    scheduler: Scheduler
    reqs: dict[str, Req]              # the engine's table of unfinished requests: delivery removes them

    def __post_init__(self) -> None:
        if self.max_context_len < 1:
            raise ValueError(f"max_context_len must be >= 1, got {self.max_context_len}")


def make_detokenizer(tokenizer: Any, params: SamplingParams) -> IncrementalDetokenizer:
    return IncrementalDetokenizer(tokenizer, params.skip_special_tokens)


def wants_input_rows(req: Req, extend_len: int) -> bool:
    """Whether this step must project every computed token of `req` (for input-token logprobs)."""
    if not req.wants_input_logprobs or req.num_retractions or req.kv_len >= len(req.input_ids):
        return False
    return req.kv_len + extend_len >= req.logprob_start_len     # the chunk reaches position start - 1


def process_batch(ctx: PostprocessContext, batch: ScheduleBatch, out: ForwardOutput, keep_all: list[bool]) -> None:
    counters = ctx.counters
    counters.num_forward_passes += 1
    to_sample: list[tuple[Req, int]] = []
    for i, (req, n) in enumerate(zip(batch.reqs, batch.extend_lens)):
        if batch.mode is ForwardMode.EXTEND:
            counters.num_prefill_tokens += n
        if keep_all[i]:
            _record_input_logprobs(ctx, req, out.logits[out.first_row[i]:out.last_row[i] + 1], req.kv_len, n)
        req.kv_len += n
        if req.kv_len < len(req.fill_ids):           # more prompt (or forced) tokens to compute first
            ctx.scheduler.commit_to_tree(req)
            continue
        if req.is_score:
            req.finish_reason = {"type": "length", "length": 0}
            finish(ctx, req)
            continue
        if req.constraint is not None and _end_if_forced_out(req):   # jump-forward at admission wrote it all
            _finish_with_text(ctx, req)
            continue
        to_sample.append((req, out.last_row[i] - len(req.draft_ids)))   # a draft: from the row before it
    # each round samples one token per request; a request whose token confirms its draft's next token
    # samples again in the next round, from the row after it (already computed in this pass)
    while to_sample:
        to_sample = _sample_round(ctx, to_sample, out.logits)
    if batch.mode is ForwardMode.EXTEND:
        for req in batch.reqs:
            if not req.is_finished and req.kv_len == len(req.fill_ids) - 1:
                ctx.scheduler.start_decoding(req)


def _sample_round(ctx: PostprocessContext, to_sample: list[tuple[Req, int]],
                  logits: torch.Tensor) -> list[tuple[Req, int]]:
    """Sample one token for each (request, logits row); returns the requests to sample again (draft confirmed)."""
    reqs = [r for r, _ in to_sample]
    rows = [row for _, row in to_sample]
    # [num_sampled, vocab]; a plain decode step samples every row in order: no gather, and no copy
    # unless penalties or masks edit them (`raw` must stay the model's own logits for logprobs)
    raw = logits if rows == list(range(len(logits))) else logits[rows]
    edited = raw.clone() if sampler.edits_logits(reqs) else raw
    sampler.apply_penalties(edited, reqs)
    sampler.apply_masks(edited, reqs, ctx.eos_ids)
    tokens = sampler.sample(edited, reqs)
    _record_output_logprobs(ctx, reqs, raw, tokens)
    # the constraint trace's model favourites, for every constrained row in one call
    traced = [i for i, r in enumerate(reqs) if r.constraint is not None]
    tops = {}
    if traced:
        logps, ids = sampler.top_logprobs(raw if len(traced) == len(reqs) else raw[traced], MODEL_TOP_K)
        tops = {i: (logps[j], ids[j]) for j, i in enumerate(traced)}
    again = []
    for i, (req, token) in enumerate(zip(reqs, tokens)):
        if req.draft_ids and _confirms_draft(ctx, req, token):
            append_token(ctx, req, token, model_top=tops.get(i), can_jump=False)
            if not req.is_finished:
                again.append((req, rows[i] + 1))
            continue
        append_token(ctx, req, token, model_top=tops.get(i))
    return again


def _confirms_draft(ctx: PostprocessContext, req: Req, token: int) -> bool:
    """Whether the sampled token is the draft's next one: it leaves the draft (whose K/V it already has)
    for the output. Otherwise the rest of the draft and its K/V are dropped."""
    if token == req.draft_ids[0]:
        req.draft_ids.pop(0)
        req.constraint.num_draft_accepted += 1
        return True
    ctx.scheduler.drop_draft(req)
    return False


def append_token(ctx: PostprocessContext, req: Req, token: int,
                 model_top: tuple[torch.Tensor, torch.Tensor] | None = None, can_jump: bool = True) -> None:
    """Add one sampled token, then check every stop condition and stream or finish.

    model_top: for a constrained request, the model's favourites before the mask (for its trace).
    can_jump: False while the token confirms a draft: the draft's rest is the forced text that follows.
    """
    req.output_ids.append(token)
    ctx.counters.num_generated_tokens += 1
    p = req.params
    if req.constraint is not None:
        req.constraint.advance(token, model_top)
    if token in p.stop_token_ids or (token in ctx.eos_ids and not p.ignore_eos):
        req.detok.flush(req.output_ids)
        req.finish_reason = {"type": "stop", "matched": token}
    elif not _ends_at_stop_string(req, req.detok.update(req.output_ids)):
        if len(req.output_ids) >= p.max_new_tokens or len(req.fill_ids) >= ctx.max_context_len:
            req.finish_reason = {"type": "length", "length": len(req.output_ids)}
        elif req.constraint is not None and req.constraint.is_finished:
            req.finish_reason = {"type": "stop", "matched": None}
    if req.is_finished:
        if req.finish_reason.get("type") != "stop" or not isinstance(req.finish_reason.get("matched"), str):
            req.detok.flush(req.output_ids)
            req.text = req.detok.text
        finish(ctx, req)
        return
    req.text = req.detok.text
    if can_jump and req.constraint is not None and _jump_forward(ctx, req):
        return
    if req.stream:
        _push_delta(req, finished=False)


def _jump_forward(ctx: PostprocessContext, req: Req) -> bool:
    """Append the constraint's forced tokens; the request then extends them in one step.

    Returns True when they complete the output (budget spent or nothing can follow): it finishes now.
    """
    forced, req.draft_ids = req.constraint.jump_forward(req)
    if not forced and not req.draft_ids:
        return False
    req.output_ids += forced
    ctx.counters.num_forced_tokens += len(forced)
    delta = req.detok.update(req.output_ids)
    req.text = req.detok.text
    if _ends_at_stop_string(req, delta):           # a stop string inside the forced text ends it too
        finish(ctx, req)
        return True
    if _end_if_forced_out(req):
        _finish_with_text(ctx, req)
        return True
    ctx.scheduler.move_to_pending(req)
    return False


def _ends_at_stop_string(req: Req, delta: str) -> bool:
    """When the text just added (`delta`) completes a stop string, set the finish reason and the trimmed text."""
    p = req.params
    hit = find_stop(req.detok.text, p.stop, len(delta)) if p.stop and delta else None
    if hit is None:
        return False
    idx, stop = hit
    req.finish_reason = {"type": "stop", "matched": stop}
    req.text = req.detok.text[:idx + len(stop)] if p.no_stop_trim else req.detok.text[:idx]
    return True


def _end_if_forced_out(req: Req) -> bool:
    """Set the finish reason (and return True) when forced tokens spent the budget or left nothing to sample."""
    if len(req.output_ids) >= req.max_output_len:
        req.finish_reason = {"type": "length", "length": len(req.output_ids)}
    elif req.constraint.is_finished:
        req.finish_reason = {"type": "stop", "matched": None}
    return req.finish_reason is not None


def _finish_with_text(ctx: PostprocessContext, req: Req) -> None:
    req.detok.flush(req.output_ids)
    req.text = req.detok.text
    finish(ctx, req)


def finish(ctx: PostprocessContext, req: Req) -> None:
    ctx.scheduler.finish(req)
    ctx.counters.num_finished += 1
    deliver(ctx, req)


def deliver(ctx: PostprocessContext, req: Req) -> None:
    """Hand the final result to the caller (stream gets a last delta first)."""
    ctx.reqs.pop(req.rid, None)
    if req.finish_reason and req.finish_reason.get("type") == "abort" and not req.text:
        req.text = req.detok.text if req.detok else ""
    if req.stream:
        _push_delta(req, finished=True)
    req.sink.finish({"text": req.text, "output_ids": list(req.output_ids), "meta_info": req.meta_info()})


def _push_delta(req: Req, finished: bool) -> None:
    visible = len(req.text) if finished else len(req.text) - held_back_len(req.text, req.params.stop)
    if visible <= req.num_sent_chars and len(req.output_ids) == req.num_sent_ids and not finished:
        return
    delta = {
        "text": req.text[req.num_sent_chars:visible],
        "output_ids": req.output_ids[req.num_sent_ids:],
        "meta_info": req.meta_info(),
        "finished": finished,
    }
    req.num_sent_chars = max(req.num_sent_chars, visible)
    req.num_sent_ids = len(req.output_ids)
    req.sink.push(delta)


def _record_input_logprobs(ctx: PostprocessContext, req: Req, logits: torch.Tensor, start: int, n: int) -> None:
    # logits: [n, vocab]; row j is the distribution after position start + j, i.e. over token start + j + 1
    first = req.logprob_start_len
    if first == 0 and start == 0:
        req.input_token_logprobs.append((None, req.input_ids[0], _tok(ctx, req.input_ids[0])))
        if req.top_logprobs_num:
            req.input_top_logprobs.append(None)
    targets = [(j, start + j + 1) for j in range(n) if max(first, 1) <= start + j + 1 < len(req.input_ids)]
    if not targets:
        return
    rows = logits[[j for j, _ in targets]]
    ids = [req.input_ids[t] for _, t in targets]
    chosen, tops = sampler.token_logprobs(rows, ids, req.top_logprobs_num)
    req.input_token_logprobs += [(lp, t, _tok(ctx, t)) for lp, t in zip(chosen, ids)]
    req.input_top_logprobs += [[(lp, t, _tok(ctx, t)) for lp, t in top] for top in tops]


def _record_output_logprobs(ctx: PostprocessContext, reqs: list[Req], raw: torch.Tensor, tokens: list[int]) -> None:
    idx = [i for i, r in enumerate(reqs) if r.return_logprob]
    if not idx:
        return
    top_k = max(reqs[i].top_logprobs_num for i in idx)
    chosen, tops = sampler.token_logprobs(raw[idx], [tokens[i] for i in idx], top_k)
    for j, i in enumerate(idx):
        req = reqs[i]
        req.output_token_logprobs.append((chosen[j], tokens[i], _tok(ctx, tokens[i])))
        if req.top_logprobs_num:
            req.output_top_logprobs.append(
                [(lp, t, _tok(ctx, t)) for lp, t in tops[j][:req.top_logprobs_num]])


def _tok(ctx: PostprocessContext, token_id: int) -> str:
    return ctx.tokenizer.decode([token_id])

