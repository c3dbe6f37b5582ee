"""OpenAI-compatible request parsing and response building (pure functions, no I/O).

Requests are plain JSON dicts; parsing validates the fields this server understands and turns them
into the engine's SGLang-named sampling params. A bad field raises `ValueError` naming it (the app
answers 400). Responses follow the OpenAI schemas that the official `openai` client reads.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sgnb.engine.sampling_params import SAMPLING_FIELDS, check_value

# OpenAI field (or vLLM / SGLang extension) -> engine sampling param, checked by the engine's rules for it;
# max_tokens, regex and json_schema have their own rules below
_SAMPLING_FIELDS = {f.openai_name: f.name for f in SAMPLING_FIELDS
                    if f.openai_name is not None and f.openai_name not in ("max_tokens", "regex", "json_schema")}
_MAX_STOP_STRINGS = 16
_COMPLETION_DEFAULT_MAX_TOKENS = 16  # the OpenAI completions default
_MAX_N = 16


@dataclass(slots=True)
class CompletionRequest:
    model: str | None
    prompts: list[str | list[int]]  # one entry per prompt: text or token ids
    sampling_params: dict[str, Any]
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    logprobs: int | None = None  # number of top logprobs per token (0 = just the chosen token)
    echo: bool = False


@dataclass(slots=True)
class ChatRequest:
    model: str | None
    messages: list[dict[str, str]]
    sampling_params: dict[str, Any]
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    continue_final_message: bool = False  # vLLM/SGLang extension: extend the last (assistant) message


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def _model(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ValueError(f"'model' must be a string, got {model!r}")
    return model


def _response_format(value: Any) -> dict[str, Any]:
    """`response_format` -> engine constraint params (json_schema)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or "type" not in value:
        raise ValueError(f"'response_format' must be an object with a 'type', got {value!r}")
    kind = value["type"]
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"json_schema": json.dumps({"type": "object"})}
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema", spec.get("schema_")) if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise ValueError("'response_format.json_schema.schema' must be a JSON schema object")
        return {"json_schema": json.dumps(schema)}
    raise ValueError(f"'response_format.type' must be 'text', 'json_object' or 'json_schema', got {kind!r}")


def sampling_params_from_openai(body: dict[str, Any], default_max_tokens: int | None) -> dict[str, Any]:
    """The engine sampling params (SGLang names) for an OpenAI request body."""
    params: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = default_max_tokens
    if max_tokens is not None:
        if not _is_int(max_tokens) or max_tokens < 0:
            raise ValueError(f"'max_tokens' must be a non-negative integer, got {max_tokens!r}")
        params["max_new_tokens"] = max_tokens
    for src, dst in _SAMPLING_FIELDS.items():
        value = body.get(src)
        if value is not None:
            params[dst] = check_value(dst, value, shown_as=f"'{src}'")
    if len(params.get("stop", ())) > _MAX_STOP_STRINGS:
        raise ValueError(f"'stop' accepts at most {_MAX_STOP_STRINGS} strings, got {len(params['stop'])}")
    params.update(_response_format(body.get("response_format")))
    regex = body.get("regex")  # SGLang extension
    if regex is not None:
        if not isinstance(regex, str):
            raise ValueError(f"'regex' must be a string, got {regex!r}")
        if "json_schema" in params:
            raise ValueError("'regex' and 'response_format' json constraints are mutually exclusive")
        params["regex"] = regex
    json_schema = body.get("json_schema")  # SGLang extension
    if json_schema is not None:
        if "json_schema" in params or "regex" in params:
            raise ValueError("'json_schema' cannot be combined with 'regex' or 'response_format'")
        params["json_schema"] = json_schema if isinstance(json_schema, str) else json.dumps(json_schema)
    return params


def _n(body: dict[str, Any]) -> int:
    n = body.get("n", 1)
    if n is None:
        n = 1
    if not _is_int(n) or not 1 <= n <= _MAX_N:
        raise ValueError(f"'n' must be an integer in [1, {_MAX_N}], got {n!r}")
    return n


def _stream(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = False if body.get("stream") is None else body["stream"]
    if not isinstance(stream, bool):
        raise ValueError(f"'stream' must be a boolean, got {stream!r}")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"'stream_options' must be an object, got {options!r}")
    return stream, bool(options.get("include_usage", False))


def parse_completion_request(body: Any) -> CompletionRequest:
    body = _require_object(body)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts: list[str | list[int]] = [prompt]
    elif isinstance(prompt, list) and prompt and all(_is_int(t) for t in prompt):
        prompts = [list(prompt)]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = list(prompt)
    elif isinstance(prompt, list) and prompt and all(
        isinstance(p, list) and p and all(_is_int(t) for t in p) for p in prompt
    ):
        prompts = [list(p) for p in prompt]
    else:
        raise ValueError(
            "'prompt' must be a string, a list of strings, a list of token ids, or a list of token-id lists"
        )
    logprobs = body.get("logprobs")
    if logprobs is not None and (not _is_int(logprobs) or not 0 <= logprobs <= 20):
        raise ValueError(f"'logprobs' must be an integer in [0, 20], got {logprobs!r}")
    echo = body.get("echo", False) or False
    if not isinstance(echo, bool):
        raise ValueError(f"'echo' must be a boolean, got {echo!r}")
    for unsupported in ("suffix", "best_of"):
        if body.get(unsupported) not in (None, 1) and not (unsupported == "suffix" and body[unsupported] == ""):
            raise ValueError(f"'{unsupported}' is not supported by sgnb serve")
    stream, include_usage = _stream(body)
    params = sampling_params_from_openai(body, _COMPLETION_DEFAULT_MAX_TOKENS)
    if stream and params.get("max_new_tokens") == 0:
        raise ValueError("'max_tokens' = 0 (prompt scoring) cannot be streamed")
    return CompletionRequest(
        model=_model(body), prompts=prompts, sampling_params=params, n=_n(body), stream=stream,
        include_usage=include_usage, logprobs=logprobs, echo=echo,
    )


def _message_content(index: int, content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or "type" not in part:
                raise ValueError(f"messages[{index}].content parts must be objects with a 'type'")
            if part["type"] != "text":
                raise ValueError(
                    f"messages[{index}].content part of type {part['type']!r} is not supported "
                    "by sgnb serve (text only)"
                )
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise ValueError(f"messages[{index}].content must be a string or a list of content parts")


_ROLES = ("system", "developer", "user", "assistant", "tool")


def parse_chat_request(body: Any) -> ChatRequest:
    body = _require_object(body)
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ValueError("'messages' must be a non-empty list of {'role', 'content'} objects")
    messages = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{i}] must be an object")
        role = message.get("role")
        if role not in _ROLES:
            raise ValueError(f"messages[{i}].role must be one of {', '.join(_ROLES)}, got {role!r}")
        messages.append({"role": "system" if role == "developer" else role,
                         "content": _message_content(i, message.get("content"))})
    logprobs = body.get("logprobs", False) or False
    if not isinstance(logprobs, bool):
        raise ValueError(f"'logprobs' must be a boolean, got {logprobs!r}")
    top_logprobs = body.get("top_logprobs") or 0
    if not _is_int(top_logprobs) or not 0 <= top_logprobs <= 20:
        raise ValueError(f"'top_logprobs' must be an integer in [0, 20], got {top_logprobs!r}")
    if top_logprobs and not logprobs:
        raise ValueError("'top_logprobs' requires 'logprobs': true")
    for unsupported in ("tools", "functions"):
        if body.get(unsupported):
            raise ValueError(f"'{unsupported}' (function calling) is not supported by sgnb serve")
    continue_final = body.get("continue_final_message", False) or False
    if not isinstance(continue_final, bool):
        raise ValueError(f"'continue_final_message' must be a boolean, got {continue_final!r}")
    if continue_final and messages[-1]["role"] != "assistant":
        raise ValueError("'continue_final_message' needs the last message to be an assistant message")
    stream, include_usage = _stream(body)
    params = sampling_params_from_openai(body, None)
    if params.get("max_new_tokens") == 0:
        raise ValueError("'max_tokens' must be at least 1 for chat completions")
    return ChatRequest(
        model=_model(body), messages=messages, sampling_params=params, n=_n(body), stream=stream,
        include_usage=include_usage, logprobs=logprobs, top_logprobs=top_logprobs,
        continue_final_message=continue_final,
    )


# --- responses ---------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def finish_reason(meta_info: dict[str, Any] | None) -> str | None:
    """Engine finish reason -> OpenAI's ("stop", "length", or "abort")."""
    reason = (meta_info or {}).get("finish_reason")
    if reason is None:
        return None
    kind = reason.get("type") if isinstance(reason, dict) else str(reason)
    return {"stop": "stop", "length": "length"}.get(kind, kind)


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        body["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return body


def _token_text(entry: Any) -> str:
    text = entry[2] if len(entry) > 2 else None
    return "" if text is None else str(text)


def chat_logprobs(meta_info: dict[str, Any], start: int = 0) -> dict[str, Any]:
    """OpenAI chat `logprobs` from the engine's output_token_logprobs (from position `start` on)."""
    tokens = meta_info.get("output_token_logprobs") or []
    tops = meta_info.get("output_top_logprobs") or []
    content = []
    for i in range(start, len(tokens)):
        text = _token_text(tokens[i])
        top = tops[i] if i < len(tops) and tops[i] else []
        content.append({
            "token": text,
            "logprob": float(tokens[i][0]),
            "bytes": list(text.encode("utf-8")),
            "top_logprobs": [
                {"token": _token_text(t), "logprob": float(t[0]), "bytes": list(_token_text(t).encode("utf-8"))}
                for t in top
            ],
        })
    return {"content": content}


def completion_logprobs(
    meta_info: dict[str, Any], include_input: bool, text_offset0: int = 0, start: int = 0
) -> dict[str, Any]:
    """OpenAI completions `logprobs` (tokens, token_logprobs, top_logprobs, text_offset)."""
    entries: list[tuple[Any, Any]] = []
    if include_input:
        inputs = meta_info.get("input_token_logprobs") or []
        input_tops = meta_info.get("input_top_logprobs") or []
        entries += [(e, input_tops[i] if i < len(input_tops) else None) for i, e in enumerate(inputs)]
    outputs = meta_info.get("output_token_logprobs") or []
    output_tops = meta_info.get("output_top_logprobs") or []
    entries += [(e, output_tops[i] if i < len(output_tops) else None) for i, e in enumerate(outputs)]
    result: dict[str, Any] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    offset = text_offset0
    for entry, top in entries[start:]:
        text = _token_text(entry)
        result["tokens"].append(text)
        result["token_logprobs"].append(None if entry[0] is None else float(entry[0]))
        result["top_logprobs"].append(
            None if top is None else {_token_text(t): float(t[0]) for t in top if t[0] is not None}
        )
        result["text_offset"].append(offset)
        offset += len(text)
    return result
