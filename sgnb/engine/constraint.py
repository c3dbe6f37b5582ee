"""A request's regex / JSON-schema constraint: its FSM state, token mask, jump-forward and trace.

The FSM itself (sgnb.constrained) is plain Python; this wrapper owns the torch masks, cached
per (FSM, state), and records for every token the data the constraint-path widget shows.
"""

from __future__ import annotations

import json
import weakref
from typing import TYPE_CHECKING, Any

import torch

from sgnb.constrained import (TokenFSM, TokenVocab, compile_regex, distances_to_accept, plan_jump, schema_to_regex,
                              within_budget)
from sgnb.engine.sampling_params import SamplingParams

if TYPE_CHECKING:
    from sgnb.engine.engine import Engine
    from sgnb.engine.request import Req

NUM_MASKED_TOP = 5
MAX_HELD_BACK = 4       # trailing forced tokens the retokenization rule may hold back (and so draft) per jump
# per FSM: state -> bool mask [model_vocab]; dropped with the FSM
_MASKS: weakref.WeakKeyDictionary[TokenFSM, dict[int, torch.Tensor]] = weakref.WeakKeyDictionary()
# per FSM: state -> the largest token distance to acceptance among the states its tokens lead to
_MAX_NEXT_DIST: weakref.WeakKeyDictionary[TokenFSM, dict[int, int]] = weakref.WeakKeyDictionary()


def constraint_pattern(params: SamplingParams) -> str:
    """The regex a request is constrained to (its own, or its JSON schema's)."""
    if params.regex is not None:
        return params.regex
    schema = params.json_schema
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise ValueError(f"json_schema is not valid JSON: {exc}") from None
    return schema_to_regex(schema, whitespace=params.json_whitespace)


def build_constraint(params: SamplingParams, engine: Engine, max_output_len: int) -> Constraint:
    """Compile (or fetch from cache) the request's FSM; errors surface at submission, as ValueError.

    max_output_len: the request's output budget (`Req.max_output_len`); a constraint that cannot close
    within it is refused.
    """
    vocab = TokenVocab.from_tokenizer(engine.tokenizer, eos_token_ids=engine.eos_ids)
    fsm = compile_regex(constraint_pattern(params), vocab)
    need = int(distances_to_accept(fsm)[fsm.initial_state])
    if need > params.max_new_tokens:
        raise ValueError(f"max_new_tokens={params.max_new_tokens} is too small for this constraint: "
                         f"the shortest valid output takes {need} tokens")
    if need > max_output_len:
        raise ValueError(f"prompt leaves room for only {max_output_len} tokens in the context "
                         f"({engine.max_context_len} tokens), too few for this constraint: the shortest valid "
                         f"output takes {need} tokens")
    jump = engine.config.jump_forward if params.jump_forward is None else params.jump_forward
    # a draft and the row before it are extended in one chunk, so they must fit one step's budget
    drafting = engine.config.draft_held_back and engine.config.max_prefill_tokens > MAX_HELD_BACK
    return Constraint(fsm, vocab, engine.tokenizer, engine.model_config.vocab_size, jump, drafting)


class Constraint:
    __slots__ = ("fsm", "vocab", "tokenizer", "model_vocab_size", "is_jump_forward", "is_drafting", "state",
                 "trace", "num_jumps", "num_forced_tokens", "num_held_back", "num_drafted", "num_draft_accepted")

    def __init__(self, fsm: TokenFSM, vocab: TokenVocab, tokenizer: Any, model_vocab_size: int,
                 is_jump_forward: bool, is_drafting: bool = True):
        self.fsm = fsm
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.model_vocab_size = model_vocab_size
        self.is_jump_forward = is_jump_forward
        self.is_drafting = is_drafting  # held-back tokens go along with the jump as a draft
        self.state = fsm.initial_state
        self.trace: list[dict] = []
        self.num_jumps = 0
        self.num_forced_tokens = 0
        self.num_held_back = 0          # forced tokens left to the model by the retokenization rule
        self.num_drafted = 0            # held-back tokens computed with their jump, as a draft
        self.num_draft_accepted = 0     # drafted tokens the model picked itself (each saves a forward pass)

    def allowed_mask(self, num_tokens_left: int | None = None) -> torch.Tensor:
        """[model_vocab] bool: the tokens the FSM allows now (EOS only in accepting states).

        With `num_tokens_left` (this token included), only tokens after which an accepting state
        is still reachable within the budget: outputs end valid instead of cut off.
        """
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

    def _mask_of(self, ids: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(self.model_vocab_size, dtype=torch.bool)
        mask[ids[ids < self.model_vocab_size]] = True
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
        """Nothing but EOS can follow, or nothing at all: the request ends here."""
        return self.fsm.is_finished(self.state) or self.fsm.num_allowed(self.state) == 0

    def advance(self, token: int, model_top: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Record a sampled token and move the FSM.

        model_top: the model's own favourites before the mask, (logprobs [k], token ids [k]) as
        `sampler.top_logprobs` gives them for a whole batch at once; the trace keeps those the mask removed.
        """
        step = {"state": self.state, "num_allowed": self.fsm.num_allowed(self.state), "token_id": token,
                "token": self._text(token), "forced": False, "masked_top": []}
        if model_top is not None:
            logps, ids = model_top
            is_allowed = self.allowed_mask()[ids].tolist()
            masked = [(t, lp) for t, lp, ok in zip(ids.tolist(), logps.tolist(), is_allowed) if not ok]
            step["masked_top"] = [[self._text(t), lp] for t, lp in masked[:NUM_MASKED_TOP]]
        self.trace.append(step)
        if token not in self.fsm.eos_token_ids:
            nxt = self.fsm.next_state(self.state, token)
            if nxt < 0:
                raise RuntimeError(f"token {token} is not allowed in FSM state {self.state} (mask not applied)")
            self.state = nxt

    def jump_forward(self, req: Req) -> tuple[list[int], list[int]]:
        """The forced continuation to append now, and the draft after it (both empty when disabled).

        The draft holds the forced tokens the retokenization rule held back: the engine computes them
        in the same extend and keeps each only if the model, sampling at the row before it, picks it
        (`postprocess._sample_round`). The FSM state moves over the forced tokens only.
        """
        if not self.is_jump_forward:
            return [], []
        forced, _ = self.fsm.forced_bytes(self.state)
        if not forced:
            return [], []
        # the prompt's tail counts as context, so the very first jump is retokenized safely too
        plan = plan_jump(self.fsm, self.state, req.input_ids[-8:] + req.output_ids, self.tokenizer, self.vocab,
                         max_held_back=MAX_HELD_BACK)
        self.num_held_back += plan.num_held_back
        drafts = list(plan.held_back_ids) if self.is_drafting else []
        kept = self._affordable(list(plan.token_ids) + drafts, req.max_output_len - len(req.output_ids))
        tokens, drafts = kept[:plan.num_tokens], kept[plan.num_tokens:]
        self.num_drafted += len(drafts)
        if tokens:
            for token in tokens:
                self.trace.append({"state": self.state, "num_allowed": 1, "token_id": token,
                                   "token": self._text(token), "forced": True, "masked_top": []})
                self.state = self.fsm.next_state(self.state, token)
            self.num_jumps += 1
            self.num_forced_tokens += len(tokens)
        return tokens, drafts

    def _affordable(self, tokens: list[int], budget: int) -> list[int]:
        """The longest prefix of `tokens` after which the output can still be completed within `budget`."""
        dist = distances_to_accept(self.fsm)
        state, keep = self.state, 0
        for i, token in enumerate(tokens[:max(budget, 0)], start=1):
            state = self.fsm.next_state(state, token)
            if dist[state] <= budget - i:
                keep = i
        return tokens[:keep]

    @property
    def is_complete(self) -> bool:
        """The output so far is a whole match of the constraint (valid JSON for a schema), not a cut-off prefix."""
        return self.fsm.is_accepting(self.state)

    def summary(self) -> dict:
        return {"pattern": self.fsm.pattern, "is_complete": self.is_complete,
                "num_jumps": self.num_jumps, "num_forced_tokens": self.num_forced_tokens,
                "num_held_back": self.num_held_back, "num_drafted": self.num_drafted,
                "num_draft_accepted": self.num_draft_accepted, "num_states": self.fsm.num_states}

    def _text(self, token: int) -> str:
        return self.tokenizer.decode([token])
