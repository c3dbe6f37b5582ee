"""The backend interface: everything the interpreter needs from a model provider.

A backend turns a prompt (`GenContext`) plus sampling settings (`SamplingSpec`) into text, scores the
choices of a `select`, and optionally commits prefixes into a server-side prefix cache. The interpreter owns
the program structure (roles, forks, variables, API speculative execution); a backend only answers calls.

Implementations: `engine_backend.EngineBackend` (in-process Engine), `runtime_endpoint.RuntimeEndpoint`
(SGLang-native HTTP), `openai.OpenAI` (OpenAI-compatible chat/completions).

Contract summary for implementers:
- `generate` returns `(text, meta_info)`; `text` is what the model produced, stop strings trimmed
  (SGLang semantics: the matched stop string is not part of the text). With `params.n > 1` it returns
  `(list_of_texts, meta_info)` where `meta_info["choices"]` holds one meta dict per sample.
- `meta_info` keys, when the provider knows them: `prompt_tokens`, `completion_tokens`, `cached_tokens`,
  `finish_reason` (`{"type": "stop"|"length"|"abort", ...}`), and with `return_logprob`
  `input_token_logprobs` / `output_token_logprobs` / `input_top_logprobs` / `output_top_logprobs` as
  lists of `(logprob, token_id, token_text)`.
- `generate_stream` yields `(delta_text, meta_info)` pieces; the last piece carries the final meta_info.
- `select` returns a `SelectResult`; backends with token logprobs reuse `sgnb.lang.choices`.
- A chat-only backend sets `is_chat_model = True` and reads `ctx.messages` instead of `ctx.text`.
  For such a backend the interpreter guarantees that `ctx.messages` ends with a non-assistant message
  (each `gen` opens the assistant turn) unless the backend sets `can_continue_final_message = True`
  (then a partial assistant message may come last, to be continued), and it implements API speculative execution
  (`@function(num_api_spec_tokens=...)`) itself: one `generate` call with `stop=[]` and
  `max_new_tokens=num_api_spec_tokens` per assistant turn, split into the turn's variables afterwards.
  Completion backends get the same treatment per run of `gen`s: generation ahead past the first stop.
- Errors: raise `BackendError` (or a subclass) with a message naming the server/model and the problem;
  raise `UnsupportedFeatureError` for what a provider cannot do (e.g. regex on the OpenAI API).
- `abort(state_ids)` (optional) aborts a stopped program's requests; without it Ctrl-C stops the program but
  its in-flight calls run to their end.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields, make_dataclass
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterator

from sgnb.engine.sampling_params import CONSTRAINT_FIELDS, SAMPLING_FIELDS, check_value
from sgnb.lang.backends.errors import UnsupportedFeatureError

if TYPE_CHECKING:
    from sgnb.lang.chat_template import ChatTemplate
    from sgnb.lang.choices import ChoicesMethod


@dataclass(slots=True)
class GenContext:
    """The prompt as the interpreter sees it at the moment of a call.

    text:       the full state text so far (roles rendered with the chat template). Completion backends send this.
    messages:   finished chat messages `[{"role", "content"}]`; when a role is open, its partial content is the
                last entry. Chat backends send these. Image parts appear as `{"type": "image_url", ...}` items
                when the message carries images (OpenAI content-part form); otherwise `content` is a str.
    images:     the images whose placeholders (`ChatTemplate.image_token`) sit in `text`, in order, as given to
                `sgl.image` (path, URL, bytes, base64 str or PIL image); an `sgl.video` adds its sampled frames.
    state_id:   id of the program state issuing the call (useful for logs and request ids).
    cur_role:   the open role ("system"/"user"/"assistant") or None.
    """

    text: str
    messages: list[dict] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)
    state_id: str = ""
    cur_role: str | None = None


class _SamplingSpecBase:
    """The methods of `SamplingSpec` (its fields are generated below)."""

    __slots__ = ()

    def __post_init__(self) -> None:
        for f in SAMPLING_FIELDS:  # each engine field alone; rules between them wait for the engine
            setattr(self, f.name, check_value(f.name, getattr(self, f.name), shown_as=f.gen_name))
        if isinstance(self.json_schema, dict):
            self.json_schema = json.dumps(self.json_schema)
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n!r}")
        if not isinstance(self.return_logprob, bool):
            raise ValueError(f"return_logprob must be true or false, got {self.return_logprob!r}")
        if self.logprob_start_len is not None and not isinstance(self.logprob_start_len, int):
            raise ValueError(f"logprob_start_len must be an integer or None, got {self.logprob_start_len!r}")
        self.top_logprobs_num = self.top_logprobs_num or 0
        if not isinstance(self.top_logprobs_num, int) or self.top_logprobs_num < 0:
            raise ValueError(f"top_logprobs_num must be an integer >= 0, got {self.top_logprobs_num!r}")
        constraints = (*CONSTRAINT_FIELDS, "dtype", "choices")
        if sum(getattr(self, name) is not None for name in constraints) > 1:
            raise ValueError(f"gen accepts at most one of {', '.join(constraints)}")
        if self.choices is not None and len(self.choices) == 0:
            raise ValueError("gen(choices=...) needs at least one choice")
        if self.dtype is not None and dtype_name(self.dtype) is None:
            raise ValueError(f"gen(dtype=...) must be one of int, float, str, bool; got {self.dtype!r}")

    def replace(self, **changes: Any) -> SamplingSpec:
        """A copy with some fields changed (validated again)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["stop"] = list(self.stop)
        values["stop_token_ids"] = list(self.stop_token_ids)
        values.update(changes)
        return SamplingSpec(**values)

    def constraint_regex(self) -> str | None:
        """The regex implied by `regex`, `dtype` or `choices` (None without one); json_schema stays separate."""
        if self.regex is not None:
            return self.regex
        if self.dtype is not None:
            from sgnb.constrained import type_to_regex

            return type_to_regex(dtype_name(self.dtype))
        if self.choices is not None:
            from sgnb.constrained import choices_to_regex

            return choices_to_regex(list(self.choices))
        return None

    def to_engine_params(self) -> dict[str, Any]:
        """SGLang `sampling_params` (one sample): what `Engine.generate` and SGLang's `/generate` accept.

        Fields left at the engine's default are left out, except `max_new_tokens` and `temperature`
        (a server may default them differently). dtype/choices become `regex`.
        """
        params = {f.name: getattr(self, f.name) for f in SAMPLING_FIELDS
                  if f.name in ("max_new_tokens", "temperature") or getattr(self, f.name) != f.default}
        regex = self.constraint_regex()
        if regex is not None:
            params["regex"] = regex
        return params


#: the language's own fields, after the engine's: request-level options (`n`, logprobs) and the gen
#: constraints only the language has (`dtype`, `choices`), as (name, type, default)
LANG_FIELDS: tuple[tuple[str, Any, Any], ...] = (
    ("n", int, 1),
    ("return_logprob", bool, False),
    ("logprob_start_len", int | None, None),
    ("top_logprobs_num", int, 0),
    ("dtype", Any, None),
    ("choices", list[str] | None, None),
)

#: Sampling settings of one `gen`, after merging the program's run() defaults: every engine sampling field
#: (`sgnb.engine.sampling_params.SAMPLING_FIELDS`, SGLang's names) and then `LANG_FIELDS`.
#: `max_new_tokens` is `gen(max_tokens=...)`, `min_new_tokens` is `gen(min_tokens=...)`; 0 max_new_tokens
#: only commits the prompt to the cache. Backends that support regex map dtype and choices to a regex
#: (`to_engine_params` does it); others handle them.
SamplingSpec = make_dataclass(
    "SamplingSpec",
    [(f.name, Any, field(default_factory=list) if isinstance(f.default, list) else field(default=f.default))
     for f in SAMPLING_FIELDS] + [(name, kind, field(default=default)) for name, kind, default in LANG_FIELDS],
    bases=(_SamplingSpecBase,),
    namespace={"__module__": __name__, "__doc__": "Sampling settings of one `gen` (see `LANG_FIELDS`)."},
    slots=True,
)


_DTYPE_NAMES: dict[Any, str] = {
    int: "int", "int": "int", float: "float", "float": "float",
    str: "str", "str": "str", "string": "str", bool: "bool", "bool": "bool",
}


def dtype_name(dtype: Any) -> str | None:
    """'int' | 'float' | 'str' | 'bool' for a supported gen dtype, else None."""
    try:
        return _DTYPE_NAMES.get(dtype)
    except TypeError:  # unhashable
        return None


@dataclass(slots=True)
class SelectResult:
    """The outcome of a `select`: the chosen string and per-choice scores.

    meta_info: `normalized_prompt_logprobs` (one float per choice), `input_token_logprobs` (per choice, the
    scored tokens as `(logprob, token_id, token_text)`), and `unconditional_token_logprobs` when the
    method needed them. Backends may add `prompt_tokens`, `cached_tokens`.
    """

    decision: str
    meta_info: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """What the interpreter needs from a model provider. Implementations must be thread-safe:
    several program states (threads) call one backend concurrently."""

    #: gens are sent as chat messages (`ctx.messages`) rather than raw text (`ctx.text`).
    is_chat_model: bool = False
    #: a chat backend that can continue a partial assistant message (vLLM/SGLang `continue_final_message`)
    can_continue_final_message: bool = False

    @abstractmethod
    def get_chat_template(self) -> ChatTemplate:
        """Role begin/end strings used to render `system/user/assistant` into the state text."""

    def get_model_name(self) -> str:
        return type(self).__name__

    @abstractmethod
    def generate(self, ctx: GenContext, params: SamplingSpec) -> tuple[str | list[str], dict]:
        """Continue `ctx`; return `(text, meta_info)` (a list of texts when `params.n > 1`)."""

    def generate_stream(self, ctx: GenContext, params: SamplingSpec) -> Iterator[tuple[str, dict]]:
        """Continue `ctx`, yielding `(delta_text, meta_info)`. Default: one piece from `generate`."""
        text, meta = self.generate(ctx, params)
        if isinstance(text, list):
            raise UnsupportedFeatureError(f"{self.get_model_name()}: streaming does not support n > 1")
        yield text, meta

    @abstractmethod
    def select(
        self, ctx: GenContext, choices: list[str], temperature: float, choices_method: ChoicesMethod
    ) -> SelectResult:
        """Pick one of `choices` as the continuation of `ctx` (see `sgnb.lang.choices`)."""

    def cache_prefix(self, text: str, images: Sequence[Any] = ()) -> None:
        """Commit `text` (with the `images` whose placeholders it holds) into the provider's prefix cache
        (before forks, and a batch's shared prefix). Providers without a controllable cache do nothing."""

    def flush_cache(self) -> None:
        """Drop the provider's prefix cache, when it has one."""

    def shutdown(self) -> None:
        """Release resources (engine, HTTP sessions). Further calls are errors."""

    # Optional hooks with safe defaults.
    def begin_program(self, state_id: str) -> None:
        """Called when a program state starts executing."""

    def end_program(self, state_id: str) -> None:
        """Called when a program state finishes (normally or with an error)."""

    def abort(self, state_ids: Collection[str]) -> int | None:
        """Abort the running requests made for these program states (`GenContext.state_id`) and refuse their
        new ones; returns how many were aborted. Called when Ctrl-C stops a program (`sgnb.lang.interrupt`).
        Default: None, the provider cannot abort (the HTTP backends: their calls finish in the background)."""
        return None

    def get_usage(self) -> dict[str, int]:
        """Token usage accounted so far (`prompt_tokens`, `completion_tokens`, `num_calls`); {} if unknown."""
        return {}


#: signature of a function-style chat template renderer (messages -> str)
MessagesRenderer = Callable[[list[dict]], str]


def common_prefix_len(a: Sequence, b: Sequence) -> int:
    """Number of leading items `a` and `b` share (token ids, strings, ...)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def generate_answer(result: dict | list[dict], check: Callable[[dict], None]) -> tuple[str | list[str], dict]:
    """`Backend.generate`'s answer from engine-shaped results (`{"text", "meta_info"}`): one result (n == 1),
    or one per sample, whose meta_infos go under "choices" with the token counts summed.
    `check(result)` runs on each first (raise on an abort, account the usage)."""
    if isinstance(result, dict):
        check(result)
        return result["text"], dict(result["meta_info"])
    for r in result:
        check(r)
    metas = [dict(r["meta_info"]) for r in result]
    return [r["text"] for r in result], {
        "choices": metas,
        "prompt_tokens": metas[0].get("prompt_tokens", 0),
        "completion_tokens": sum(m.get("completion_tokens", 0) for m in metas),
        "cached_tokens": sum(m.get("cached_tokens", 0) for m in metas),
    }
