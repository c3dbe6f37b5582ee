"""Running `sgnb serve`: the in-process ServerThread, its request limits, and the real `sgnb serve` command."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from sgnb.serve import ServerThread, create_app
from sgnb.serve.limits import HTTPLimits
from tests.serve.server_process import free_port, server_process


def _tiny_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict:
        return {"pong": True}

    return app


def test_server_thread_binds_a_free_localhost_port_and_stops():
    with ServerThread(_tiny_app()) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        assert httpx.get(server.url + "/ping").json() == {"pong": True}
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/ping", timeout=2)


def test_busy_port_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot bind 127.0.0.1:{port}"):
            ServerThread(_tiny_app(), port=port)


def _sgnb_serve(*args: str) -> contextlib.AbstractContextManager[str]:
    """A real `python -m <args> --port P` server; yields its URL once /health answers."""
    port = free_port()
    return server_process([sys.executable, "-m", *args, "--port", str(port), "--log-level", "warning"], port)


@pytest.mark.slow
def test_sgnb_serve_command_serves_the_model_with_an_api_key():
    with _sgnb_serve("sgnb.cli", "serve", "--api-key", "k") as url:
        headers = {"Authorization": "Bearer k"}
        assert httpx.get(url + "/v1/models").status_code == 401
        assert httpx.get(url + "/v1/models", headers=headers).json()["data"][0]["id"] == "smollm2-135m"
        r = httpx.post(url + "/generate", headers=headers, timeout=60,
                       json={"text": "Hello", "sampling_params": {"max_new_tokens": 2, "temperature": 0}})
        assert r.json()["meta_info"]["completion_tokens"] == 2


@pytest.mark.slow
def test_python_m_sgnb_serve_takes_sglangs_model_path_flag_and_max_request_bytes():
    with _sgnb_serve("sgnb", "serve", "--model-path", "smollm2-135m", "--max-request-bytes", "2000") as url:
        assert httpx.get(url + "/get_model_info").json()["served_model_name"] == "smollm2-135m"
        r = httpx.post(url + "/generate", json={"text": "x" * 5000}, timeout=30)
        assert r.status_code == 413 and "limit of 2000 bytes" in r.json()["error"]["message"]
        r = httpx.post(url + "/generate", timeout=60,
                       json={"text": "Hello", "sampling_params": {"max_new_tokens": 2, "temperature": 0}})
        assert r.json()["meta_info"]["completion_tokens"] == 2


# --- request limits ----------------------------------------------------------------------------

_GENERATE = {"text": "Hello", "sampling_params": {"max_new_tokens": 2, "temperature": 0}}


def _answers_generate(url: str) -> bool:
    r = httpx.post(url + "/generate", json=_GENERATE, timeout=60)
    return r.status_code == 200 and r.json()["meta_info"]["completion_tokens"] == 2


@pytest.mark.slow
def test_a_20mb_body_is_refused_with_413_quickly_and_the_server_keeps_serving(server, engine):
    body = json.dumps({"text": "x" * 20_000_000, "sampling_params": {"max_new_tokens": 1}}).encode()
    start = time.monotonic()
    r = httpx.post(server.url + "/generate", content=body, headers={"Content-Type": "application/json"}, timeout=60)
    elapsed = time.monotonic() - start
    assert r.status_code == 413, r.text
    assert r.headers["connection"] == "close"
    assert f"limit of {HTTPLimits().max_request_bytes} bytes" in r.json()["error"]["message"]
    assert elapsed < 10, f"the 413 took {elapsed:.1f} s: the body was read (the old server took ~40 s)"
    assert _answers_generate(server.url)
    engine.check_integrity()


_SHORT = HTTPLimits(max_request_bytes=64 * 1024, header_timeout=1.0, body_timeout=1.0, keep_alive_timeout=1.0)
_CLOSE_WITHIN_S = 4.0  # all of _SHORT's timeouts are 1 s; uvicorn's own keep-alive default is 5 s


@pytest.fixture(scope="module")
def short_limits_server(engine):
    with ServerThread(create_app(engine), limits=_SHORT) as thread:
        yield thread
    engine.check_integrity()


@pytest.mark.slow
def test_a_chunked_body_past_the_limit_gets_413_and_the_server_keeps_serving(short_limits_server, engine):
    def chunks() -> Iterator[bytes]:  # no Content-Length: httpx sends it chunked
        yield b'{"text": "'
        for _ in range(100):
            yield b"x" * 4096
        yield b'"}'

    r = httpx.post(short_limits_server.url + "/generate", content=chunks(), timeout=30)
    assert r.status_code == 413
    assert "limit of 65536 bytes" in r.json()["error"]["message"]
    assert _answers_generate(short_limits_server.url)
    engine.check_integrity()


def _read_until_closed(port: int, payload: bytes) -> bytes:
    """Connect, send `payload`, then read until the server closes; fails if it stays open _CLOSE_WITHIN_S."""
    with socket.create_connection(("127.0.0.1", port), timeout=_CLOSE_WITHIN_S) as sock:
        start = time.monotonic()
        sock.sendall(payload)
        received = b""
        while time.monotonic() - start < _CLOSE_WITHIN_S:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                return received
            received += data
        pytest.fail(f"the server held the connection open for {_CLOSE_WITHIN_S} s after {payload[:60]!r}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "payload",
    [b"", b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\n"],
    ids=["connected-and-silent", "headers-never-finish"],
)
def test_a_connection_without_complete_headers_is_closed_after_the_header_timeout(short_limits_server, payload):
    received = _read_until_closed(short_limits_server.port, payload)
    assert received == b""
    assert httpx.get(short_limits_server.url + "/health").status_code == 200


@pytest.mark.slow
def test_a_chunked_body_that_never_finishes_gets_408_and_is_closed(short_limits_server, engine):
    stalled = (b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"tex\r\n")
    received = _read_until_closed(short_limits_server.port, stalled)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert b"not received within 1 s" in received
    assert _answers_generate(short_limits_server.url)
    engine.check_integrity()


@pytest.mark.slow
def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(short_limits_server):
    received = _read_until_closed(short_limits_server.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert httpx.get(short_limits_server.url + "/health").status_code == 200


def test_http_limits_reject_non_positive_values():
    with pytest.raises(ValueError, match="max_request_bytes"):
        HTTPLimits(max_request_bytes=0)
    with pytest.raises(ValueError, match="body_timeout"):
        HTTPLimits(body_timeout=-1.0)
