"""`OpenAI(model)`: a backend for OpenAI-compatible APIs (OpenAI, vLLM, SGLang, llama.cpp server, `sgnb serve`).

Chat models get `ctx.messages` on `/chat/completions`; completion models get `ctx.text` on `/completions`.
A message with images (`sgl.image`, or the frames of `sgl.video`) carries them as `image_url` content parts
(data URLs) between its text parts, the placeholder text left out; a completion model refuses images.
Talks HTTP with httpx (the `openai` package is not needed). Every call's token usage is added to
`backend.token_usage` (`prompt_tokens`, `completion_tokens`, `num_calls`).

What an API cannot do is a clear `UnsupportedFeatureError`:
- regex / dtype / choices constraints (unless `regex_field=` names the server's extension, e.g. "regex"
  for SGLang and `sgnb serve`); `json_schema` is sent as the standard `response_format`; grammars go only
  to such a server (`regex_field` set), as SGLang's `ebnf` field or `sgnb serve`'s `lark`;
- `select` on a chat model (chat APIs do not return the prompt's token logprobs). On a completion model it
  scores the choices with one `echo` + `logprobs` + `max_tokens=0` request, which vLLM, SGLang and
  `sgnb serve` answer; a server that refuses gets its own message quoted.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass
from typing import Any, Iterator
from urllib.parse import urlparse

from sgnb.engine.sampling_params import CONSTRAINT_FIELDS, SAMPLING_FIELDS
from sgnb.lang.backends.base import (
    Backend,
    common_prefix_len,
    GenContext,
    SamplingSpec,
    SelectResult,
)
from sgnb.lang.backends.errors import BackendError, HTTPStatusError, UnsupportedFeatureError
from sgnb.lang.backends.http_json import JSONClient
from sgnb.lang.chat_template import DEFAULT_TEMPLATE, ChatTemplate, get_chat_template
from sgnb.lang.choices import ChoicesMethod

OPENAI_BASE_URL = "https://api.openai.com/v1"
# OpenAI models that only offer the completions endpoint; everything else defaults to chat.
_COMPLETION_ONLY_MODELS = ("gpt-3.5-turbo-instruct", "davinci-002", "babbage-002")
_ALWAYS_SENT = ("max_new_tokens", "temperature", "top_p")   # APIs' defaults for these differ from SGLang's
_FINISH_REASONS = {"stop": "stop", "length": "length", "eos": "stop"}


@dataclass(slots=True)
class TokenUsage:
    """Tokens billed so far: what the API reported in each answer's `usage`, and the number of calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    num_calls: int = 0

    def reset(self) -> None:
        self.prompt_tokens = self.completion_tokens = self.num_calls = 0


def _normalize_base_url(base_url: str) -> str:
    base_url = base_url.rstrip("/")
    if urlparse(base_url).path in ("", "/"):
        base_url += "/v1"  # "http://host:port" means the usual OpenAI-compatible root
    return base_url



class OpenAI(Backend):
    """Backend for an OpenAI-compatible endpoint.

    model_name:     the model id the server knows (`/v1/models`).
    base_url:       API root, default `$OPENAI_BASE_URL` or OpenAI's; "http://host:port" gets "/v1" appended.
    api_key:        default `$OPENAI_API_KEY` (required for api.openai.com only).
    is_chat_model:  chat (messages) or completions (text); default: chat, except OpenAI's completion models.
    chat_template:  how roles are written into the state text (a `ChatTemplate` or a built-in name). It is
                    what a completion model sees, so give the model's own (e.g. "chatml" for SmolLM2).
    regex_field:    the request field of the server's regex extension ("regex" for SGLang and `sgnb serve`);
                    None: regex, dtype, choices and grammar (ebnf, lark) gens raise `UnsupportedFeatureError`.
    can_continue_final_message: the server accepts vLLM/SGLang's `continue_final_message` (needed to
                    continue a partial assistant message); default: any server but api.openai.com.
    """

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        is_chat_model: bool | None = None,
        chat_template: ChatTemplate | str | None = None,
        regex_field: str | None = None,
        can_continue_final_message: bool | None = None,
        timeout: float = 600.0,
    ) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise ValueError(f"model_name must be a non-empty string, got {model_name!r}")
        self.model_name = model_name
        self.base_url = _normalize_base_url(base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL)
        is_openai = urlparse(self.base_url).hostname == "api.openai.com"
        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if is_openai and not api_key:
            raise ValueError("OpenAI's API needs an api_key (pass api_key= or set OPENAI_API_KEY)")
        if is_chat_model is None:
            is_chat_model = not any(model_name.startswith(m) for m in _COMPLETION_ONLY_MODELS)
        self.is_chat_model = bool(is_chat_model)
        if isinstance(chat_template, str):
            chat_template = get_chat_template(chat_template)
        self._chat_template = chat_template or DEFAULT_TEMPLATE
        self.regex_field = regex_field
        if can_continue_final_message is None:
            can_continue_final_message = not is_openai
        self.can_continue_final_message = can_continue_final_message
        self._http = JSONClient(self.base_url, api_key=api_key, timeout=timeout, what="OpenAI-compatible server")
        self.token_usage = TokenUsage()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- info
    def get_model_name(self) -> str:
        return self.model_name

    def get_chat_template(self) -> ChatTemplate:
        return self._chat_template

    def get_usage(self) -> dict[str, int]:
        with self._lock:
            return asdict(self.token_usage)

    def _account(self, usage: dict[str, Any] | None) -> None:
        with self._lock:
            self.token_usage.num_calls += 1
            if usage:
                self.token_usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                self.token_usage.completion_tokens += int(usage.get("completion_tokens") or 0)

    # ---------------------------------------------------------------- request building
    def _endpoint(self) -> str:
        return "/chat/completions" if self.is_chat_model else "/completions"

    def _body(self, ctx: GenContext, params: SamplingSpec) -> dict[str, Any]:
        if not ctx.text and not ctx.messages:
            raise ValueError("cannot generate from an empty prompt: append some text before gen")
        body: dict[str, Any] = {"model": self.model_name}
        if self.is_chat_model:
            if not ctx.messages:
                raise ValueError("a chat model needs messages: put the prompt inside system/user roles")
            body["messages"] = list(ctx.messages)
            if ctx.messages[-1].get("role") == "assistant":
                if not self.can_continue_final_message:
                    raise UnsupportedFeatureError(
                        f"{self._where()} cannot continue a partial assistant message; put gen() right "
                        "after assistant begins, or use @function(num_api_spec_tokens=...)"
                    )
                body.update(continue_final_message=True, add_generation_prompt=False)
        else:
            if ctx.images:
                raise UnsupportedFeatureError(f"{self._where()}: images need a chat model (is_chat_model=True)")
            body["prompt"] = ctx.text
        # each sampling field under its OpenAI name (or vLLM / SGLang extension), sent when it is not the default;
        # the constraints follow below
        for f in SAMPLING_FIELDS:
            value = getattr(params, f.name)
            if f.openai_name is not None and f.name not in CONSTRAINT_FIELDS and (
                    f.name in _ALWAYS_SENT or value != f.default):
                body[f.openai_name] = value
        if params.n != 1:
            body["n"] = params.n
        constraint = next((name for name in ("regex", "dtype", "choices", "ebnf", "lark")
                           if getattr(params, name) is not None), None)
        if constraint is not None and self.regex_field is None:
            raise UnsupportedFeatureError(
                f"{self._where()}: the OpenAI API cannot constrain a gen by {constraint}. Use RuntimeEndpoint "
                "or the in-process engine, or OpenAI(..., regex_field='regex') for a server with "
                "SGLang's regex extension (SGLang, sgnb serve)"
            )
        if constraint in ("ebnf", "lark"):   # SGLang's field, and sgnb serve's for Lark
            body[constraint] = getattr(params, constraint)
        elif constraint is not None:
            body[self.regex_field] = params.constraint_regex()
        if params.json_schema is not None:
            import json

            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": json.loads(params.json_schema)}}
        if params.return_logprob:
            if self.is_chat_model:
                body["logprobs"] = True
                if params.top_logprobs_num:
                    body["top_logprobs"] = params.top_logprobs_num
            else:
                body["logprobs"] = params.top_logprobs_num
        return body

    def _where(self) -> str:
        return f"OpenAI({self.model_name!r}) at {self.base_url}"

    # ---------------------------------------------------------------- response reading
    def _choice_text(self, choice: dict[str, Any]) -> str:
        if self.is_chat_model:
            return (choice.get("message") or {}).get("content") or ""
        return choice.get("text") or ""

    def _choice_meta(self, choice: dict[str, Any]) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        reason = choice.get("finish_reason")
        if reason is not None:
            meta["finish_reason"] = {"type": _FINISH_REASONS.get(reason, reason)}
        logprobs = choice.get("logprobs")
        if logprobs:
            if self.is_chat_model:
                content = logprobs.get("content") or []
                meta["output_token_logprobs"] = [(t["logprob"], None, t["token"]) for t in content]
                meta["output_top_logprobs"] = [
                    [(x["logprob"], None, x["token"]) for x in t.get("top_logprobs") or []] for t in content
                ]
            else:
                meta["output_token_logprobs"] = list(zip(logprobs.get("token_logprobs") or [],
                                                         [None] * len(logprobs.get("tokens") or []),
                                                         logprobs.get("tokens") or []))
                meta["output_top_logprobs"] = [
                    [(lp, None, tok) for tok, lp in (top or {}).items()] for top in logprobs.get("top_logprobs") or []
                ]
        return meta

    def generate(self, ctx: GenContext, params: SamplingSpec) -> tuple[str | list[str], dict]:
        body = self._body(ctx, params)
        answer = self._http.post(self._endpoint(), body)
        usage = answer.get("usage") or {}
        self._account(usage)
        choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
        if not choices:
            raise BackendError(f"{self._where()} answered without choices: {answer!r}"[:500])
        base = {"prompt_tokens": usage.get("prompt_tokens", 0), "completion_tokens": usage.get("completion_tokens", 0)}
        if params.n == 1:
            return self._choice_text(choices[0]), {**base, **self._choice_meta(choices[0])}
        return [self._choice_text(c) for c in choices], {**base, "choices": [self._choice_meta(c) for c in choices]}

    def generate_stream(self, ctx: GenContext, params: SamplingSpec) -> Iterator[tuple[str, dict]]:
        if params.n != 1:
            raise UnsupportedFeatureError("streaming gen does not support n > 1")
        body = self._body(ctx, params)
        body.update(stream=True, stream_options={"include_usage": True})
        meta: dict[str, Any] = {}
        usage: dict[str, Any] = {}
        for chunk in self._http.stream(self._endpoint(), body):
            if chunk.get("usage"):
                usage = chunk["usage"]
                meta.update(prompt_tokens=usage.get("prompt_tokens", 0),
                            completion_tokens=usage.get("completion_tokens", 0))
            for choice in chunk.get("choices") or []:
                delta = (choice.get("delta") or {}).get("content") if self.is_chat_model else choice.get("text")
                reason = choice.get("finish_reason")
                if reason:
                    meta["finish_reason"] = {"type": _FINISH_REASONS.get(reason, reason)}
                if delta:
                    yield delta, dict(meta)
        self._account(usage)
        yield "", dict(meta)

    # ---------------------------------------------------------------- select
    def select(
        self, ctx: GenContext, choices: list[str], temperature: float, choices_method: ChoicesMethod
    ) -> SelectResult:
        if not choices:
            raise ValueError("select needs at least one choice")
        if self.is_chat_model:
            raise UnsupportedFeatureError(
                f"{self._where()}: select needs the log-probabilities of each choice's tokens after the prompt, "
                "which chat-completion APIs do not return. Use a completion model (is_chat_model=False) on a "
                "server that answers echo+logprobs (vLLM, SGLang, sgnb serve), RuntimeEndpoint, or the "
                "in-process engine"
            )
        if not ctx.text:
            raise ValueError("cannot select from an empty prompt: append some text before select")
        # One request: the prompt alone (for its tokens) and every prompt + choice, echoed with logprobs.
        scored = self._echo_logprobs([ctx.text] + [ctx.text + c for c in choices])
        prompt_tokens = [tok for _, tok in scored[0]]
        input_token_logprobs = []
        for entries in scored[1:]:
            tokens = [tok for _, tok in entries]
            # the choice's tokens start where the tokenizations diverge (a boundary token may merge with it)
            start = min(common_prefix_len(prompt_tokens, tokens), len(tokens) - 1)
            input_token_logprobs.append([(lp, None, tok) for lp, tok in entries[start:]])
        unconditional = None
        if choices_method.requires_unconditional_logprobs:
            alone = self._echo_logprobs(list(choices))
            unconditional = [[(lp, None, tok) for lp, tok in entries] for entries in alone]
        return choices_method(choices, input_token_logprobs, unconditional)

    def _echo_logprobs(self, prompts: list[str]) -> list[list[tuple[float | None, str]]]:
        """`(logprob, token)` for every token of each prompt, from one `echo` + `max_tokens=0` request."""
        body = {"model": self.model_name, "prompt": prompts, "max_tokens": 0, "echo": True, "logprobs": 0,
                "temperature": 0}
        try:
            answer = self._http.post("/completions", body)
        except HTTPStatusError as exc:
            if exc.status_code in (400, 404, 422):
                raise UnsupportedFeatureError(
                    f"{self._where()}: select needs prompt logprobs (echo + logprobs + max_tokens=0), which this "
                    f"server refused: {exc.server_message}"
                ) from exc
            raise
        self._account(answer.get("usage"))
        choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
        out = []
        for choice in choices:
            logprobs = choice.get("logprobs") or {}
            tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
            if not tokens or values is None or len(values) != len(tokens):
                raise UnsupportedFeatureError(
                    f"{self._where()}: select needs prompt logprobs, but the server did not echo the prompt's "
                    "tokens with their logprobs"
                )
            out.append(list(zip(values, tokens)))
        if len(out) != len(prompts):
            raise BackendError(f"{self._where()} answered {len(out)} choices for {len(prompts)} prompts")
        return out

    def shutdown(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"OpenAI({self.model_name!r}, base_url={self.base_url!r}, is_chat_model={self.is_chat_model})"
