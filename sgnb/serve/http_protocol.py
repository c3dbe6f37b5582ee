"""uvicorn's h11 protocol with a request-header timeout.

uvicorn arms a timer only after a response (the keep-alive timeout) and cancels it on the first byte of the
next request, so a client that connects and sends nothing, or half a request line, held its connection (and
a file descriptor) forever. `HeaderTimeoutH11Protocol` closes a connection whose request headers are not
complete `header_timeout` seconds after it opened or after its previous response.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderTimeoutH11Protocol(H11Protocol):
    """`H11Protocol` that closes connections still waiting for request headers after `header_timeout` s.

    Pass to uvicorn as `Config(http=functools.partial(HeaderTimeoutH11Protocol, header_timeout=...))`.
    """

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()  # the deadline of the next request's headers on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self._header_timeout, self._on_header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        # their_state is IDLE until h11 has parsed a complete request head (a request in progress is not IDLE).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
