"""App-level behaviour of `sgnb serve`: API key, error bodies for unknown routes and methods."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.serve.server_fixtures import API_KEY, SERVED_MODEL_NAME

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("path", ["/get_model_info", "/v1/models"])
def test_api_key_is_required(keyed_server, path):
    assert httpx.get(keyed_server.url + path).status_code == 401
    wrong = httpx.get(keyed_server.url + path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "API key invalid" in wrong.json()["error"]["message"]
    right = httpx.get(keyed_server.url + path, headers={"Authorization": f"Bearer {API_KEY}"})
    assert right.status_code == 200


def test_api_key_guards_generation_and_streams(keyed_server):
    body = {"text": "Hi", "sampling_params": {"max_new_tokens": 2, "temperature": 0}, "stream": True}
    r = httpx.post(keyed_server.url + "/generate", json=body)
    assert r.status_code == 401 and "missing" in r.json()["error"]["message"]
    with httpx.stream("POST", keyed_server.url + "/generate", json=body,
                      headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as ok:
        assert ok.status_code == 200
        assert [line for line in ok.iter_lines() if line][-1] == "data: [DONE]"


def test_health_answers_without_a_key(keyed_server):
    assert httpx.get(keyed_server.url + "/health").json() == {"status": "ok"}


def test_openai_client_with_a_wrong_key_gets_authentication_error(keyed_server):
    bad = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    good = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key=API_KEY, max_retries=0)
    assert good.models.list().data[0].id == SERVED_MODEL_NAME


def test_unknown_route_is_404_json(server):
    r = httpx.post(server.url + "/v1/embeddings", json={})
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "Unknown route: POST /v1/embeddings"


def test_wrong_method_is_405_json(server):
    r = httpx.get(server.url + "/generate")
    assert r.status_code == 405
    assert "GET" in r.json()["error"]["message"]


def test_create_app_rejects_an_empty_api_key(engine):
    from sgnb.serve import create_app

    with pytest.raises(ValueError, match="api_key"):
        create_app(engine, api_key="")
