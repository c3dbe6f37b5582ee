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

from sgnb.engine.sampling_params import CONSTRAINT_FIELDS, SAMPLING_FIELDS, check_value

# OpenAI field (or vLLM / SGLang extension) -> engine sampling param, checked by the engine's rules for it;
# max_tokens and the constraints have their own rules below
_SAMPLING_FIELDS = {f.openai_name: f.name for f in SAMPLING_FIELDS
                    if f.openai_name is not None and f.openai_name != "max_tokens" and f.name not in CONSTRAINT_FIELDS}
# body fields other servers define for a constraint -> engine param
_CONSTRAINT_EXTENSIONS = {
    "regex": "regex", "json_schema": "json_schema", "ebnf": "ebnf",   # SGLang
    "lark": "lark",                                                   # sgnb
    "grammar": "ebnf",                                                # llama.cpp server (GBNF)
    "guided_grammar": "ebnf", "guided_regex": "regex", "guided_json": "json_schema",   # vLLM (older names)
}
# vLLM's `structured_outputs` keys -> engine param
_STRUCTURED_OUTPUTS = {"grammar": "ebnf", "regex": "regex", "json": "json_schema"}
# `response_format: {"type": "grammar"}`: the grammar's syntax -> engine param
_GRAMMAR_SYNTAXES = {"lark": "lark", "ebnf": "ebnf", "gbnf": "ebnf", "regex": "regex"}
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
    messages: list[dict[str, Any]]  # content: a str, or parts (text and images) when the message has images
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


def _grammar_format(value: dict[str, Any]) -> tuple[str, str]:
    """`response_format` of type grammar: OpenAI's grammar format (`syntax` + `definition`, at the top or under
    `grammar`) or Fireworks' (`grammar`: a GBNF string)."""
    spec = value.get("grammar", value)
    if isinstance(spec, str):
        return "ebnf", spec
    syntax = spec.get("syntax", "lark") if isinstance(spec, dict) else None
    if syntax not in _GRAMMAR_SYNTAXES:
        raise ValueError(f"'response_format.syntax' must be one of {', '.join(_GRAMMAR_SYNTAXES)}, got {syntax!r}")
    definition = spec.get("definition")
    if not isinstance(definition, str) or not definition:
        raise ValueError(f"'response_format' grammar 'definition' must be a non-empty string, got {definition!r}")
    return _GRAMMAR_SYNTAXES[syntax], definition


def _response_format(value: Any) -> tuple[str, Any] | None:
    """`response_format` -> (engine constraint param, value), None for plain text."""
    if value is None:
        return None
    if not isinstance(value, dict) or "type" not in value:
        raise ValueError(f"'response_format' must be an object with a 'type', got {value!r}")
    kind = value["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return "json_schema", {"type": "object"}
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema", spec.get("schema_")) if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise ValueError("'response_format.json_schema.schema' must be a JSON schema object")
        return "json_schema", schema
    if kind == "grammar":
        return _grammar_format(value)
    raise ValueError(f"'response_format.type' must be 'text', 'json_object', 'json_schema' or 'grammar', got {kind!r}")


def _constraint(body: dict[str, Any]) -> dict[str, Any]:
    """The request's constraint as engine params (`{}` for none), from `response_format` or an extension field."""
    given: list[tuple[str, str, Any]] = []   # (where the request put it, engine param, value)
    response_format = _response_format(body.get("response_format"))
    if response_format is not None:
        given.append(("response_format", *response_format))
    given += [(name, param, body[name]) for name, param in _CONSTRAINT_EXTENSIONS.items() if body.get(name) is not None]
    structured = body.get("structured_outputs")
    if structured is not None:
        if not isinstance(structured, dict) or not set(structured) <= set(_STRUCTURED_OUTPUTS):
            raise ValueError(f"'structured_outputs' must be an object with one of the keys "
                             f"{', '.join(_STRUCTURED_OUTPUTS)}, got {structured!r}")
        given += [(f"structured_outputs.{key}", _STRUCTURED_OUTPUTS[key], value)
                  for key, value in structured.items() if value is not None]
    if not given:
        return {}
    if len(given) > 1:
        raise ValueError(f"{' and '.join(repr(where) for where, _, _ in given)} are mutually exclusive: "
                         "a request takes one constraint")
    where, param, value = given[0]
    if param == "json_schema" and isinstance(value, dict):
        return {param: json.dumps(value)}
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{where}' must be a non-empty string, got {value!r}")
    return {param: value}


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
    params.update(_constraint(body))
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


def _message_content(index: int, content: Any) -> str | list[dict[str, str]]:
    """A message's text; with images, its parts in order: `{"type": "text", "text"}` and `{"type": "image",
    "url"}` (a data URL or a local file path; the engine reads it, and refuses http(s): it has no network)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or "type" not in part:
                raise ValueError(f"messages[{index}].content parts must be objects with a 'type'")
            if part["type"] == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
            elif part["type"] == "image_url":
                parts.append({"type": "image", "url": _image_url(index, part.get("image_url"))})
            else:
                raise ValueError(
                    f"messages[{index}].content part of type {part['type']!r} is not supported "
                    "by sgnb serve (text and image_url only)"
                )
        if all(p["type"] == "text" for p in parts):
            return "".join(p["text"] for p in parts)
        return parts
    raise ValueError(f"messages[{index}].content must be a string or a list of content parts")


def _image_url(index: int, value: Any) -> str:
    url = value.get("url") if isinstance(value, dict) else None
    if not isinstance(url, str) or not url:
        raise ValueError(f"messages[{index}].content image_url must be an object with a 'url' string, got {value!r}")
    return url


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
