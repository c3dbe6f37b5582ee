"""Fixtures that serve the shared session engine over real HTTP on 127.0.0.1 (import them into a test module).

The engine is `tests/conftest.py`'s session `engine`; each server here is a uvicorn thread on a free port.
"""

from __future__ import annotations

import pytest

SERVED_MODEL_NAME = "smollm2-135m"
API_KEY = "sgnb-test-key"


@pytest.fixture(scope="module")
def server(engine):
    """`sgnb serve` for the shared engine, without an API key; yields the ServerThread (`.url`)."""
    from sgnb.serve import ServerThread, create_app

    with ServerThread(create_app(engine, served_model_name=SERVED_MODEL_NAME)) as thread:
        yield thread
    engine.check_integrity()  # every request the module sent has released its KV slots


@pytest.fixture(scope="module")
def keyed_server(engine):
    """`sgnb serve` for the shared engine, requiring `Authorization: Bearer API_KEY`."""
    from sgnb.serve import ServerThread, create_app

    with ServerThread(create_app(engine, api_key=API_KEY, served_model_name=SERVED_MODEL_NAME)) as thread:
        yield thread
    engine.check_integrity()
