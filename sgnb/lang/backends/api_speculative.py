"""API speculative execution (`@function(num_api_spec_tokens=...)`): fewer calls to API-only endpoints.

Chat models (`ChatSpecTurn`): the gens of one assistant turn, with the constant text between them, are
collected while the interpreter walks the turn and served at the turn's end by ONE call with no stop
strings. The reply is split back into the variables by `match_turn`: constant text must appear verbatim,
and each variable ends at its earliest stop string (or, without one, where the next constant starts).
When the reply does not match, a sampled call is retried (`max_num_tries`; a greedy one is not, it would
give the same reply), then each gen is served by its own call continuing the partial assistant message
(vLLM/SGLang/`sgnb serve` `continue_final_message`), or a clear `SpecMatchError` is raised when the API
cannot continue a partial assistant message.

Completion models (`CompletionSpeculator`): a gen with stop strings asks for `num_api_spec_tokens`
tokens past its first stop; the text after the stop is kept and serves the following gens while the
program's constant text matches it (`fill`), so a run of `"Name:" + gen(stop="\\n") + "\\nAge:" + gen(...)`
costs one call instead of one per gen. A leftover without the gen's stop string is reused only when the
model ended there by itself (finish reason "stop"); otherwise a new call is made.

How the interpreter drives it (one object per program state; neither class is thread-shared):
- chat backend, assistant turn open, `num_api_spec_tokens` set: `turn = ChatSpecTurn(...)` at role begin;
  `turn.add_text(s)` for each constant; `turn.add_gen(name, spec)` for each gen (its value is not known
  yet); at role end `turn.run(backend, ctx)` with `ctx` as at role begin (messages ending with the user
  message) returns `[(name_or_None, text), ...]` in order: append each text to the state and set the
  named variables.
- completion backend: `spec = CompletionSpeculator(num_api_spec_tokens)` per state; every constant
  appended to the state text goes through `spec.fill(text)`; every gen is `spec.gen(backend, ctx, spec)`
  instead of `backend.generate(ctx, spec)`; `spec.reset()` after anything else changes the text (select,
  a non-speculative gen, an image).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sgnb.lang.backends.base import Backend, GenContext, SamplingSpec
from sgnb.lang.backends.errors import SpecMatchError, UnsupportedFeatureError

DEFAULT_MAX_NUM_TRIES = 3


@dataclass(slots=True)
class SpecGen:
    """A gen inside a speculative turn: its variable name and stop strings."""

    name: str
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a speculative gen needs a variable name")
        self.stop = [s for s in (self.stop or []) if s]


SpecPiece = str | SpecGen


def _earliest(text: str, needles: list[str], start: int = 0) -> int:
    """Position of the earliest occurrence of any needle in text[start:], or -1."""
    best = -1
    for needle in needles:
        pos = text.find(needle, start)
        if pos != -1 and (best == -1 or pos < best):
            best = pos
    return best


def match_turn(pieces: list[SpecPiece], completion: str) -> list[tuple[str | None, str]] | None:
    """Split `completion` (one reply for a whole turn) into the turn's pieces; None if it does not match.

    Returns `[(None, constant) | (name, value), ...]` in piece order. Rules:
    - a constant must appear verbatim at the current position, except that constants after the last
      gen may be cut off by the end of the reply (they are the program's text, not the model's);
    - a gen with stop strings ends at the earliest one (the stop string stays in the reply: the next
      constant usually starts with it, as in the program); a gen without stop strings ends where the
      next constant starts; the last gen takes the rest of the reply when its end is not found;
    - anything after the last piece is ignored.
    """
    pos = 0
    out: list[tuple[str | None, str]] = []
    last_gen = max((i for i, p in enumerate(pieces) if isinstance(p, SpecGen)), default=-1)
    for i, piece in enumerate(pieces):
        if isinstance(piece, str):
            if completion.startswith(piece, pos):
                pos += len(piece)
            elif i > last_gen and piece.startswith(completion[pos:]):
                pos = len(completion)  # the reply ended inside trailing constant text
            else:
                return None
            out.append((None, piece))
            continue
        if piece.stop:
            end = _earliest(completion, piece.stop, pos)
        else:
            following = next((p for p in pieces[i + 1 :] if isinstance(p, SpecGen) or p), None)
            end = completion.find(following, pos) if isinstance(following, str) else -1
        if end == -1:
            if i != last_gen:
                return None  # a later gen can only be placed after this one's end
            end = len(completion)
        out.append((piece.name, completion[pos:end]))
        pos = end
    return out


@dataclass(slots=True)
class ChatSpecTurn:
    """One assistant turn of a chat model under API speculative execution."""

    num_api_spec_tokens: int
    max_num_tries: int = DEFAULT_MAX_NUM_TRIES
    pieces: list[SpecPiece] = field(default_factory=list)
    specs: dict[str, SamplingSpec] = field(default_factory=dict)
    num_calls: int = 0  # calls this turn made (for tests and the report)

    def __post_init__(self) -> None:
        if self.num_api_spec_tokens < 1:
            raise ValueError(f"num_api_spec_tokens must be >= 1, got {self.num_api_spec_tokens}")
        if self.max_num_tries < 1:
            raise ValueError(f"max_num_tries must be >= 1, got {self.max_num_tries}")

    def add_text(self, text: str) -> None:
        if text:
            self.pieces.append(text)

    def add_gen(self, name: str, spec: SamplingSpec) -> None:
        if spec.regex is not None or spec.json_schema is not None or spec.choices is not None or spec.dtype is not None:
            raise UnsupportedFeatureError(
                f"gen {name!r}: constrained gens (regex, json_schema, choices, dtype) cannot be speculated; "
                "drop num_api_spec_tokens for this program"
            )
        if spec.n != 1:
            raise UnsupportedFeatureError(f"gen {name!r}: n > 1 cannot be speculated")
        if name in self.specs:
            raise ValueError(f"gen {name!r} appears twice in one speculative assistant turn")
        self.pieces.append(SpecGen(name, list(spec.stop)))
        self.specs[name] = spec

    @property
    def has_gens(self) -> bool:
        return bool(self.specs)

    def call_spec(self) -> SamplingSpec:
        """Sampling settings of the one call: the first gen's, with no stop and the speculative budget."""
        first = next(iter(self.specs.values()))
        return first.replace(stop=[], stop_token_ids=[], max_new_tokens=max(self.num_api_spec_tokens, 1),
                             min_new_tokens=0, return_logprob=False)

    def run(self, backend: Backend, ctx: GenContext) -> list[tuple[str | None, str]]:
        """Serve the turn: `[(None, constant) | (name, value), ...]` in order (constants only if no gens).

        `ctx` is the context at the turn's start: messages ending with the last non-assistant message.
        Greedy calls are tried once (a retry would give the same reply); sampled ones `max_num_tries` times.
        """
        if not self.has_gens:
            return [(None, p) for p in self.pieces if isinstance(p, str)]
        call_spec = self.call_spec()
        num_tries = self.max_num_tries if call_spec.temperature > 0 else 1
        for _ in range(num_tries):
            reply, _meta = backend.generate(ctx, call_spec)
            self.num_calls += 1
            matched = match_turn(self.pieces, str(reply))
            if matched is not None:
                return matched
        return self._one_call_per_gen(backend, ctx)

    def _one_call_per_gen(self, backend: Backend, ctx: GenContext) -> list[tuple[str | None, str]]:
        """Fallback: serve each gen by its own call, continuing the partial assistant message."""
        out: list[tuple[str | None, str]] = []
        partial = ""
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append((None, piece))
                partial += piece
                continue
            sub_ctx = ctx
            if partial:  # an empty assistant message is just the generation prompt: send ctx as is
                messages = [*ctx.messages, {"role": "assistant", "content": partial}]
                sub_ctx = GenContext(text=ctx.text + partial, messages=messages, images=ctx.images,
                                     state_id=ctx.state_id, cur_role="assistant")
            try:
                value, _meta = backend.generate(sub_ctx, self.specs[piece.name])
            except UnsupportedFeatureError as exc:
                raise SpecMatchError(
                    f"API speculative execution: the reply of {backend.get_model_name()} did not follow the "
                    f"assistant turn's format, and the fallback (one call per gen) is not possible: {exc}"
                ) from exc
            self.num_calls += 1
            out.append((piece.name, str(value)))
            partial += str(value)
        return out


class CompletionSpeculator:
    """Text generated ahead for a completion model; serves following gens while the program text matches."""

    __slots__ = ("num_api_spec_tokens", "speculated_text", "is_model_done", "num_calls")

    def __init__(self, num_api_spec_tokens: int) -> None:
        if num_api_spec_tokens < 1:
            raise ValueError(f"num_api_spec_tokens must be >= 1, got {num_api_spec_tokens}")
        self.num_api_spec_tokens = num_api_spec_tokens
        self.speculated_text = ""
        # the call that produced speculated_text ended on its own (EOS), not on its token budget: what is
        # left is everything the model would write, so a gen may take it whole even without a stop string
        self.is_model_done = False
        self.num_calls = 0

    def fill(self, text: str) -> None:
        """The program appended constant text: consume it from the speculation, or drop a mismatch."""
        if not text:
            return
        if self.speculated_text.startswith(text):
            self.speculated_text = self.speculated_text[len(text) :]
        else:
            self.speculated_text = ""

    def reset(self) -> None:
        """Forget the speculation (the state changed in a way fill() does not see: select, image, role...)."""
        self.speculated_text = ""

    def gen(self, backend: Backend, ctx: GenContext, spec: SamplingSpec) -> tuple[str, dict[str, Any]]:
        """The value of one gen: from the speculation when it holds the gen's end, else from a new call."""
        is_constrained = any(x is not None for x in (spec.regex, spec.dtype, spec.choices, spec.json_schema))
        if not spec.stop or spec.n != 1 or spec.return_logprob or is_constrained:
            # nothing to split on (or a gen whose result must come from the server as is): plain call
            self.speculated_text = ""
            self.num_calls += 1
            return backend.generate(ctx, spec)
        cut = self.take(spec.stop)
        if cut is not None:
            return cut, {"speculative": True}
        ahead = spec.replace(stop=[], max_new_tokens=max(spec.max_new_tokens, self.num_api_spec_tokens))
        text, meta = backend.generate(ctx, ahead)
        self.num_calls += 1
        self.speculated_text = str(text)
        self.is_model_done = (meta.get("finish_reason") or {}).get("type") == "stop"
        cut = self.take(spec.stop)
        if cut is None:  # the model ended (or ran out of tokens) before any stop: that is the value
            cut, self.speculated_text = self.speculated_text, ""
        return cut, meta

    def take(self, stop: list[str]) -> str | None:
        """Take the speculation up to its earliest stop string; None when the gen's end is not in it.

        Without a stop string inside, the rest is taken whole only if the model ended there by itself.
        """
        pos = _earliest(self.speculated_text, stop)
        if pos == -1:
            if not (self.speculated_text and self.is_model_done):
                return None
            pos = len(self.speculated_text)
        value = self.speculated_text[:pos]
        self.speculated_text = self.speculated_text[pos:]  # the stop stays: the program's next text starts with it
        return value
