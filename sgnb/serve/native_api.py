"""SGLang-native routes: `POST /generate`, `GET /get_model_info`, `POST /flush_cache`, `GET /health`.

`/generate` takes `text` (str or list) or `input_ids` (list or list of lists), `sampling_params` (one dict
or one per prompt), `return_logprob`, `logprob_start_len`, `top_logprobs_num` (scalars or per prompt),
`image_data` (for one prompt an image or a list of images; for a batch one such entry, or null, per prompt;
an image is a data URL, base64 or a local file path, where the prompt holds the model's `image_token`),
`stream` and `rid`. A batch answers a list. `max_new_tokens == 0` scores the prompt (prefill only).
A stream sends `data: {"text": <text so far>, "meta_info": {...}, "index": i}` events, then `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from sgnb.engine.sampling_params import SamplingParams
from sgnb.serve.encoding import JSONResponse
from sgnb.serve.engine_bridge import EngineBridge, merge_streams, new_rid
from sgnb.serve.errors import APIError
from sgnb.serve.sse import sse_response

_PER_PROMPT_FIELDS = ("sampling_params", "return_logprob", "logprob_start_len", "top_logprobs_num", "rid")


async def read_json(request: Request) -> Any:
    try:
        return await request.json()
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the client's
        raise APIError(400, f"request body is not valid JSON: {exc}") from exc


def _is_int_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def split_generate_request(body: Any) -> tuple[list[dict[str, Any]], bool]:
    """One engine-call kwargs dict per prompt, and whether the request was a batch.

    Raises ValueError naming the bad field.
    """
    if not isinstance(body, dict):
        raise ValueError("request body must be a JSON object")
    unknown = sorted(set(body) - {"text", "input_ids", "stream", "return_text_in_logprobs", "image_data",
                                  *_PER_PROMPT_FIELDS})
    if unknown:
        raise ValueError(f"unknown field(s) in /generate request: {', '.join(unknown)}")
    for name in ("stream", "return_text_in_logprobs"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise ValueError(f"'{name}' must be true or false, got {body[name]!r}")
    text, input_ids = body.get("text"), body.get("input_ids")
    if (text is None) == (input_ids is None):
        raise ValueError("/generate needs exactly one of 'text' or 'input_ids'")
    if text is not None:
        if isinstance(text, str):
            prompts, is_batch = [{"prompt": text}], False
        elif isinstance(text, list) and text and all(isinstance(t, str) for t in text):
            prompts, is_batch = [{"prompt": t} for t in text], True
        else:
            raise ValueError("'text' must be a string or a non-empty list of strings")
    elif _is_int_list(input_ids) and input_ids:
        prompts, is_batch = [{"input_ids": list(input_ids)}], False
    elif isinstance(input_ids, list) and input_ids and all(_is_int_list(x) and x for x in input_ids):
        prompts, is_batch = [{"input_ids": list(x)} for x in input_ids], True
    else:
        raise ValueError("'input_ids' must be a non-empty list of token ids or a list of such lists")

    for name in _PER_PROMPT_FIELDS:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, list):
            if not is_batch or len(value) != len(prompts):
                raise ValueError(f"'{name}' given as a list must have one entry per prompt ({len(prompts)})")
            for kwargs, item in zip(prompts, value):
                kwargs[name] = item
        else:
            for kwargs in prompts:
                kwargs[name] = value
    if body.get("image_data") is not None:
        for kwargs, images in zip(prompts, _image_lists(body["image_data"], len(prompts), is_batch)):
            if images:
                kwargs["image_data"] = images
    for kwargs in prompts:
        params = kwargs.get("sampling_params") or {}
        if not isinstance(params, dict):
            raise ValueError(f"'sampling_params' must be an object, got {params!r}")
        kwargs["sampling_params"] = dict(params)
        if "return_logprob" in kwargs and not isinstance(kwargs["return_logprob"], bool):
            raise ValueError(f"'return_logprob' must be a boolean, got {kwargs['return_logprob']!r}")
        for name in ("logprob_start_len", "top_logprobs_num"):
            if name in kwargs and (not isinstance(kwargs[name], int) or isinstance(kwargs[name], bool)):
                raise ValueError(f"'{name}' must be an integer, got {kwargs[name]!r}")
        if kwargs.get("logprob_start_len", 0) < 0:  # SGLang's -1: no input logprobs
            kwargs["logprob_start_len"] = None
        if "rid" in kwargs and not isinstance(kwargs["rid"], str):
            raise ValueError(f"'rid' must be a string, got {kwargs['rid']!r}")
    return prompts, is_batch


def _image_lists(value: Any, num_prompts: int, is_batch: bool) -> list[list[str]]:
    """`image_data` as one list of images per prompt (see the module docstring)."""

    def images_of(entry: Any, where: str) -> list[str]:
        if entry is None:
            return []
        entry = [entry] if isinstance(entry, str) else entry
        if not isinstance(entry, list) or not all(isinstance(x, str) and x for x in entry):
            raise ValueError(f"{where} must be an image (a data URL, base64 or a file path) or a list of them")
        return entry

    if not is_batch:
        return [images_of(value, "'image_data'")]
    if not isinstance(value, list) or len(value) != num_prompts:
        raise ValueError(f"'image_data' of a batch must be a list with one entry per prompt ({num_prompts})")
    return [images_of(entry, f"'image_data'[{i}]") for i, entry in enumerate(value)]


def is_score_request(kwargs: dict[str, Any]) -> bool:
    return kwargs["sampling_params"].get("max_new_tokens") == 0


def validate_sampling_params(kwargs: dict[str, Any]) -> None:
    """Check the sampling params with the engine's own validation (clear ValueError)."""
    params = dict(kwargs["sampling_params"])
    if params.get("max_new_tokens") == 0:
        params.pop("max_new_tokens")
    SamplingParams.from_dict(params)


def score_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Engine.score arguments for a prefill-only /generate request."""
    out = {k: v for k, v in kwargs.items() if k in ("prompt", "input_ids", "image_data")}
    # Scoring always computes input logprobs; without return_logprob we only report the counts.
    out["logprob_start_len"] = kwargs.get("logprob_start_len") if kwargs.get("return_logprob") else None
    out["top_logprobs_num"] = kwargs.get("top_logprobs_num", 0)
    return out


def _score_result(result: dict[str, Any], return_logprob: bool) -> dict[str, Any]:
    meta = dict(result.get("meta_info", {}))
    meta.setdefault("completion_tokens", 0)
    if return_logprob:
        meta.setdefault("output_token_logprobs", [])
    else:
        for key in ("input_token_logprobs", "input_top_logprobs", "output_token_logprobs", "output_top_logprobs"):
            meta.pop(key, None)
    return {"text": result.get("text", ""), "output_ids": result.get("output_ids", []), "meta_info": meta}


def build_router(bridge: EngineBridge, model_info: dict[str, Any]) -> APIRouter:
    router = APIRouter()

    async def run_one(kwargs: dict[str, Any]) -> dict[str, Any]:
        if is_score_request(kwargs):
            result = await bridge.score(**score_kwargs(kwargs))
            return _score_result(result, bool(kwargs.get("return_logprob")))
        return await bridge.generate(**kwargs)

    async def stream_events(streams: list[AsyncIterator[dict[str, Any]]]) -> AsyncIterator[dict[str, Any]]:
        texts = [""] * len(streams)
        output_ids: list[list[int]] = [[] for _ in streams]
        async for index, item in merge_streams(streams):
            texts[index] += item.get("text", "")
            output_ids[index] += item.get("output_ids", [])
            # SGLang streams the text so far (clients slice off what they already have).
            yield {"text": texts[index], "output_ids": output_ids[index],
                   "meta_info": item.get("meta_info", {}), "index": index}

    @router.post("/generate", response_model=None)
    async def generate(request: Request) -> JSONResponse | StreamingResponse:
        body = await read_json(request)
        try:
            prompts, is_batch = split_generate_request(body)
            for kwargs in prompts:
                validate_sampling_params(kwargs)
                kwargs.setdefault("rid", new_rid())
        except ValueError as exc:
            raise APIError(400, str(exc)) from exc
        if body.get("stream"):
            if any(is_score_request(k) for k in prompts):
                raise APIError(400, "max_new_tokens = 0 (prompt scoring) cannot be streamed")
            # started before the response, so a refused request is still a plain 400
            return sse_response(stream_events(await bridge.open_streams(prompts)))
        results = await asyncio.gather(*(run_one(kwargs) for kwargs in prompts))
        return JSONResponse(list(results) if is_batch else results[0])

    @router.get("/get_model_info")
    async def get_model_info() -> dict[str, Any]:
        return model_info

    @router.api_route("/flush_cache", methods=["GET", "POST"])
    async def flush_cache() -> dict[str, Any]:
        result = await bridge.flush_cache()
        return {"success": result is not False, "message": "Cache flushed."}

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return router
