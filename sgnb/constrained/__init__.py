"""Constrained decoding: regex / JSON schema -> byte DFA -> token index, with jump-forward.

Plain Python + numpy + interegular (no torch). The engine's sampler drives a `TokenFSM`:

    vocab = TokenVocab.from_tokenizer(hf_tokenizer)          # cached per tokenizer
    fsm = compile_regex(schema_to_regex(schema), vocab)      # cached in memory and on disk
    fsm.allowed_token_ids(state) / fsm.next_state(state, token) / fsm.forced_bytes(state)
"""

from __future__ import annotations

from sgnb.constrained.budget import distances_to_accept, within_budget
from sgnb.constrained.errors import ConstraintError
from sgnb.constrained.json_schema import schema_to_regex
from sgnb.constrained.jump_forward import JumpPlan, plan_jump
from sgnb.constrained.token_fsm import TokenFSM, clear_memory_cache, compile_regex
from sgnb.constrained.type_regex import choices_to_regex, type_to_regex
from sgnb.constrained.vocab import TokenVocab

__all__ = [
    "ConstraintError",
    "JumpPlan",
    "TokenFSM",
    "TokenVocab",
    "choices_to_regex",
    "clear_memory_cache",
    "compile_regex",
    "distances_to_accept",
    "plan_jump",
    "schema_to_regex",
    "type_to_regex",
    "within_budget",
]
