"""A request's output constraint: one interface over our compressed FSM and the grammar engine.

`build_constraint` picks the implementation per request: a regex or a non-recursive JSON schema gets our
FSM (`fsm_constraint.FsmConstraint`: precomputed masks, exact budget rule); a recursive JSON schema and
`ebnf` / `lark` grammars get llguidance (`grammar_constraint.GrammarConstraint`). The engine (sampler,
postprocess, scheduler) sees only `Constraint`: the allowed-token mask, advance, jump-forward with its
draft, whether the output is finished / complete, the summary and the per-token trace.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import torch

from sgnb.constrained.schema_refs import is_recursive
from sgnb.engine.sampling_params import SamplingParams

if TYPE_CHECKING:
    from sgnb.engine.engine import Engine
    from sgnb.engine.request import Req

NUM_MASKED_TOP = 5
MAX_HELD_BACK = 4       # trailing forced tokens the retokenization rule may hold back (and so draft) per jump


def load_schema(params: SamplingParams) -> object:
    """The request's JSON schema as an object (a JSON string is parsed)."""
    schema = params.json_schema
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise ValueError(f"json_schema is not valid JSON: {exc}") from None
    return schema


def build_constraint(params: SamplingParams, engine: Engine, max_output_len: int) -> Constraint:
    """Compile (or fetch from cache) the request's constraint; errors surface at submission, as ValueError.

    max_output_len: the request's output budget (`Req.max_output_len`); a constraint that cannot close
    within it is refused.
    """
    jump = engine.config.jump_forward if params.jump_forward is None else params.jump_forward
    # a draft and the row before it are extended in one chunk, so they must fit one step's budget
    drafting = engine.config.draft_held_back and engine.config.max_prefill_tokens > MAX_HELD_BACK
    schema = load_schema(params) if params.json_schema is not None else None
    if params.ebnf is not None or params.lark is not None or (schema is not None and is_recursive(schema)):
        from sgnb.engine.grammar_constraint import build_grammar_constraint

        return build_grammar_constraint(params, schema, engine, jump, drafting)
    from sgnb.engine.fsm_constraint import build_fsm_constraint

    return build_fsm_constraint(params, schema, engine, max_output_len, jump, drafting)


class Constraint(ABC):
    """One request's constraint state. Subclasses say what is allowed; this class keeps the trace and the
    jump-forward bookkeeping both share."""

    kind: str           # "fsm" | "grammar": meta_info["constraint"]["kind"]

    def __init__(self, vocab: Any, tokenizer: Any, model_vocab_size: int, eos_token_ids: frozenset[int],
                 is_jump_forward: bool, is_drafting: bool) -> None:
        self.vocab = vocab                      # sgnb.constrained.TokenVocab: token bytes for jump plans
        self.tokenizer = tokenizer
        self.model_vocab_size = model_vocab_size
        self.eos_token_ids = eos_token_ids      # sampled at the end, never advanced over
        self.is_jump_forward = is_jump_forward
        self.is_drafting = is_drafting          # held-back tokens go along with the jump as a draft
        self.trace: list[dict] = []
        self.num_jumps = 0
        self.num_forced_tokens = 0
        self.num_held_back = 0          # forced tokens left to the model by the retokenization rule
        self.num_drafted = 0            # held-back tokens computed with their jump, as a draft
        self.num_draft_accepted = 0     # drafted tokens the model picked itself (each saves a forward pass)

    # --- what each implementation provides ------------------------------------------------
    @abstractmethod
    def allowed_mask(self, num_tokens_left: int | None = None) -> torch.Tensor:
        """[model_vocab] bool: the tokens allowed now (EOS only where the output is complete).

        num_tokens_left: the output budget left, this token included; near its end the mask steers the
        output to a complete one as far as the implementation can tell.
        """

    @property
    @abstractmethod
    def is_finished(self) -> bool:
        """Nothing but EOS can follow, or nothing at all: the request ends here."""

    @property
    @abstractmethod
    def is_complete(self) -> bool:
        """The output so far is a whole match (valid JSON for a schema), not a cut-off prefix."""

    @abstractmethod
    def _consume(self, token: int) -> None:
        """Move over one allowed, non-EOS token."""

    @abstractmethod
    def _state_label(self) -> int | str:
        """Where the constraint stands, for the trace: an FSM state, or a short grammar position."""

    @abstractmethod
    def _num_allowed(self) -> int:
        """How many tokens are allowed now (budget aside)."""

    @abstractmethod
    def _plan_jump(self, context_ids: list[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The forced tokens to append after `context_ids` (prompt tail + output) and the held-back tokens
        after them (`sgnb.constrained.plan_forced`'s rule); both empty when nothing is forced."""

    @abstractmethod
    def _affordable(self, tokens: list[int], budget: int) -> list[int]:
        """The longest prefix of `tokens` worth appending within `budget` tokens of output."""

    @abstractmethod
    def _describe(self) -> dict:
        """The implementation's own summary entries."""

    # --- shared ---------------------------------------------------------------------------
    def advance(self, token: int, model_top: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Record a sampled token and move over it.

        model_top: the model's own favourites before the mask, (logprobs [k], token ids [k]) as
        `sampler.top_logprobs` gives them for a whole batch at once; the trace keeps those the mask removed.
        """
        step = {"state": self._state_label(), "num_allowed": self._num_allowed(), "token_id": token,
                "token": self._text(token), "forced": False, "masked_top": []}
        if model_top is not None:
            logps, ids = model_top
            is_allowed = self.allowed_mask()[ids].tolist()
            masked = [(t, lp) for t, lp, ok in zip(ids.tolist(), logps.tolist(), is_allowed) if not ok]
            step["masked_top"] = [[self._text(t), lp] for t, lp in masked[:NUM_MASKED_TOP]]
        self.trace.append(step)
        if token not in self.eos_token_ids:
            self._consume(token)

    def jump_forward(self, req: Req) -> tuple[list[int], list[int]]:
        """The forced continuation to append now, and the draft after it (both empty when disabled).

        The draft holds the forced tokens the retokenization rule held back: the engine computes them
        in the same extend and keeps each only if the model, sampling at the row before it, picks it
        (`postprocess._sample_round`). The constraint moves over the forced tokens only.
        """
        if not self.is_jump_forward:
            return [], []
        # the prompt's tail counts as context, so the very first jump is retokenized safely too
        planned, held_back = self._plan_jump(req.input_ids[-8:] + req.output_ids)
        self.num_held_back += len(held_back)
        drafts = list(held_back) if self.is_drafting else []
        kept = self._affordable(list(planned) + drafts, req.max_output_len - len(req.output_ids))
        tokens, drafts = kept[:len(planned)], kept[len(planned):]
        self.num_drafted += len(drafts)
        for token in tokens:
            self.trace.append({"state": self._state_label(), "num_allowed": 1, "token_id": token,
                               "token": self._text(token), "forced": True, "masked_top": []})
            self._consume(token)
        if tokens:
            self.num_jumps += 1
            self.num_forced_tokens += len(tokens)
        return tokens, drafts

    def summary(self) -> dict:
        return {"kind": self.kind, "is_complete": self.is_complete, "num_jumps": self.num_jumps,
                "num_forced_tokens": self.num_forced_tokens, "num_held_back": self.num_held_back,
                "num_drafted": self.num_drafted, "num_draft_accepted": self.num_draft_accepted,
                **self._describe()}

    def _mask_of(self, ids: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(self.model_vocab_size, dtype=torch.bool)
        mask[ids[ids < self.model_vocab_size]] = True
        return mask

    def _text(self, token: int) -> str:
        return self.tokenizer.decode([token])
