"""`sgnb serve`: an ASGI app over one Engine (SGLang-native and OpenAI-compatible routes)."""

from __future__ import annotations

from sgnb.serve.app import create_app
from sgnb.serve.server import ServerThread, serve

__all__ = ["create_app", "serve", "ServerThread"]
