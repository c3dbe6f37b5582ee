"""A regex / JSON-schema constraint on our compressed FSM: cached masks, exact budget rule, jump-forward.

The FSM itself (sgnb.constrained) is plain Python; this class owns the torch masks, cached per
(FSM, state). Token distances to an accepting state make the budget rule exact: near the end of the
budget only tokens after which the output can still be completed stay allowed.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import torch

from sgnb.constrained import (TokenFSM, TokenVocab, compile_regex, distances_to_accept, plan_jump,
                              schema_to_regex, within_budget)
from sgnb.engine.constraint import MAX_HELD_BACK, Constraint
from sgnb.engine.sampling_params import SamplingParams

if TYPE_CHECKING:
    from sgnb.engine.engine import Engine

# per FSM: state -> bool mask [model_vocab]; dropped with the FSM
_MASKS: weakref.WeakKeyDictionary[TokenFSM, dict[int, torch.Tensor]] = weakref.WeakKeyDictionary()
# per FSM: state -> the largest token distance to acceptance among the states its tokens lead to
_MAX_NEXT_DIST: weakref.WeakKeyDictionary[TokenFSM, dict[int, int]] = weakref.WeakKeyDictionary()


def build_fsm_constraint(params: SamplingParams, schema: object, engine: Engine, max_output_len: int,
                         is_jump_forward: bool, is_drafting: bool) -> FsmConstraint:
    """The request's regex, or its (non-recursive) JSON schema as a regex, compiled to an FSM (cached)."""
    pattern = params.regex if params.regex is not None else schema_to_regex(schema, whitespace=params.json_whitespace)
    vocab = TokenVocab.from_tokenizer(engine.tokenizer, eos_token_ids=engine.eos_ids)
    fsm = compile_regex(pattern, vocab)
    need = int(distances_to_accept(fsm)[fsm.initial_state])
    if need > params.max_new_tokens:
        raise ValueError(f"max_new_tokens={params.max_new_tokens} is too small for this constraint: "
                         f"the shortest valid output takes {need} tokens")
    if need > max_output_len:
        raise ValueError(f"prompt leaves room for only {max_output_len} tokens in the context "
                         f"({engine.max_context_len} tokens), too few for this constraint: the shortest valid "
                         f"output takes {need} tokens")
    return FsmConstraint(fsm, vocab, engine.tokenizer, engine.model_config.vocab_size, is_jump_forward, is_drafting)


class FsmConstraint(Constraint):
    kind = "fsm"

    def __init__(self, fsm: TokenFSM, vocab: TokenVocab, tokenizer: Any, model_vocab_size: int,
                 is_jump_forward: bool, is_drafting: bool = True) -> None:
        super().__init__(vocab, tokenizer, model_vocab_size, fsm.eos_token_ids, is_jump_forward, is_drafting)
        self.fsm = fsm
        self.state = fsm.initial_state

    def allowed_mask(self, num_tokens_left: int | None = None) -> torch.Tensor:
        """With `num_tokens_left`, only tokens after which an accepting state is still reachable within the
        budget: outputs end valid instead of cut off."""
        if num_tokens_left is not None and num_tokens_left - 1 < self._max_next_dist():
            ids = within_budget(self.fsm, self.state, num_tokens_left)
            if ids is not None and ids.size:        # empty: already out of budget, fall back to the FSM alone
                return self._mask_of(torch.from_numpy(ids.astype("int64")))
        masks = _MASKS.setdefault(self.fsm, {})
        mask = masks.get(self.state)
        if mask is None:
            mask = self._mask_of(torch.from_numpy(self.fsm.allowed_token_ids(self.state).astype("int64")))
            masks[self.state] = mask
        return mask

    def _max_next_dist(self) -> int:
        cache = _MAX_NEXT_DIST.setdefault(self.fsm, {})
        value = cache.get(self.state)
        if value is None:
            nxt = self.fsm.allowed_next_states(self.state)
            value = int(distances_to_accept(self.fsm)[nxt].max()) if nxt.size else 0
            cache[self.state] = value
        return value

    @property
    def is_finished(self) -> bool:
        return self.fsm.is_finished(self.state) or self.fsm.num_allowed(self.state) == 0

    @property
    def is_complete(self) -> bool:
        return self.fsm.is_accepting(self.state)

    def _consume(self, token: int) -> None:
        nxt = self.fsm.next_state(self.state, token)
        if nxt < 0:
            raise RuntimeError(f"token {token} is not allowed in FSM state {self.state} (mask not applied)")
        self.state = nxt

    def _state_label(self) -> int:
        return self.state

    def _num_allowed(self) -> int:
        return self.fsm.num_allowed(self.state)

    def _plan_jump(self, context_ids: list[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        plan = plan_jump(self.fsm, self.state, context_ids, self.tokenizer, self.vocab, max_held_back=MAX_HELD_BACK)
        return plan.token_ids, plan.held_back_ids

    def _affordable(self, tokens: list[int], budget: int) -> list[int]:
        """The longest prefix of `tokens` after which the output can still be completed within `budget`."""
        dist = distances_to_accept(self.fsm)
        state, keep = self.state, 0
        for i, token in enumerate(tokens[:max(budget, 0)], start=1):
            state = self.fsm.next_state(state, token)
            if dist[state] <= budget - i:
                keep = i
        return tokens[:keep]

    def _describe(self) -> dict:
        return {"pattern": self.fsm.pattern, "num_states": self.fsm.num_states}
