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
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterator

if TYPE_CHECKING:
    from sgnb.lang.chat_template import ChatTemplate
    from sgnb.lang.choices import ChoicesMethod


class BackendError(RuntimeError):
    """A model provider failed (unreachable server, HTTP error, engine error). The message names which."""


class UnsupportedFeatureError(BackendError, ValueError):
    """The program asked a provider for something it cannot do (regex on an API, select on chat-only...)."""


@dataclass(slots=True)
class GenContext:
    """The prompt as the interpreter sees it at the moment of a call.

    text:       the full state text so far (roles rendered with the chat template). Completion backends send this.
    messages:   finished chat messages `[{"role", "content"}]`; when a role is open, its partial content is the
                last entry. Chat backends send these. Image parts appear as `{"type": "image_url", ...}` items
                when the message carries images (OpenAI content-part form); otherwise `content` is a str.
    images:     images referenced in `text`, in order, as given to `sgl.image` (path, URL, bytes or base64 str).
    videos:     `(path, num_frames)` pairs for `sgl.video`.
    state_id:   id of the program state issuing the call (useful for logs and request ids).
    cur_role:   the open role ("system"/"user"/"assistant") or None.
    """

    text: str
    messages: list[dict] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)
    videos: list[tuple[Any, int]] = field(default_factory=list)
    state_id: str = ""
    cur_role: str | None = None


@dataclass(slots=True)
class SamplingSpec:
    """Sampling settings of one `gen`, after merging the program's run() defaults (SGLang's names).

    `max_new_tokens` is `gen(max_tokens=...)`, `min_new_tokens` is `gen(min_tokens=...)`.
    `dtype` is one of int, float, str, bool (or their names); `choices` restricts the output to one of the
    strings. Backends that support regex map both to a regex (`to_engine_params` does it); others handle them.
    """

    max_new_tokens: int = 128
    min_new_tokens: int = 0
    n: int = 1
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    ignore_eos: bool = False
    return_logprob: bool = False
    logprob_start_len: int | None = None
    top_logprobs_num: int = 0
    dtype: Any = None
    regex: str | None = None
    json_schema: str | None = None
    choices: list[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop or [])
        self.stop_token_ids = list(self.stop_token_ids or [])
        if isinstance(self.json_schema, dict):
            self.json_schema = json.dumps(self.json_schema)
        if self.max_new_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {self.max_new_tokens}")
        if self.min_new_tokens < 0:
            raise ValueError(f"min_tokens must be >= 0, got {self.min_new_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        num_constraints = sum(x is not None for x in (self.regex, self.json_schema, self.dtype, self.choices))
        if num_constraints > 1:
            raise ValueError("gen accepts at most one of regex, json_schema, dtype, choices")
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

        dtype/choices become `regex`. `n`, `return_logprob`, `logprob_start_len`, `top_logprobs_num` are
        request-level arguments, not sampling params, and are left out.
        """
        params: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "min_new_tokens": self.min_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
            "ignore_eos": self.ignore_eos,
        }
        if self.stop:
            params["stop"] = list(self.stop)
        if self.stop_token_ids:
            params["stop_token_ids"] = list(self.stop_token_ids)
        regex = self.constraint_regex()
        if regex is not None:
            params["regex"] = regex
        if self.json_schema is not None:
            params["json_schema"] = self.json_schema
        return params


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

    def cache_prefix(self, text: str) -> None:
        """Commit `text` into the provider's prefix cache (before forks, and a batch's shared prefix).
        Providers without a controllable cache do nothing."""

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


def merge_sample_metas(metas: list[dict]) -> dict:
    """meta_info for a gen with n > 1: each sample's meta under "choices", token counts summed."""
    return {
        "choices": metas,
        "prompt_tokens": metas[0].get("prompt_tokens", 0),
        "completion_tokens": sum(m.get("completion_tokens", 0) for m in metas),
        "cached_tokens": sum(m.get("cached_tokens", 0) for m in metas),
    }
