"""Server-sent events framing: `data: {json}\\n\\n` lines ending with `data: [DONE]` (SGLang and OpenAI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from sgnb.serve.encoding import dumps
from sgnb.serve.errors import APIError, error_body

DONE = "data: [DONE]\n\n"


def sse_event(payload: Any) -> str:
    return f"data: {dumps(payload)}\n\n"


async def _framed(events: AsyncIterator[Any]) -> AsyncIterator[str]:
    try:
        async for payload in events:
            yield sse_event(payload)
    except APIError as exc:
        # The status line is already sent; report the error in-band, as SGLang and OpenAI servers do.
        yield sse_event(error_body(exc.status_code, exc.message, exc.param))
    except Exception as exc:  # noqa: BLE001 - surfaced to the client, not swallowed
        yield sse_event(error_body(500, f"Internal server error: {type(exc).__name__}: {exc}"))
    yield DONE


def sse_response(events: AsyncIterator[Any]) -> StreamingResponse:
    """Stream each payload of `events` as one SSE `data:` line, then `data: [DONE]`."""
    return StreamingResponse(
        _framed(events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
