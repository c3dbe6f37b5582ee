"""Grammar constraints (`ebnf`, `lark`, recursive JSON schemas) on llguidance's Earley matcher.

llguidance (a Rust library) compiles a Lark grammar, a GBNF grammar (converted to Lark) or a JSON schema
with `$ref` cycles against the tokenizer, and computes each step's token mask (tens of microseconds on
SmolLM2's 49k vocabulary) and the bytes the grammar forces next. Its tokenizer object takes about a
second to build, so it is built once per (tokenizer, vocabulary size) and compiled grammars are cached
as templates each request deep-copies.

Budget rule: llguidance exposes no distance to an accepting state, so the FSM's exact rule is not
available. Instead, near the end of the budget the constraint searches a short completion from the
current position (`_closing_text`: the forced bytes, else an allowed byte, closers first, bytes chosen
since the last progress last; at most MAX_CLOSING_BYTES), and once that completion needs nearly all the tokens left (all but
its own length again plus CLOSING_MARGIN: one model token can open a structure whose required parts cost
as much again, e.g. an object with required keys), only its next token
(or EOS, where the grammar accepts) stays allowed, and the plan is followed to its end. Outputs close
within the limit whenever the search finds a short enough completion in time (brackets, quotes, required
keys and the like); when it does not, the limit cuts the output and `is_complete` says false.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sgnb.constrained import TokenVocab
from sgnb.constrained.jump_forward import plan_forced
from sgnb.constrained.lark_rules import rules_that_cannot_finish
from sgnb.constrained.schema_refs import can_finish
from sgnb.engine.constraint import MAX_HELD_BACK, Constraint
from sgnb.engine.sampling_params import SamplingParams

if TYPE_CHECKING:
    from sgnb.engine.engine import Engine

NUM_TEMPLATES = 64          # compiled grammars kept per tokenizer
LABEL_CHARS = 16            # output characters a trace step's grammar position shows
# the closing search's byte preferences: closers first, then a digit, a letter, a space, any other byte
CLOSERS = b"\"')]}>"
CLOSING_BYTES = CLOSERS + b"0a ," + bytes(range(256))
MAX_CLOSING_BYTES = 256
CLOSING_WINDOW = 48         # the closing search runs when tokens left <= its last length + this
CLOSING_MARGIN = 8          # steer once the completion needs all but this (plus its own length) of the tokens left


@dataclass(slots=True)
class _TokenizerEntry:
    tokenizer: Any                          # llguidance.LLTokenizer
    token_lens: np.ndarray                  # [n_vocab] int32: byte length of each token (0: special)
    byte_tokens: np.ndarray                 # [256] int64: the single-byte token of each byte (-1: none)
    closing_order: np.ndarray               # the bytes of CLOSING_BYTES that have a token, in that order
    templates: OrderedDict[str, Any]        # grammar (llguidance's JSON form) -> compiled LLMatcher, LRU


_ENTRIES: weakref.WeakKeyDictionary[Any, dict[tuple, _TokenizerEntry]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _llguidance() -> Any:
    try:
        import llguidance
        import llguidance.gbnf_to_lark
        import llguidance.hf
    except ImportError:
        raise ValueError("grammar constraints (ebnf, lark, recursive JSON schemas) need the llguidance package: "
                         "pip install llguidance==1.9.1") from None
    return llguidance


def tokenizer_entry(hf_tokenizer: Any, vocab: TokenVocab, n_vocab: int, eos_ids: tuple[int, ...]) -> _TokenizerEntry:
    """llguidance's tokenizer for `hf_tokenizer`, built once (about a second for 49k tokens) and cached."""
    llg = _llguidance()
    key = (n_vocab, tuple(eos_ids))
    with _LOCK:
        per = _ENTRIES.setdefault(hf_tokenizer, {})
        entry = per.get(key)
        if entry is None:
            tokenizer = llg.hf.from_tokenizer(hf_tokenizer, n_vocab=n_vocab, eos_token=list(eos_ids))
            lens = np.zeros(n_vocab, dtype=np.int32)
            lens[:vocab.vocab_size] = vocab.token_lengths[:n_vocab]
            byte_tokens = np.full(256, -1, dtype=np.int64)
            for token in range(vocab.vocab_size - 1, -1, -1):       # the lowest id wins
                data = vocab.token_bytes[token]
                if data is not None and len(data) == 1:
                    byte_tokens[data[0]] = token
            order = np.array([b for b in dict.fromkeys(CLOSING_BYTES) if byte_tokens[b] >= 0], dtype=np.int64)
            entry = per[key] = _TokenizerEntry(tokenizer, lens, byte_tokens, order, OrderedDict())
    return entry


def _grammar_source(params: SamplingParams, schema: object) -> tuple[str, str, str | None]:
    """(the parameter's name, llguidance's grammar, the Lark text to check for rules that never finish)."""
    llg = _llguidance()
    matcher = llg.LLMatcher
    if params.lark is not None:
        return "lark", matcher.grammar_from_lark(params.lark), params.lark
    if params.ebnf is not None:
        try:
            lark = llg.gbnf_to_lark.any_to_lark(params.ebnf)
        except Exception as exc:     # the converter raises plain exceptions naming the line
            raise ValueError(f"ebnf: invalid grammar: {exc}") from None
        return "ebnf", matcher.grammar_from_lark(lark), lark
    whitespace = params.json_whitespace
    if whitespace == "pretty":
        raise ValueError("json_whitespace='pretty' is not available for recursive JSON schemas (they use the "
                         "grammar path): use 'compact', 'flexible' or a whitespace regex")
    options: dict[str, Any] = {"whitespace_flexible": False}
    if whitespace == "compact":
        options |= {"item_separator": ",", "key_separator": ":"}
    else:
        options["whitespace_pattern"] = "[ ]?" if whitespace == "flexible" else whitespace
    if not can_finish(schema):
        raise ValueError("json_schema: no finite JSON value matches this schema: a required recursion never ends")
    return "json_schema", matcher.grammar_from_json_schema(schema, defaults=options), None


def build_grammar_constraint(params: SamplingParams, schema: object, engine: Engine, is_jump_forward: bool,
                             is_drafting: bool) -> GrammarConstraint:
    """Compile (or fetch) the request's grammar; a bad grammar, or one no output can satisfy, is a ValueError."""
    name, grammar, lark = _grammar_source(params, schema)
    vocab = TokenVocab.from_tokenizer(engine.tokenizer, eos_token_ids=engine.eos_ids)
    n_vocab = max(engine.model_config.vocab_size, vocab.vocab_size)
    entry = tokenizer_entry(engine.tokenizer, vocab, n_vocab, engine.eos_ids)
    with _LOCK:
        template = entry.templates.get(grammar)
        if template is not None:
            entry.templates.move_to_end(grammar)
    if template is None:
        template = _compile(name, grammar, lark, entry)
        with _LOCK:
            entry.templates[grammar] = template
            if len(entry.templates) > NUM_TEMPLATES:
                entry.templates.popitem(last=False)
    text = params.lark or params.ebnf or json.dumps(schema)
    return GrammarConstraint(template.deep_copy(), name, text, vocab, entry, engine.tokenizer,
                             engine.model_config.vocab_size,
                             frozenset(engine.eos_ids), is_jump_forward, is_drafting)


def _compile(name: str, grammar: str, lark: str | None, entry: _TokenizerEntry) -> Any:
    matcher = _llguidance().LLMatcher(entry.tokenizer, grammar, log_level=0)
    if matcher.is_error():      # llguidance's message names the line, column and what it expected
        raise ValueError(f"{name}: invalid grammar: {matcher.get_error()}")
    stuck = rules_that_cannot_finish(lark) if lark is not None else None
    if stuck and stuck[0] == "start":
        raise ValueError(f"{name}: no output can satisfy this grammar: rule 'start' never finishes "
                         f"(rules with no finite expansion: {', '.join(stuck)})")
    if not matcher.is_accepting() and not any(matcher.compute_bitmask()):
        raise ValueError(f"{name}: no output can satisfy this grammar: no token can start it")
    return matcher


def _unpack(bitmask: bytes, size: int) -> np.ndarray:
    """llguidance's bitmask (bit i of little-endian word w: token 32 w + i) -> [size] bool."""
    return np.unpackbits(np.frombuffer(bitmask, dtype=np.uint8), bitorder="little")[:size].view(bool)  # 0/1: no copy


@dataclass(slots=True)
class _MatcherWalk:
    """`plan_forced`'s questions, answered by trying tokens on the matcher and rolling them back."""

    matcher: Any
    token_lens: np.ndarray

    def num_valid(self, token_ids: list[int]) -> int:
        return self.matcher.validate_tokens(token_ids)

    def max_token_lens(self, token_ids: list[int], first: int) -> list[int]:
        m, lens = self.matcher, []
        consumed = first if first and m.consume_tokens(token_ids[:first]) else 0
        try:
            for token in token_ids[first:]:
                allowed = _unpack(m.compute_bitmask(), len(self.token_lens))
                lens.append(int(self.token_lens[allowed].max()) if allowed.any() else 0)
                if not m.consume_token(token):
                    break
                consumed += 1
        finally:
            m.rollback(consumed)
        return lens


class GrammarConstraint(Constraint):
    kind = "grammar"

    def __init__(self, matcher: Any, source: str, grammar: str, vocab: TokenVocab, entry: _TokenizerEntry,
                 tokenizer: Any, model_vocab_size: int, eos_token_ids: frozenset[int], is_jump_forward: bool,
                 is_drafting: bool) -> None:
        super().__init__(vocab, tokenizer, model_vocab_size, eos_token_ids, is_jump_forward, is_drafting)
        self.matcher = matcher          # llguidance.LLMatcher, this request's own copy
        self.source = source            # "lark" | "ebnf" | "json_schema"
        self.grammar = grammar
        self.token_lens = entry.token_lens
        self.byte_tokens = entry.byte_tokens
        self.closing_order = entry.closing_order
        self.text = b""                 # the bytes consumed so far: the trace's grammar position
        self.num_steered = 0            # tokens the budget rule chose (the closing search's)
        self._mask: torch.Tensor | None = None      # the mask at the current position, until it moves
        self._closing: list[int] = []   # the last closing search's tokens still ahead, while followed

    def allowed_mask(self, num_tokens_left: int | None = None) -> torch.Tensor:
        """With `num_tokens_left` near the end of the budget: only the next token of a short completion
        (or EOS where the grammar accepts), once that completion needs nearly all the tokens left."""
        if self._mask is None:
            allowed = _unpack(self.matcher.compute_bitmask(), len(self.token_lens))
            self._mask = torch.from_numpy(allowed[:self.model_vocab_size])
        if num_tokens_left is None or num_tokens_left > len(self._closing) + CLOSING_WINDOW:
            return self._mask
        if self.matcher.is_accepting():     # ending here takes one token: EOS (any of them)
            num_needed, allowed = 1, sorted(t for t in self.eos_token_ids if t < self.model_vocab_size)
        else:
            # a plan being followed stays the plan: searching again at each step could wander ("aaaa...")
            self._closing = self._closing or self._closing_tokens()
            num_needed, allowed = len(self._closing), self._closing[:1]
        if not allowed or 2 * num_needed + CLOSING_MARGIN < num_tokens_left:
            return self._mask
        self.num_steered += 1
        only = torch.zeros_like(self._mask)
        only[allowed] = True
        return only & self._mask

    def _closing_tokens(self) -> list[int]:
        """The tokens of a short completion from here (empty if the search finds none): its text tokenized
        on its own, checked against the grammar (else each byte's own token)."""
        text = self._closing_text()
        if not text:
            return []
        ids = list(self.tokenizer.encode(text.decode("utf-8", errors="ignore"), add_special_tokens=False))
        if not ids or self.matcher.validate_tokens(ids) != len(ids):
            ids = [int(self.byte_tokens[b]) for b in text]
        return ids

    def _closing_text(self) -> bytes:
        """A completion from here to an accepting position, built a byte at a time: the forced bytes, else
        the allowed byte chosen least often since the last forced bytes or closer (so loops like "aaaa" give
        way), first in CLOSING_BYTES order among equals. Empty if none is found within MAX_CLOSING_BYTES."""
        m, out, consumed = self.matcher, bytearray(), 0
        uses = np.zeros(256, dtype=np.int64)    # how often the search chose each byte: repeats go last
        try:
            while not m.is_accepting():
                if len(out) >= MAX_CLOSING_BYTES:
                    return b""
                forced = m.compute_ff_bytes()
                if forced:
                    step = forced
                    uses[:] = 0         # progress: earlier choices may repeat (one key per nested object)
                else:       # the allowed byte chosen least often so far, the first in closing order among those
                    bits = np.frombuffer(m.compute_bitmask(), dtype=np.uint8)
                    tokens = self.byte_tokens[self.closing_order]
                    is_allowed = ((bits[tokens >> 3] >> (tokens & 7)) & 1).astype(bool)
                    if not is_allowed.any():
                        return b""
                    rank = np.where(is_allowed, uses[self.closing_order] * len(tokens) + np.arange(len(tokens)),
                                    np.iinfo(np.int64).max)
                    step = bytes([int(self.closing_order[rank.argmin()])])
                    if step[0] in CLOSERS:      # closers only close: never demoted, and progress like forced bytes
                        uses[:] = 0
                    else:
                        uses[step[0]] += 1
                ids = [int(self.byte_tokens[b]) for b in step]
                if not ids or min(ids) < 0 or m.validate_tokens(ids) != len(ids):
                    return b""
                m.consume_tokens(ids)
                consumed += len(ids)
                out += step
        finally:
            m.rollback(consumed)
        return bytes(out)

    @property
    def is_finished(self) -> bool:
        return self.matcher.is_stopped()

    @property
    def is_complete(self) -> bool:
        return self.matcher.is_accepting()

    def _consume(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise RuntimeError(f"token {token} is not allowed by the grammar (mask not applied): "
                               f"{self.matcher.get_error()}")
        self.text += self.vocab.token_bytes[token] or b""
        self._mask = None
        self._closing = self._closing[1:] if self._closing[:1] == [token] else []

    def _state_label(self) -> str:
        """The end of the text matched so far, then '▸' (and ' ✓' where the grammar could end here)."""
        # only the tail is shown: decoding the whole output at every token would grow with its length
        tail = self.text[-4 * LABEL_CHARS - 4:]
        text = tail.decode("utf-8", errors="replace").replace("\n", "⏎")
        shown = text if len(self.text) <= len(tail) and len(text) <= LABEL_CHARS else "…" + text[-LABEL_CHARS:]
        return f"{shown}▸{' ✓' if self.matcher.is_accepting() else ''}"

    def _num_allowed(self) -> int:
        # the mask is a view of a numpy array: counting there takes microseconds, a torch sum about a millisecond
        return int(np.count_nonzero(self.allowed_mask().numpy()))

    def _plan_jump(self, context_ids: list[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        forced = self.matcher.compute_ff_bytes()
        tokens, held_back, _ = plan_forced(forced, _MatcherWalk(self.matcher, self.token_lens), context_ids,
                                           self.tokenizer, self.vocab, max_held_back=MAX_HELD_BACK)
        return tokens, held_back

    def _affordable(self, tokens: list[int], budget: int) -> list[int]:
        return tokens[:max(budget, 0)]

    def _describe(self) -> dict:
        return {"source": self.source, "grammar": self.grammar, "num_steered": self.num_steered}
