"""Running the app: `serve()` (blocking, what `sgnb serve` calls) and `ServerThread` (in-process, background).

`ServerThread` runs uvicorn on a daemon thread with its own event loop, so a notebook or a test can
serve an engine it already holds and talk to it over real HTTP on 127.0.0.1.
Both bound every request and connection by `HTTPLimits` (body size, header/body/keep-alive timeouts).
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from typing import Any

from sgnb.serve.limits import HTTPLimits, RequestBodyLimit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 30000


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"sgnb serve cannot bind {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _uvicorn_config(app: Any, limits: HTTPLimits, log_level: str, timeout_graceful_shutdown: int) -> Any:
    """uvicorn's config for `app` wrapped in the body limit, on the h11 protocol with a header timeout."""
    import uvicorn

    from sgnb.serve.http_protocol import HeaderTimeoutH11Protocol

    return uvicorn.Config(
        RequestBodyLimit(app, limits), log_level=log_level, lifespan="off",
        timeout_graceful_shutdown=timeout_graceful_shutdown, timeout_keep_alive=limits.keep_alive_timeout,
        http=functools.partial(HeaderTimeoutH11Protocol, header_timeout=limits.header_timeout),
    )  # fmt: skip


class ServerThread:
    """Serve an ASGI app with uvicorn on a background thread; `url` is where it listens.

    Use as a context manager, or call `start()` / `stop()`. `port=0` picks a free port.
    """

    def __init__(self, app: Any, host: str = DEFAULT_HOST, port: int = 0, log_level: str = "warning",
                 limits: HTTPLimits | None = None) -> None:
        import uvicorn

        self._socket = _bind(host, port)
        self.host = host
        self.port = self._socket.getsockname()[1]
        config = _uvicorn_config(app, limits or HTTPLimits(), log_level, timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"sgnb-serve-{self.port}", daemon=True)
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"sgnb serve failed to start on {self.url}: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"sgnb serve did not start on {self.url} within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    model: str = "smollm2-135m",
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    api_key: str | None = None,
    served_model_name: str | None = None,
    log_level: str = "info",
    limits: HTTPLimits | None = None,
    **engine_kwargs: Any,
) -> None:
    """Load `model` into an Engine and serve it over HTTP until interrupted (blocking).

    Binds 127.0.0.1 by default; pass host="0.0.0.0" to accept remote clients (then set `api_key`).
    `limits` bounds request bodies and slow connections (default `HTTPLimits()`).
    `engine_kwargs` go to `Engine(...)` (dtype, device, attention_backend, ...).
    """
    import uvicorn

    from sgnb.engine.engine import Engine
    from sgnb.serve.app import create_app

    sock = _bind(host, port)  # fail fast on a busy port, before loading the model
    engine = Engine(model, **engine_kwargs)
    try:
        app = create_app(engine, api_key=api_key, served_model_name=served_model_name or str(model))
        server = uvicorn.Server(_uvicorn_config(app, limits or HTTPLimits(), log_level, timeout_graceful_shutdown=5))
        print(f"sgnb serve: {model} on http://{host}:{sock.getsockname()[1]}", flush=True)
        server.run(sockets=[sock])
    finally:
        sock.close()
        engine.shutdown()
