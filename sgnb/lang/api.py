"""Top-level helpers: the default backend, `Runtime`, `flush_cache`."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sgnb.lang.backends.base import Backend
from sgnb.lang.global_config import global_config

_lock = threading.Lock()
_engine_backends: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _is_engine(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("generate", "score", "tokenizer", "flush_cache"))


def as_backend(obj: Any) -> Backend:
    """A `Backend` as is; an in-process `sgnb.Engine` wrapped (once) in an `EngineBackend`."""
    if isinstance(obj, Backend):
        return obj
    if _is_engine(obj):
        from sgnb.lang.backends.engine_backend import EngineBackend

        with _lock:
            backend = _engine_backends.get(obj)
            if backend is None:
                backend = EngineBackend(engine=obj)
                _engine_backends[obj] = backend
            return backend
    raise ValueError(
        f"expected a backend (sgnb.Runtime(...), sgnb.Engine(...), sgnb.RuntimeEndpoint(url), sgnb.OpenAI(model)), "
        f"got {type(obj).__name__}"
    )


def set_default_backend(backend: Any) -> None:
    """Backend used by `run`/`run_batch` when none is passed (a Backend or an `sgnb.Engine`)."""
    global_config.default_backend = as_backend(backend)


def get_default_backend() -> Backend:
    """The default backend; creates the in-process engine on `global_config.default_model` on first use."""
    with _lock:
        if global_config.default_backend is None:
            from sgnb.lang.backends.engine_backend import EngineBackend

            global_config.default_backend = EngineBackend(model=global_config.default_model)
        return global_config.default_backend


def resolve_backend(backend: Any = None) -> Backend:
    return get_default_backend() if backend is None else as_backend(backend)


def flush_cache(backend: Any = None) -> Any:
    """Drop the prefix cache of `backend` (default: the default backend)."""
    return resolve_backend(backend).flush_cache()


def Runtime(model_path: str | None = None, model: str | None = None, **engine_kwargs: Any) -> Backend:
    """A local engine backend (SGLang's `sgl.Runtime(model_path=...)`, here in-process, no server)."""
    if model_path is not None and model is not None:
        raise ValueError("pass model_path or model, not both")
    from sgnb.lang.backends.engine_backend import EngineBackend

    return EngineBackend(model=model_path or model or global_config.default_model, **engine_kwargs)
