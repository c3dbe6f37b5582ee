"""A real server process for tests: started on a free 127.0.0.1 port, waited for, terminated."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_process(command: list[str], port: int, cwd: Path | None = None,
                   env: dict[str, str] | None = None) -> Iterator[str]:
    """Run `command` (a server listening on `port`); yield its URL once /health answers, terminate it after."""
    proc = subprocess.Popen(
        command, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"{command} did not answer /health"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
