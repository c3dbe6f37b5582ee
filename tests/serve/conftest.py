"""Serve tests talk to a real `sgnb serve` (uvicorn thread) over the shared SmolLM2 engine (fixtures in
`tests.serve.server_fixtures`, registered by the root conftest)."""
