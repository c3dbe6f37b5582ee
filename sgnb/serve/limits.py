"""What one HTTP request may cost the server: `HTTPLimits` and the body-limiting ASGI middleware.

Without bounds a client could hold the server with a 20 MB prompt (read whole, then tokenized) or with a
connection that never finishes its body. `RequestBodyLimit` reads every request body itself before the app
sees it: a declared `Content-Length` over `max_request_bytes` is refused with 413 before any of the body is
read, a chunked body with 413 as soon as it passes the limit, and a body that does not arrive within
`body_timeout` seconds with 408. Each refusal closes the connection. Header and keep-alive timeouts are the
protocol's business (`sgnb.serve.http_protocol`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sgnb.serve.errors import error_response

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024  # 8 MiB: ~2M tokens of text, far past any model's context
# After a 413 the rest of the body is read and dropped for at most this long before the connection closes
# (a "lingering close"): closing a socket with unread input resets it, and a client still sending its body
# (httpx, requests) would then lose the answer it has not read yet.
LINGER_SECONDS = 2.0


@dataclass(slots=True, frozen=True)
class HTTPLimits:
    """Bounds on one request and one connection; all timeouts in seconds."""

    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # larger bodies get 413
    header_timeout: float = 10.0      # connect (or previous response) -> complete request headers
    body_timeout: float = 30.0        # complete headers -> complete body, else 408
    keep_alive_timeout: float = 5.0   # an idle connection between requests is closed after this

    def __post_init__(self) -> None:
        if self.max_request_bytes <= 0:
            raise ValueError(f"max_request_bytes must be positive, got {self.max_request_bytes}")
        for name in ("header_timeout", "body_timeout", "keep_alive_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {getattr(self, name)}")


class _BodyTooLarge(Exception):
    pass


class RequestBodyLimit:
    """Pure ASGI middleware: read each HTTP body within `limits`, then hand the app the buffered body.

    (The app's routes read their JSON bodies whole anyway, so buffering costs nothing extra.)
    """

    def __init__(self, app: ASGIApp, limits: HTTPLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.max_request_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, 413, f"request body of {int(declared)} bytes exceeds "
                                                          f"the server's limit of {limit} bytes", linger=True)
            return
        try:
            body = await asyncio.wait_for(self._read_body(receive), self.limits.body_timeout)
        except _BodyTooLarge:
            await self._refuse(scope, receive, send, 413, f"request body exceeds the server's limit of {limit} bytes",
                               linger=True)
            return
        except asyncio.TimeoutError:
            await self._refuse(scope, receive, send, 408,
                               f"request body not received within {self.limits.body_timeout:g} s")
            return
        if body is None:  # the client went away mid-body: nobody to answer
            return
        is_replayed = False

        async def replay() -> Message:
            nonlocal is_replayed
            if is_replayed:
                return await receive()  # after the body: http.disconnect, which streaming responses wait for
            is_replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None if the client disconnected; raises `_BodyTooLarge` past the limit."""
        chunks: list[bytes] = []
        num_bytes = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            num_bytes += len(chunk)
            if num_bytes > self.limits.max_request_bytes:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status_code: int, message: str,
                      linger: bool = False) -> None:
        """Answer `status_code` and close the connection. The rest of the body is never used: with `linger`,
        it is read and dropped (for at most LINGER_SECONDS) between sending the answer and closing."""
        response = error_response(status_code, message)
        response.headers["connection"] = "close"
        await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body, "more_body": linger})
        if linger:
            try:
                await asyncio.wait_for(_discard_body(receive), LINGER_SECONDS)
            except asyncio.TimeoutError:
                pass
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _discard_body(receive: Receive) -> None:
    """Read the request body to its end (or the client's disconnect), keeping none of it."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return
