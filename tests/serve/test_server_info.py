"""`GET /get_server_info`, `/cache_snapshot`, `/cache_node_text` on a real `sgnb serve` over the shared engine."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from sgnb.serve.server_info import MAX_MAX_NODES, SNAPSHOT_MAX_AGE, SnapshotThrottle
from tests.serve.server_fixtures import API_KEY, SERVED_MODEL_NAME

pytestmark = pytest.mark.slow

PROMPT = "Server info test: a prompt whose prefix the radix cache keeps"
GREEDY = {"max_new_tokens": 3, "temperature": 0}


def _get(server, path: str, **kwargs) -> httpx.Response:
    return httpx.get(server.url + path, timeout=60, **kwargs)


def _fresh_snapshot(server, max_nodes: int = 200) -> dict:
    time.sleep(SNAPSHOT_MAX_AGE)  # past the throttle: a snapshot taken after what the test just did
    r = _get(server, f"/cache_snapshot?max_nodes={max_nodes}")
    assert r.status_code == 200, r.text
    return r.json()


def test_server_info_follows_a_running_request(server, engine):
    idle = _get(server, "/get_server_info").json()
    assert idle["model"] == SERVED_MODEL_NAME and idle["num_running"] == 0 and idle["num_waiting"] == 0
    assert idle["num_used_slots"] == idle["num_slots"] - idle["num_free_slots"]
    assert idle["stats"]["num_slots"] == idle["num_slots"] and 0 <= idle["cache_hit_rate"] <= 1
    body = {"text": PROMPT, "sampling_params": {"max_new_tokens": 400, "temperature": 0, "ignore_eos": True},
            "stream": True}
    with httpx.stream("POST", server.url + "/generate", json=body, timeout=120) as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))  # prefilled, decoding now
        busy = _get(server, "/get_server_info").json()
    # leaving the stream early aborts the request in the engine: its KV slots come back
    assert busy["num_running"] == 1 and busy["num_used_slots"] > idle["num_used_slots"]
    assert busy["pool_usage"] > idle["pool_usage"]
    assert busy["stats"]["num_forward_passes"] > idle["stats"]["num_forward_passes"]
    deadline = time.monotonic() + 30
    while _get(server, "/get_server_info").json()["num_running"] != 0:
        assert time.monotonic() < deadline, "the abandoned stream's request should end"
        time.sleep(0.05)
    engine.check_integrity()


def test_server_info_shows_the_tiered_cache_options_and_stats(server, smollm2_path, tmp_path):
    from sgnb.engine import Engine
    from sgnb.serve import ServerThread, create_app
    from tests.conftest import make_tiny_model

    off = _get(server, "/get_server_info").json()
    assert off["enable_hierarchical_cache"] is False and off["hicache_storage_dir"] is None
    assert "hicache" not in off["stats"]
    storage = str(tmp_path / "kv")
    tiered = Engine(str(make_tiny_model(tmp_path / "tiny", smollm2_path)), enable_hierarchical_cache=True,
                    hicache_size=0.25, hicache_storage_dir=storage, hicache_storage_size=0.5)
    with tiered, ServerThread(create_app(tiered)) as tiered_server:
        r = httpx.post(tiered_server.url + "/generate", json={"text": PROMPT * 4, "sampling_params": GREEDY},
                       timeout=120)
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        while (info := _get(tiered_server, "/get_server_info").json())["stats"]["hicache"]["pages_written"] == 0:
            assert time.monotonic() < deadline, "the prompt's pages should be written to disk (in the background)"
            time.sleep(0.05)
        assert {k: info[k] for k in ("enable_hierarchical_cache", "hicache_size", "hicache_storage_dir",
                                     "hicache_storage_size")} == {
            "enable_hierarchical_cache": True, "hicache_size": 0.25, "hicache_storage_dir": storage,
            "hicache_storage_size": 0.5}
        hicache = info["stats"]["hicache"]
        assert hicache["host_capacity_bytes"] == 2**28 and hicache["disk_capacity_bytes"] == 2**29
        assert hicache["write_policy"] == "write_through"
        tiered.check_integrity()


def test_cache_snapshot_grows_after_a_request(server, engine):
    assert httpx.post(server.url + "/flush_cache", timeout=60).json()["success"]
    empty = _fresh_snapshot(server)
    assert empty["cache"]["num_nodes"] == 1 and empty["running"] == [] and empty["waiting"] == []
    r = httpx.post(server.url + "/generate", json={"text": PROMPT, "sampling_params": GREEDY}, timeout=120)
    meta = r.json()["meta_info"]
    grown = _fresh_snapshot(server)["cache"]
    assert grown["num_nodes"] > 1
    assert grown["cached_tokens"] == meta["prompt_tokens"] + meta["completion_tokens"] - 1
    assert grown["nodes"][1]["text"].startswith("Server info test")
    engine.check_integrity()


def test_node_text_answers_a_nodes_root_path(server, engine):
    assert httpx.post(server.url + "/flush_cache", timeout=60).json()["success"]
    httpx.post(server.url + "/generate", json={"text": PROMPT, "sampling_params": GREEDY}, timeout=120)
    nodes = _fresh_snapshot(server)["cache"]["nodes"]
    parents = {n["parent"] for n in nodes}
    [leaf] = [n for n in nodes if n["id"] not in parents]  # one request: one chain
    answer = _get(server, f"/cache_node_text?node_id={leaf['id']}").json()
    assert answer["id"] == leaf["id"] and answer["text"].startswith(PROMPT)
    assert answer["num_tokens"] == leaf["depth_tokens"]
    gone = _get(server, "/cache_node_text?node_id=999999999")
    assert gone.status_code == 404 and "no node with id" in gone.json()["error"]["message"]
    assert _get(server, "/cache_node_text").status_code == 400  # node_id is required


@pytest.mark.parametrize("value", ["0", "-3", str(MAX_MAX_NODES + 1), "ten", "1.5"])
def test_cache_snapshot_refuses_max_nodes_out_of_bounds(server, value):
    r = _get(server, f"/cache_snapshot?max_nodes={value}")
    assert r.status_code == 400
    assert "'max_nodes'" in r.json()["error"]["message"] and r.json()["error"]["param"] == "max_nodes"


def test_cache_snapshot_shows_at_most_max_nodes(server):
    for prompt in ("Bound test one: left", "Bound test two: right"):
        httpx.post(server.url + "/generate", json={"text": prompt, "sampling_params": GREEDY}, timeout=120)
    cut = _fresh_snapshot(server, max_nodes=2)["cache"]
    assert len(cut["nodes"]) == 2 and cut["truncated"] and cut["num_nodes"] > 2
    whole = _fresh_snapshot(server, max_nodes=MAX_MAX_NODES)["cache"]
    assert len(whole["nodes"]) == whole["num_nodes"] and not whole["truncated"]


@pytest.mark.parametrize("path", ["/get_server_info", "/cache_snapshot", "/cache_node_text?node_id=0"])
def test_state_routes_need_the_api_key(keyed_server, path):
    assert _get(keyed_server, path).status_code == 401
    assert _get(keyed_server, path, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert _get(keyed_server, path, headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200


def test_throttle_serves_one_snapshot_to_repeated_asks(engine):
    from sgnb.serve.engine_bridge import EngineBridge

    async def ask(throttle: SnapshotThrottle, *counts: int) -> list[dict]:
        return list(await asyncio.gather(*(throttle.get(n) for n in counts)))

    async def scenario() -> None:
        slow = SnapshotThrottle(EngineBridge(engine), max_age=60.0)
        burst = await ask(slow, 50, 50, 50, 50)
        assert slow.num_snapshots == 1 and all(s is burst[0] for s in burst)  # one snapshot for the burst
        await ask(slow, 7)
        assert slow.num_snapshots == 2  # another size is another snapshot
        eager = SnapshotThrottle(EngineBridge(engine), max_age=0.0)
        first, second = await ask(eager, 50), await ask(eager, 50)
        assert eager.num_snapshots == 2 and first[0] is not second[0]

    asyncio.run(scenario())
