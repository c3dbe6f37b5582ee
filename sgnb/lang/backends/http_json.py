"""A small JSON-over-HTTP client for the remote backends (httpx; thread-safe; clear errors).

Every failure becomes a `BackendError` naming the URL: unreachable server, timeout, HTTP error status
(with the server's own error message), a body that is not JSON, or an error event inside a stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from sgnb.lang.backends.errors import BackendError, HTTPStatusError


def _server_message(response: httpx.Response) -> str:
    """The error message inside an error response (OpenAI/SGLang `{"error": {"message"}}`, FastAPI `detail`)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            return str(error.get("message", error))
        if error is not None:
            return str(error)
    return json.dumps(body)[:500]


class JSONClient:
    """GET/POST JSON and read SSE streams against one base URL, with an optional bearer API key."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 600.0, what: str = "server"):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.what = what
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=10.0))

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _fail(self, method: str, path: str, exc: Exception) -> BackendError:
        url = self.url(path)
        if isinstance(exc, httpx.ConnectError):
            return BackendError(f"cannot reach the {self.what} at {url}: {exc} (is it running?)")
        if isinstance(exc, httpx.TimeoutException):
            return BackendError(f"the {self.what} at {url} timed out ({type(exc).__name__})")
        return BackendError(f"{method} {url} failed: {type(exc).__name__}: {exc}")

    def _check(self, method: str, path: str, response: httpx.Response) -> None:
        if response.status_code >= 400:
            message = _server_message(response)
            raise HTTPStatusError(
                f"the {self.what} at {self.url(path)} answered HTTP {response.status_code}: {message}",
                response.status_code, message,
            )

    def request(self, method: str, path: str, body: Any = None, expect_json: bool = True) -> Any:
        """Send one request; the decoded JSON answer (or the text, with `expect_json=False`)."""
        try:
            response = self._client.request(method, self.url(path), json=body)
        except httpx.HTTPError as exc:
            raise self._fail(method, path, exc) from exc
        self._check(method, path, response)
        if not expect_json:
            return response.text
        try:
            return response.json()
        except ValueError as exc:
            raise BackendError(
                f"the {self.what} at {self.url(path)} answered with a body that is not JSON: {response.text[:200]!r}"
            ) from exc

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def stream(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        """POST and yield each SSE `data:` JSON object until `data: [DONE]`; error events raise."""
        try:
            with self._client.stream("POST", self.url(path), json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check("POST", path, response)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        return
                    try:
                        event = json.loads(data)
                    except ValueError as exc:
                        raise BackendError(
                            f"the {self.what} at {self.url(path)} sent a bad stream event: {data[:200]!r}"
                        ) from exc
                    if isinstance(event, dict) and "error" in event and len(event) == 1:
                        error = event["error"]
                        message = error.get("message", error) if isinstance(error, dict) else error
                        raise BackendError(
                            f"the {self.what} at {self.url(path)} reported an error mid-stream: {message}"
                        )
                    yield event
        except httpx.HTTPError as exc:
            raise self._fail("POST", path, exc) from exc

    def close(self) -> None:
        self._client.close()
