"""Errors of the model providers: each message names the provider (and the URL, for remote ones)."""

from __future__ import annotations


class BackendError(RuntimeError):
    """A model provider failed (unreachable server, HTTP error, engine error). The message names which."""


class UnsupportedFeatureError(BackendError, ValueError):
    """The program asked a provider for something it cannot do (regex on an API, select on chat-only...)."""


class HTTPStatusError(BackendError):
    """The server answered with an error status; `status_code` and `server_message` tell which."""

    def __init__(self, message: str, status_code: int, server_message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.server_message = server_message


class SpecMatchError(BackendError):
    """The reply of a speculative call never matched the program's format, and no fallback was possible."""
