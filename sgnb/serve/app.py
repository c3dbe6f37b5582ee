"""The ASGI app: SGLang-native and OpenAI-compatible routes over one Engine, with an optional API key."""

from __future__ import annotations

import secrets
import time
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from sgnb.serve import native_api, openai_api, server_info
from sgnb.serve.engine_bridge import EngineBridge
from sgnb.serve.errors import error_response, install_error_handlers

# Routes that answer without the API key (liveness probes).
_PUBLIC_PATHS = frozenset({"/health"})


class APIKeyMiddleware:
    """Pure ASGI middleware: reject requests without `Authorization: Bearer <api_key>` (401).

    (Pure ASGI rather than BaseHTTPMiddleware so streaming responses pass through untouched.)
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _PUBLIC_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not secrets.compare_digest(given, self._expected):
                reason = "missing" if not given else "invalid"
                response = error_response(401, f"API key {reason}: send 'Authorization: Bearer <key>'")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def model_info(engine: Any, served_model_name: str) -> dict[str, Any]:
    """What `GET /get_model_info` answers: SGLang's fields plus the chat template and the image placeholder (for
    remote frontends)."""
    tokenizer = engine.tokenizer
    model_path = str(getattr(engine, "model_path", served_model_name))
    return {
        "model_path": model_path,
        "tokenizer_path": model_path,
        "served_model_name": served_model_name,
        "is_generation": True,
        "chat_template": getattr(tokenizer, "chat_template", None),
        "bos_token": getattr(tokenizer, "bos_token", None),
        "eos_token": getattr(tokenizer, "eos_token", None),
        "max_context_len": getattr(engine, "max_context_len", None),
        "image_token": getattr(engine, "image_token", None),  # the prompt's image placeholder; None: text only
    }


def create_app(engine: Any, api_key: str | None = None, served_model_name: str | None = None) -> FastAPI:
    """An ASGI app serving `engine`. With `api_key`, every route but /health needs `Authorization: Bearer`.

    The app does not own the engine: shutting the server down leaves the engine running.
    """
    if api_key is not None and not api_key:
        raise ValueError("api_key must be a non-empty string or None")
    name = served_model_name or str(engine.config.model)
    info = model_info(engine, name)
    app = FastAPI(title="sgnb serve", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    if api_key is not None:
        app.add_middleware(APIKeyMiddleware, api_key=api_key)
    bridge = EngineBridge(engine)
    app.state.engine = engine
    app.state.bridge = bridge
    app.include_router(native_api.build_router(bridge, info))
    app.include_router(server_info.build_router(bridge, info))
    names = openai_api.ModelNames(name, aliases=(info["model_path"], "default"))
    app.include_router(openai_api.build_router(bridge, names, int(time.time())))
    return app
