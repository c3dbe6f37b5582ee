"""Serve tests talk to a real `sgnb serve` (uvicorn thread) over the shared SmolLM2 engine."""

from tests.serve.server_fixtures import keyed_server, server  # noqa: F401  (fixtures)
