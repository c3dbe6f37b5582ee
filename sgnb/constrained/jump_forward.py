"""Jump-forward: append a forced string as tokens, with retokenization that keeps boundaries safe.

When the FSM's state has a singular path (`TokenFSM.forced_bytes`), every continuation starts
with the same bytes, so they can be appended and prefilled in one extend step instead of
decoded token by token. How those bytes are split into tokens matters: tokenizing the
forced text alone gives boundaries the model never saw (SGLang removed jump-forward after
such corruptions). The plan here:

1. Tokenize the tail of the existing output together with the forced text. Already emitted
   tokens are never changed: if no token boundary falls exactly at the end of the existing
   output (a vocabulary token would merge across it), nothing is jumped and the model
   decodes the next token itself.
2. The forced tokens are the joint tokenization after that boundary (bytes round-trip
   checked), truncated where the forced bytes end inside a UTF-8 character.
3. Hold back trailing forced tokens: among the last `max_held_back` tokens, from the first
   one whose start state allows a token longer than the rest of the forced text (so a
   longer token could merge across the end boundary while still being legal), all are
   left to the model's own choice. The plan names them (`held_back_ids`): the engine may
   compute them with the jump as a draft and keep each only where the model, sampling at
   the row before it, picks that very token (see `sgnb.engine.postprocess`).
4. Every appended token is checked against the constraint; the plan carries the state after them.

`plan_forced` is the rule itself, for any constraint that can answer a `ForcedWalk`'s two questions
(the FSM here, the grammar matcher in `sgnb.engine.grammar_constraint`); `plan_jump` applies it to an FSM.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sgnb.constrained.token_fsm import TokenFSM
from sgnb.constrained.vocab import TokenVocab


@dataclass(frozen=True, slots=True)
class JumpPlan:
    """What to append for a jump-forward from one FSM state.

    token_ids: the forced tokens to append (possibly empty).
    num_held_back: forced tokens left to the model's choice by the boundary rule.
    held_back_ids: those tokens (the joint tokenization's), a draft the model may confirm.
    forced_bytes: the whole singular path from the state.
    end_state: the FSM state after token_ids (the start state when nothing is appended).
    reason: why not all forced bytes are appended ("" when all are).
    """

    token_ids: tuple[int, ...]
    num_held_back: int
    forced_bytes: bytes
    end_state: int
    reason: str = ""
    held_back_ids: tuple[int, ...] = ()

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


def _tail(output_ids: Sequence[int], vocab: TokenVocab, tail_tokens: int) -> list[int]:
    """Last tokens of the output, starting after any special token and at a character start."""
    tail = list(output_ids[-tail_tokens:]) if tail_tokens > 0 else []
    for i in range(len(tail) - 1, -1, -1):
        if not vocab.token_bytes[tail[i]]:
            tail = tail[i + 1 :]
            break
    while tail and 0x80 <= vocab.token_bytes[tail[0]][0] <= 0xBF:  # continuation byte: mid-character
        tail = tail[1:]
    return tail


class ForcedWalk(Protocol):
    """What the plan asks of a constraint (an FSM state, or a grammar matcher's position) about forced tokens."""

    def num_valid(self, token_ids: list[int]) -> int:
        """How many leading tokens of `token_ids` the constraint accepts, one after the other."""

    def max_token_lens(self, token_ids: list[int], first: int) -> list[int]:
        """For each token j >= first (all valid): the longest legal token's byte length before token j."""


@dataclass(frozen=True, slots=True)
class _FsmWalk:
    fsm: TokenFSM
    state: int

    def num_valid(self, token_ids: list[int]) -> int:
        state = self.state
        for i, token in enumerate(token_ids):
            state = self.fsm.next_state(state, token)
            if state < 0:
                return i
        return len(token_ids)

    def max_token_lens(self, token_ids: list[int], first: int) -> list[int]:
        state = self.fsm.advance_tokens(self.state, token_ids[:first]) if first else self.state
        lens = []
        for token in token_ids[first:]:
            lens.append(self.fsm.max_token_len(state))
            state = self.fsm.next_state(state, token)
        return lens


def plan_jump(fsm: TokenFSM, state: int, output_ids: Sequence[int], tokenizer, vocab: TokenVocab, *,
              max_held_back: int = 4, tail_tokens: int = 8) -> JumpPlan:
    """Plan the jump-forward from `state`, given the request's output token ids so far.

    tokenizer: the Hugging Face tokenizer (its `encode` retokenizes the joint text).
    """
    forced, _ = fsm.forced_bytes(state)
    token_ids, held_back, reason = plan_forced(forced, _FsmWalk(fsm, state), output_ids, tokenizer, vocab,
                                               max_held_back=max_held_back, tail_tokens=tail_tokens)
    end_state = fsm.advance_tokens(state, list(token_ids)) if token_ids else state
    return JumpPlan(token_ids, len(held_back), forced, end_state, reason, held_back)


def plan_forced(forced: bytes, walk: ForcedWalk, output_ids: Sequence[int], tokenizer, vocab: TokenVocab, *,
                max_held_back: int = 4, tail_tokens: int = 8) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    """The tokens to append for `forced` bytes after `output_ids`, the held-back tokens after them, and why
    not all forced bytes are appended ("" when all are). `walk` checks the tokens against the constraint."""
    if max_held_back < 0:
        raise ValueError(f"max_held_back must be >= 0, got {max_held_back}")
    if not forced:
        return (), (), "no forced bytes"

    tail = _tail(output_ids, vocab, tail_tokens)
    tail_bytes = vocab.decode_bytes(tail)
    joint = tail_bytes + forced
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(joint, final=False)  # drops an unfinished char
    except UnicodeDecodeError:
        return (), (), "output tail and forced bytes are not valid UTF-8"
    usable = len(text.encode("utf-8")) - len(tail_bytes)
    if usable <= 0:
        return (), (), "forced bytes end inside a UTF-8 character"

    ids = list(tokenizer.encode(text, add_special_tokens=False))
    pieces = [vocab.token_bytes[t] if 0 <= t < vocab.vocab_size else None for t in ids]
    if any(p is None for p in pieces) or b"".join(pieces) != text.encode("utf-8"):  # type: ignore[arg-type]
        return (), (), "retokenization does not round-trip to the same bytes"

    # the joint tokenization must have a boundary exactly at the end of the existing output
    offset, first = 0, None
    for i, piece in enumerate(pieces):
        if offset == len(tail_bytes):
            first = i
            break
        offset += len(piece)  # type: ignore[arg-type]
        if offset > len(tail_bytes):
            break
    if first is None:
        return (), (), "a token would merge across the end of the existing output"

    forced_ids = ids[first:]
    num_forced = walk.num_valid(forced_ids)          # a token not allowed at token level: stop before it
    rejected = num_forced < len(forced_ids)
    forced_ids = forced_ids[:num_forced]
    starts, position = [], 0
    for piece in pieces[first:first + num_forced]:
        starts.append(position)
        position += len(piece)  # type: ignore[arg-type]
    keep = num_forced
    check_from = max(0, num_forced - max_held_back)
    for j, longest in enumerate(walk.max_token_lens(forced_ids, check_from), start=check_from):
        if longest > position - starts[j]:  # a legal token reaches past the end
            keep = j
            break
    reason = ""
    if keep < num_forced:
        reason = "held back tokens a longer legal token could merge across the end"
    elif rejected:
        reason = "a retokenized forced token is not allowed by the constraint"
    elif usable < len(forced):
        reason = "forced bytes end inside a UTF-8 character"
    return tuple(forced_ids[:keep]), tuple(forced_ids[keep:]), reason
