"""Top-level helpers: backend resolution, set_default_backend, flush_cache, Runtime."""

from __future__ import annotations

import pytest

import sgnb as sgl
from sgnb.lang.api import as_backend, resolve_backend
from sgnb.lang.backends.engine_backend import EngineBackend

pytestmark = pytest.mark.slow


def test_an_engine_is_wrapped_once(engine, backend):
    wrapped = as_backend(engine)
    assert isinstance(wrapped, EngineBackend) and wrapped.engine is engine
    assert as_backend(engine) is wrapped
    assert as_backend(backend) is backend


def test_set_default_backend_accepts_an_engine(engine, backend):
    previous = sgl.global_config.default_backend
    try:
        sgl.set_default_backend(engine)
        assert resolve_backend().engine is engine
    finally:
        sgl.global_config.default_backend = previous
    assert resolve_backend() is backend


def test_flush_cache_empties_the_radix_cache(engine, backend):
    backend.cache_prefix("Some text to cache in the tree.")
    assert engine.stats()["tree_tokens"] > 0
    assert sgl.flush_cache() is True
    assert engine.stats()["tree_tokens"] == 0


def test_bad_backends_and_runtime_arguments_are_named():
    with pytest.raises(ValueError, match="expected a backend.*got str"):
        as_backend("http://localhost:30000")
    with pytest.raises(ValueError, match="model_path or model, not both"):
        sgl.Runtime(model_path="a", model="b")
