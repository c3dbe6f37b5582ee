"""OpenAI-compatible routes: `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions`.

Each of the `n` samples of each prompt is one engine request (the engine batches them). A chat message's
`image_url` parts become the request's `image_data` (`chat_images`). Streams send
OpenAI chunks as SSE events, an optional usage chunk (`stream_options.include_usage`), then `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from sgnb.engine.sampling_params import SamplingParams
from sgnb.serve import chat_images
from sgnb.serve import openai_protocol as proto
from sgnb.serve.encoding import JSONResponse
from sgnb.serve.engine_bridge import EngineBridge, merge_streams, new_rid
from sgnb.serve.errors import APIError
from sgnb.serve.native_api import read_json
from sgnb.serve.sse import sse_response


class ModelNames:
    """The served model id and the other names a request may use for it."""

    def __init__(self, served: str, aliases: tuple[str, ...] = ()) -> None:
        self.served = served
        self.accepted = {served, *aliases}

    def check(self, requested: str | None) -> str:
        if requested is None or requested in self.accepted:
            return self.served
        raise APIError(404, f"The model '{requested}' does not exist; this server serves '{self.served}'", "model")


def _engine_requests(
    prompt: str | list[int], params: dict[str, Any], n: int, *, logprob_start_len: int | None, top_logprobs_num: int,
    return_logprob: bool, prefix: str, image_data: list[str] | None = None,
) -> list[dict[str, Any]]:
    requests = []
    for i in range(n):
        sample_params = dict(params)
        if n > 1 and "sampling_seed" in sample_params:
            sample_params["sampling_seed"] += i  # distinct, still reproducible, samples
        kwargs: dict[str, Any] = {"sampling_params": sample_params, "rid": new_rid(prefix)}
        kwargs["input_ids" if isinstance(prompt, list) else "prompt"] = prompt
        if image_data:
            kwargs["image_data"] = image_data
        if return_logprob:
            kwargs.update(return_logprob=True, logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num)
        requests.append(kwargs)
    return requests


def _validate(params: dict[str, Any]) -> None:
    checked = dict(params)
    if checked.get("max_new_tokens") == 0:
        checked.pop("max_new_tokens")
    SamplingParams.from_dict(checked)


def build_router(bridge: EngineBridge, names: ModelNames, created: int) -> APIRouter:
    router = APIRouter(prefix="/v1")
    tokenizer = bridge.engine.tokenizer
    image_token = getattr(bridge.engine, "image_token", None)
    template_reads_parts = chat_images.reads_content_parts(tokenizer)

    @router.get("/models")
    async def list_models() -> dict[str, Any]:
        card = {"id": names.served, "object": "model", "created": created, "owned_by": "sgnb"}
        return {"object": "list", "data": [card]}

    @router.get("/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        names.check(model_id)
        return {"id": names.served, "object": "model", "created": created, "owned_by": "sgnb"}

    # --- completions ---------------------------------------------------------------------------

    @router.post("/completions", response_model=None)
    async def completions(request: Request) -> JSONResponse | StreamingResponse:
        try:
            req = proto.parse_completion_request(await read_json(request))
            _validate(req.sampling_params)
        except ValueError as exc:
            raise APIError(400, str(exc)) from exc
        model = names.check(req.model)
        is_score = req.sampling_params.get("max_new_tokens") == 0
        want_logprobs = req.logprobs is not None
        requests: list[dict[str, Any]] = []
        prompt_index: list[int] = []
        for p, prompt in enumerate(req.prompts):
            batch = _engine_requests(
                prompt, req.sampling_params, req.n, logprob_start_len=0 if req.echo else None,
                top_logprobs_num=req.logprobs or 0, return_logprob=want_logprobs, prefix="cmpl",
            )
            requests += batch
            prompt_index += [p] * len(batch)
        prompt_texts = [p if isinstance(p, str) else tokenizer.decode(p) for p in req.prompts]
        response_id, now = proto.new_id("cmpl"), proto.now()
        if req.stream:
            streams = await bridge.open_streams(requests)
            return sse_response(_completion_chunks(streams, req, prompt_index, prompt_texts, response_id, now, model))

        async def run(kwargs: dict[str, Any]) -> dict[str, Any]:
            if not is_score:
                return await bridge.generate(**kwargs)
            # max_tokens = 0: prompt scoring (with echo + logprobs, the prompt's token logprobs)
            return await bridge.score(
                **{k: kwargs[k] for k in ("prompt", "input_ids") if k in kwargs},
                logprob_start_len=0 if want_logprobs else None, top_logprobs_num=req.logprobs or 0,
            )

        results = await asyncio.gather(*(run(kwargs) for kwargs in requests))
        choices = []
        for i, result in enumerate(results):
            meta = result.get("meta_info", {})
            prefix = prompt_texts[prompt_index[i]] if req.echo else ""
            choices.append({
                "index": i,
                "text": prefix + result.get("text", ""),
                "logprobs": proto.completion_logprobs(meta, include_input=req.echo) if want_logprobs else None,
                "finish_reason": proto.finish_reason(meta) or "length",
            })
        return JSONResponse({
            "id": response_id, "object": "text_completion", "created": now, "model": model,
            "choices": choices, "usage": _usage(results, prompt_index),
        })

    # --- chat ----------------------------------------------------------------------------------

    @router.post("/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        try:
            req = proto.parse_chat_request(await read_json(request))
            _validate(req.sampling_params)
        except ValueError as exc:
            raise APIError(400, str(exc)) from exc
        model = names.check(req.model)
        try:
            messages, images = chat_images.split_images(req.messages, image_token, template_reads_parts)
        except ValueError as exc:
            raise APIError(400, str(exc)) from exc
        prompt = await bridge.apply_chat_template(messages, req.continue_final_message)
        requests = _engine_requests(
            prompt, req.sampling_params, req.n, logprob_start_len=None, top_logprobs_num=req.top_logprobs,
            return_logprob=req.logprobs, prefix="chatcmpl", image_data=images,
        )
        response_id, now = proto.new_id("chatcmpl"), proto.now()
        if req.stream:
            streams = await bridge.open_streams(requests)
            return sse_response(_chat_chunks(streams, req, response_id, now, model))
        results = await asyncio.gather(*(bridge.generate(**kwargs) for kwargs in requests))
        choices = []
        for i, result in enumerate(results):
            meta = result.get("meta_info", {})
            choices.append({
                "index": i,
                "message": {"role": "assistant", "content": result.get("text", "")},
                "logprobs": proto.chat_logprobs(meta) if req.logprobs else None,
                "finish_reason": proto.finish_reason(meta) or "length",
            })
        return JSONResponse({
            "id": response_id, "object": "chat.completion", "created": now, "model": model,
            "choices": choices, "usage": _usage(results, [0] * len(results)),
        })

    return router


def _usage(results: list[dict[str, Any]], prompt_index: list[int]) -> dict[str, Any]:
    """Prompt tokens count once per distinct prompt (n samples share it); completions add up."""
    prompt_tokens: dict[int, int] = {}
    cached_tokens: dict[int, int] = {}
    completion_tokens = 0
    for result, p in zip(results, prompt_index):
        meta = result.get("meta_info", {})
        prompt_tokens[p] = int(meta.get("prompt_tokens", 0))
        cached_tokens[p] = max(cached_tokens.get(p, 0), int(meta.get("cached_tokens", 0) or 0))
        completion_tokens += int(meta.get("completion_tokens", 0))
    return proto.usage(sum(prompt_tokens.values()), completion_tokens, sum(cached_tokens.values()))


class _StreamTally:
    """Per-choice progress of a stream: logprob entries already sent and the last meta_info."""

    def __init__(self, num_choices: int) -> None:
        self.num_logprobs_sent = [0] * num_choices
        self.meta: list[dict[str, Any]] = [{} for _ in range(num_choices)]

    def update(self, index: int, item: dict[str, Any]) -> dict[str, Any]:
        meta = item.get("meta_info") or {}
        if meta:
            self.meta[index] = {**self.meta[index], **meta}
        return self.meta[index]

    def usage(self, prompt_index: list[int]) -> dict[str, Any]:
        return _usage([{"meta_info": m} for m in self.meta], prompt_index)


async def _completion_chunks(
    streams: list[AsyncIterator[dict[str, Any]]], req: proto.CompletionRequest, prompt_index: list[int],
    prompt_texts: list[str], response_id: str, created: int, model: str,
) -> AsyncIterator[dict[str, Any]]:
    tally = _StreamTally(len(streams))
    is_first = [True] * len(streams)

    def chunk(choice: dict[str, Any]) -> dict[str, Any]:
        return {"id": response_id, "object": "text_completion", "created": created, "model": model, "choices": [choice]}

    async for index, item in merge_streams(streams):
        meta = tally.update(index, item)
        text = item.get("text", "")
        if req.echo and is_first[index]:
            text = prompt_texts[prompt_index[index]] + text
        logprobs = None
        if req.logprobs is not None:
            logprobs = proto.completion_logprobs(
                meta, include_input=req.echo, start=tally.num_logprobs_sent[index]
            )
            tally.num_logprobs_sent[index] += len(logprobs["tokens"])
        reason = proto.finish_reason(item.get("meta_info"))
        if text or logprobs and logprobs["tokens"] or reason or is_first[index]:
            yield chunk({"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason})
        is_first[index] = False
    if req.include_usage:
        yield {"id": response_id, "object": "text_completion", "created": created, "model": model,
               "choices": [], "usage": tally.usage(prompt_index)}


async def _chat_chunks(
    streams: list[AsyncIterator[dict[str, Any]]], req: proto.ChatRequest, response_id: str, created: int, model: str,
) -> AsyncIterator[dict[str, Any]]:
    tally = _StreamTally(len(streams))

    def chunk(index: int, delta: dict[str, Any], logprobs: Any = None, reason: str | None = None) -> dict[str, Any]:
        return {
            "id": response_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}],
        }

    for index in range(len(streams)):
        yield chunk(index, {"role": "assistant", "content": ""})
    async for index, item in merge_streams(streams):
        meta = tally.update(index, item)
        text = item.get("text", "")
        logprobs = None
        if req.logprobs:
            logprobs = proto.chat_logprobs(meta, start=tally.num_logprobs_sent[index])
            tally.num_logprobs_sent[index] += len(logprobs["content"])
        reason = proto.finish_reason(item.get("meta_info"))
        if text or logprobs and logprobs["content"]:
            yield chunk(index, {"content": text}, logprobs)
        if reason:
            yield chunk(index, {}, None, reason)
    if req.include_usage:
        yield {"id": response_id, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [], "usage": tally.usage([0] * len(streams))}
