"""Drive a loaded model directly over a paged KV pool: a prefill, then greedy decode steps (model-level tests
of the kernels, without an engine)."""

from __future__ import annotations

import torch

from sgnb.engine.attention import AttentionContext, ForwardMode
from sgnb.engine.kv_cache import KVPool
from sgnb.kernels.backend import get_attention_ops


def step_logits(model, input_ids: list[int], num_decode_steps: int, attention: str) -> list[torch.Tensor]:
    """Logits [num_rows, vocab] of a prefill of input_ids (every row), then of `num_decode_steps` greedy
    decode steps, each fed the previous step's argmax, over a paged KV pool."""
    cfg = model.cfg
    pool = KVPool(cfg, len(input_ids) + num_decode_steps + 1, torch.float32, "cpu")
    ops = get_attention_ops(attention, "cpu")
    num_tokens = len(input_ids)
    ctx = AttentionContext(ForwardMode.EXTEND, ops, pool.k_buffers, pool.v_buffers,
                           out_cache_loc=torch.arange(1, num_tokens + 1), qo_indptr=torch.tensor([0, num_tokens]),
                           kv_indptr=torch.tensor([0, 0]), kv_indices=torch.zeros(0, dtype=torch.int64),
                           sm_scale=cfg.head_dim ** -0.5)
    with torch.inference_mode():
        logits = [model(torch.tensor(input_ids), torch.arange(num_tokens), ctx)]
        for pos in range(num_tokens, num_tokens + num_decode_steps):
            ctx = AttentionContext(ForwardMode.DECODE, ops, pool.k_buffers, pool.v_buffers,
                                   out_cache_loc=torch.tensor([pos + 1]), qo_indptr=torch.tensor([0, 1]),
                                   kv_indptr=torch.tensor([0, pos + 1]), kv_indices=torch.arange(1, pos + 2),
                                   sm_scale=cfg.head_dim ** -0.5)
            token = logits[-1][-1].argmax().view(1)
            logits.append(model(token, torch.tensor([pos]), ctx))
    return logits


def relative_errors(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> torch.Tensor:
    """Per row ||ours - reference|| / ||reference||, over every step's rows."""
    ours, reference = torch.cat(ours), torch.cat(reference)
    return (ours - reference).norm(dim=-1) / reference.norm(dim=-1)
