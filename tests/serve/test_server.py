"""Running `sgnb serve`: the in-process ServerThread and the real `sgnb serve` command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from fastapi import FastAPI

from sgnb.serve import ServerThread


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sgnb_serve_command_serves_the_model_with_an_api_key():
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sgnb.cli", "serve", "--port", str(port), "--api-key", "k", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "sgnb serve did not come up"
            time.sleep(0.2)
        headers = {"Authorization": "Bearer k"}
        assert httpx.get(url + "/v1/models").status_code == 401
        assert httpx.get(url + "/v1/models", headers=headers).json()["data"][0]["id"] == "smollm2-135m"
        r = httpx.post(url + "/generate", headers=headers, timeout=60,
                       json={"text": "Hello", "sampling_params": {"max_new_tokens": 2, "temperature": 0}})
        assert r.json()["meta_info"]["completion_tokens"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)
