"""Language tests share the session engine (tests/conftest.py) through one EngineBackend."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def session_backend(engine):
    import sgnb as sgl
    from sgnb.lang.backends.engine_backend import EngineBackend

    backend = EngineBackend(engine=engine)
    previous = sgl.global_config.default_backend
    sgl.set_default_backend(backend)
    yield backend
    sgl.global_config.default_backend = previous


@pytest.fixture
def backend(session_backend, engine):
    """The default backend for a test that runs programs; the engine must be intact afterwards."""
    yield session_backend
    engine.check_integrity()
