"""CacheTree's Python-side state after known requests on SmolLM2: nodes, hit counts, locks, LRU, clicks;
the sources it follows: the default backend, an EngineBackend / Runtime, a real `sgnb serve` over HTTP."""

from __future__ import annotations

import time

import httpx
import pytest

from sgnb.widgets import CacheTree
from tests.serve.server_fixtures import API_KEY

pytestmark = pytest.mark.slow

GREEDY = {"max_new_tokens": 3, "temperature": 0}
PROMPT_A = "Widget test: the radix tree keeps shared prefixes once. First branch goes left"
PROMPT_B = "Widget test: the radix tree keeps shared prefixes once. Second branch goes right"


def _common_len(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _by_id(tree: CacheTree) -> dict[int, dict]:
    return {n["id"]: n for n in tree.cache["nodes"]}


def _path(nodes: dict[int, dict], node_id: int) -> list[dict]:
    out = []
    while node_id is not None:
        out.append(nodes[node_id])
        node_id = nodes[node_id]["parent"]
    return out[::-1]


def test_nodes_and_hit_counts_follow_known_requests(engine):
    assert engine.flush_cache()
    tree = CacheTree(engine, live=False)
    assert tree.cache["num_nodes"] == 1 and tree.cache["cached_tokens"] == 0  # just the root
    a = engine.generate(PROMPT_A, GREEDY)
    tree.refresh()
    nodes = _by_id(tree)
    [leaf_a] = [n for n in nodes.values() if n["num_children"] == 0]
    chain = _path(nodes, leaf_a["id"])
    # one chain (the prompt committed at prefill, then the output): every token whose KV was computed,
    # i.e. prompt + completion - 1 (the last sampled token was never fed back)
    assert len(chain) == tree.cache["num_nodes"] and chain[0]["parent"] is None
    assert leaf_a["depth_tokens"] == a["meta_info"]["prompt_tokens"] + a["meta_info"]["completion_tokens"] - 1
    assert all(n["hit_count"] == 0 and n["lock_ref"] == 0 for n in chain)
    assert leaf_a["lru_rank"] == 0 and tree.cache["evictable_tokens"] == tree.cache["cached_tokens"]

    b = engine.generate(PROMPT_B, GREEDY)
    tree.refresh()
    ids_a, ids_b = engine.tokenizer.encode(PROMPT_A), engine.tokenizer.encode(PROMPT_B)
    shared_len = _common_len(ids_a, ids_b)
    assert b["meta_info"]["cached_tokens"] == shared_len
    nodes = _by_id(tree)
    [shared] = [n for n in nodes.values() if n["parent"] == 0]
    assert shared["num_tokens"] == shared_len and shared["num_children"] == 2 and shared["hit_count"] == 1
    assert tree.cache["num_nodes"] == 2 * len(chain)  # the old chain split once, B's chain beside it
    leaves = sorted((n for n in nodes.values() if n["num_children"] == 0), key=lambda n: n["lru_rank"])
    assert [n["lru_rank"] for n in leaves] == [0, 1]
    assert leaves[0]["id"] == leaf_a["id"], "A's branch was used longest ago: it is evicted first"
    assert all(_path(nodes, leaf["id"])[1]["id"] == shared["id"] for leaf in leaves)
    assert tree.cache["cached_tokens"] == sum(n["num_tokens"] for n in nodes.values())
    assert tree.cache["hit_rate"] == pytest.approx(engine.stats()["cache_hit_rate"])

    a2 = engine.generate(PROMPT_A, GREEDY)  # A's prompt is cached now
    tree.refresh()
    nodes = _by_id(tree)
    assert a2["meta_info"]["cached_tokens"] > shared_len
    assert nodes[shared["id"]]["hit_count"] == 2
    below = _path(nodes, leaf_a["id"])[2]  # the next node on A's branch, matched by the rerun
    assert below["hit_count"] == 1 and below["depth_tokens"] == a2["meta_info"]["cached_tokens"]
    assert nodes[leaf_a["id"]]["lru_rank"] == 1  # A is now the most recently used leaf


def test_running_request_locks_its_path_and_live_updates_follow(engine):
    assert engine.flush_cache()
    created = time.monotonic()
    tree = CacheTree(engine, interval=0.1)
    before = tree.num_updates
    stream = engine.generate(PROMPT_A, {"max_new_tokens": 24, "temperature": 0, "ignore_eos": True}, stream=True)
    next(stream)  # the prompt is prefilled and committed to the tree
    locked_seen = running_seen = False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (locked_seen and running_seen):
        c = tree.cache
        locked_seen |= c["num_locked_nodes"] > 0 and c["protected_tokens"] > 0
        running_seen |= c["num_running"] == 1
        time.sleep(0.05)
    for _ in stream:
        pass
    time.sleep(0.5)  # let the poller see the finished state
    tree.stop()
    elapsed = time.monotonic() - created
    assert locked_seen and running_seen, "the live tree should show the running request's locked path"
    c = tree.cache
    assert c["num_running"] == 0 and c["num_locked_nodes"] == 0 and c["protected_tokens"] == 0
    assert c["evictable_tokens"] == c["cached_tokens"] > 0
    assert tree.num_updates > before + 1
    # throttled: at most one update per interval
    assert tree.num_updates - before <= elapsed / 0.1 + 1
    assert not tree.is_live


def test_unchanged_engine_sends_no_update(engine):
    tree = CacheTree(engine, live=False)
    n = tree.num_updates
    assert tree.refresh() is False and tree.num_updates == n


def test_clicking_a_node_shows_its_full_text(engine):
    assert engine.flush_cache()
    a = engine.generate(PROMPT_A, GREEDY)
    tree = CacheTree(engine, live=False)
    [leaf] = [n for n in tree.cache["nodes"] if n["num_children"] == 0]
    tree.selected_node = leaf["id"]  # what a click in the browser sets
    assert tree.selected_text.startswith(PROMPT_A)
    assert a["text"].startswith(tree.selected_text[len(PROMPT_A):])
    assert tree.selected_info == {"id": leaf["id"], "num_tokens": leaf["depth_tokens"], "error": None}
    assert engine.flush_cache()
    tree.selected_node = -1
    tree.selected_node = leaf["id"]  # evicted meanwhile
    assert "no node with id" in tree.selected_info["error"] and tree.selected_text == ""


def test_static_and_rich_views_show_the_same_tree(engine):
    from html.parser import HTMLParser

    from rich.console import Console

    assert engine.flush_cache()
    engine.generate(PROMPT_A, GREEDY)
    engine.generate(PROMPT_B, GREEDY)
    tree = CacheTree(engine, live=False)

    rows: list[dict] = []

    class Rows(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if attrs.get("class") == "sgnb-cache-node":
                rows.append(attrs)

    Rows().feed(tree.static_html())
    assert len(rows) == tree.cache["num_nodes"] >= 4
    assert {int(r["data-node"]): int(r["data-hits"]) for r in rows} == {
        n["id"]: n["hit_count"] for n in tree.cache["nodes"]}
    console = Console(record=True, width=200)
    console.print(tree)
    text = console.export_text()
    assert f"{len(rows)} nodes" in text and "Second branch" in text and "First branch" in text


def test_without_tiers_every_node_is_in_the_pool_and_no_tier_parts_show(engine):
    assert engine.flush_cache()
    engine.generate(PROMPT_A, GREEDY)
    tree = CacheTree(engine, live=False)
    assert len(tree.cache["nodes"]) > 1 and {n["tier"] for n in tree.cache["nodes"]} == {"device"}
    assert tree.cache["tiers"] is None and tree.cache["hicache"] is None
    assert "host memory" not in tree.static_html() and 'data-tier="device"' in tree.static_html()


TIER_PROMPTS = [" ".join([word] * 40) for word in ("apple", "river", "stone")]  # ~40 tokens each, no shared start


def test_tiered_engine_shows_where_each_nodes_kv_sits_and_each_tiers_usage(smollm2_path, tmp_path):
    from sgnb.engine import Engine
    from tests.conftest import make_tiny_model

    model = str(make_tiny_model(tmp_path / "tiny", smollm2_path))
    # a pool of 96 tokens holds two of the prompts: the third evicts the first one to host memory
    with Engine(model, max_total_tokens=96, enable_hierarchical_cache=True,
                hicache_storage_dir=str(tmp_path / "kv")) as engine:
        tree = CacheTree(engine, live=False)
        assert tree.cache["tiers"]["host"]["used_bytes"] == 0 and {n["tier"] for n in tree.cache["nodes"]} == {
            "device"}
        for prompt in TIER_PROMPTS:
            engine.generate(prompt, GREEDY)
        assert tree.refresh()
        c, stats = tree.cache, engine.stats()["hicache"]
        [evicted] = [n for n in c["nodes"] if n["tier"] == "host"]
        assert "apple" in evicted["text"] and evicted["parent"] == 0
        assert {n["tier"] for n in c["nodes"] if "river" in n["text"] or "stone" in n["text"]} == {"device"}
        host, disk = c["tiers"]["host"], c["tiers"]["disk"]
        assert host["used_bytes"] == stats["host_used_bytes"] > 0 and host["capacity_bytes"] > host["used_bytes"]
        assert host["usage"] == host["used_bytes"] / host["capacity_bytes"]
        assert disk["used_bytes"] == stats["disk_used_bytes"] > 0  # the disk tier is written through
        assert c["tiers"]["device"]["capacity"] == c["num_slots"] - 1  # slot 0 pads
        assert c["hicache"]["pages_written"] >= evicted["num_tokens"] // 16
        tree.selected_node = evicted["id"]  # a click on a node below the pool shows its text too
        assert tree.selected_text.startswith(TIER_PROMPTS[0][:20])

        html = tree.static_html()
        assert html.count('data-tier="host"') == 1 and "host memory" in html and 'data-label="disk"' in html

        engine.generate(TIER_PROMPTS[0], GREEDY)  # loaded back into the pool: a device node again
        assert tree.refresh()
        assert "host" not in {n["tier"] for n in tree.cache["nodes"] if "apple" in n["text"]}
        assert tree.cache["hicache"]["hits_by_tier"]["host"] >= 32
        engine.check_integrity()


def test_bad_arguments_are_refused(engine):
    with pytest.raises(ValueError, match="needs an engine with snapshot"):
        CacheTree(object())
    with pytest.raises(ValueError, match="RuntimeEndpoint or an http"):
        CacheTree("localhost:30000")  # not a URL
    with pytest.raises(ValueError, match="max_nodes must be >= 1"):
        CacheTree(engine, max_nodes=0)


def _wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def default_backend():
    """Restores sgnb's default backend (and default model) after the test."""
    from sgnb.lang.global_config import global_config

    saved = global_config.default_backend, global_config.default_model
    yield global_config
    global_config.default_backend, global_config.default_model = saved


def test_no_argument_follows_the_default_backends_engine(engine, default_backend):
    import sgnb
    from sgnb.lang.backends.engine_backend import EngineBackend

    sgnb.set_default_backend(EngineBackend(engine=engine))
    assert engine.flush_cache()
    tree = CacheTree(live=False)
    assert tree.cache["num_nodes"] == 1 and tree.source.startswith("engine ")
    engine.generate(PROMPT_A, GREEDY)
    assert tree.refresh() and tree.cache["num_nodes"] > 1
    [leaf] = [n for n in tree.cache["nodes"] if n["num_children"] == 0]
    tree.selected_node = leaf["id"]
    assert tree.selected_text.startswith(PROMPT_A)
    engine.check_integrity()


def test_no_argument_creates_the_default_engine_like_cells_do(default_backend, smollm2_path, tmp_path):
    from tests.conftest import make_tiny_model

    default_backend.default_backend = None
    default_backend.default_model = str(make_tiny_model(tmp_path / "tiny", smollm2_path))
    tree = CacheTree(live=False)
    created = default_backend.default_backend  # get_default_backend() made it, as a %%sgl cell would
    try:
        assert created is not None and tree.cache_source.engine is created.engine
        created.engine.generate("The default engine's first prompt", GREEDY)
        assert tree.refresh() and tree.cache["cached_tokens"] > 0
        created.engine.check_integrity()
    finally:
        created.shutdown()


def test_engine_backend_and_runtime_show_their_engines_cache(engine, smollm2_path, tmp_path):
    import sgnb
    from sgnb.lang.backends.engine_backend import EngineBackend
    from tests.conftest import make_tiny_model

    assert engine.flush_cache()
    engine.generate(PROMPT_A, GREEDY)
    of_backend = CacheTree(EngineBackend(engine=engine), live=False)
    assert of_backend.cache_source.engine is engine
    assert of_backend.cache["cached_tokens"] == engine.snapshot()["cache"]["cached_tokens"] > 0

    runtime = sgnb.Runtime(model_path=str(make_tiny_model(tmp_path / "tiny", smollm2_path)), max_total_tokens=512)
    try:
        of_runtime = CacheTree(runtime, live=False)
        assert of_runtime.cache["num_nodes"] == 1  # its own engine: nothing cached yet
        runtime.engine.generate(PROMPT_B, GREEDY)
        assert of_runtime.refresh() and of_runtime.cache["num_nodes"] > 1
        runtime.engine.check_integrity()
    finally:
        runtime.shutdown()
    engine.check_integrity()


def test_remote_tree_grows_while_another_client_sends_requests(server, engine):
    assert engine.flush_cache()
    tree = CacheTree(server.url, interval=0.1)
    try:
        assert tree.source == server.url and tree.cache["num_nodes"] == 1 and tree.error == ""
        before = tree.num_updates
        for prompt in (PROMPT_A, PROMPT_B):  # another client: plain HTTP, not the widget's endpoint
            r = httpx.post(server.url + "/generate", json={"text": prompt, "sampling_params": GREEDY}, timeout=120)
            assert r.status_code == 200
        def texts() -> str:
            return " ".join(n["text"] for n in tree.cache["nodes"])

        # each request's prompt and then its output enter the tree: wait until the view shows the final tree
        final_num_nodes = engine.snapshot()["cache"]["num_nodes"]
        _wait_for(lambda: "Second" in texts() and tree.cache["num_nodes"] == final_num_nodes,
                  "the remote tree to show both branches")
        assert tree.num_updates > before and tree.is_live
        assert final_num_nodes >= 4 and "Widget test" in texts() and "First" in texts()
        nodes = {n["id"]: n for n in tree.cache["nodes"]}

        def is_on_branch_b(node: dict) -> bool:
            while node is not None and "Second" not in node["text"]:
                node = nodes.get(node["parent"])
            return node is not None

        [leaf_b] = [n for n in nodes.values() if n["num_children"] == 0 and is_on_branch_b(n)]
        tree.selected_node = leaf_b["id"]  # a click asks the server for the root path's text
        assert tree.selected_text.startswith(PROMPT_B)
        assert tree.selected_info == {"id": leaf_b["id"], "num_tokens": leaf_b["depth_tokens"], "error": None}
        tree.selected_node = -1
        tree.selected_node = 10**9
        assert "no node with id" in tree.selected_info["error"]
    finally:
        tree.stop()
    engine.check_integrity()


def test_remote_tree_sends_the_endpoints_api_key(keyed_server, engine):
    from sgnb.lang.backends.errors import BackendError
    from sgnb.lang.backends.runtime_endpoint import RuntimeEndpoint

    with pytest.raises(BackendError, match="401"):
        CacheTree(keyed_server.url, live=False)
    engine.generate(PROMPT_A, GREEDY)
    tree = CacheTree(RuntimeEndpoint(keyed_server.url, api_key=API_KEY), live=False)
    assert tree.error == "" and tree.cache["num_nodes"] > 1


def test_remote_tree_shows_a_dead_server_and_recovers_when_it_returns(engine):
    from sgnb.serve import ServerThread, create_app

    first = ServerThread(create_app(engine)).start()
    tree = CacheTree(first.url, interval=0.1)
    try:
        assert tree.error == ""
        first.stop()
        _wait_for(lambda: "cannot reach" in tree.error or "failed" in tree.error, "the widget to show the error")
        assert tree.is_live, "a network error must not end the poller"
        with ServerThread(create_app(engine), port=first.port) as second:
            _wait_for(lambda: tree.error == "", "the widget to recover")
            httpx.post(second.url + "/generate", json={"text": PROMPT_B, "sampling_params": GREEDY}, timeout=120)
            _wait_for(lambda: any("Second" in n["text"] for n in tree.cache["nodes"]), "the new request's branch")
            assert tree.is_live
    finally:
        tree.stop()
    engine.check_integrity()
