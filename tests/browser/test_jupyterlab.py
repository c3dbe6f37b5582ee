"""Real browser: JupyterLab runs a notebook; the program view, fork tree and cache tree render and update live.

Point it at another notebook with SGNB_BROWSER_NOTEBOOK=<name in notebooks/> (default 00_widgets_smoke.ipynb);
the generic checks hold for any notebook with at least one ProgramView and one CacheTree, the exact counts
only for the smoke notebook. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NOTEBOOK = os.environ.get("SGNB_BROWSER_NOTEBOOK", "00_widgets_smoke.ipynb")
IS_SMOKE = NOTEBOOK == "00_widgets_smoke.ipynb"

# What the page shows right now: every program view, every cache tree, the code cells' prompts, errors.
OBSERVE_JS = """() => {
  const views = [...document.querySelectorAll('.sgnb-pv')].map((el) => ({
    title: el.querySelector('.sgnb-title')?.textContent || '',
    status: el.dataset.status,
    numStates: Number(el.dataset.numStates || 0),
    chars: Number(el.querySelector('.sgnb-pv-text')?.dataset.chars || 0),
    forkNodes: el.querySelectorAll('.sgnb-fork-node').length,
    spans: [...el.querySelectorAll('.sgnb-pv-text .sgnb-span')].map((s) => s.dataset.var),
    kinds: [...new Set([...el.querySelectorAll('.sgnb-pv-text .sgnb-tok')].map((t) => t.dataset.kind))],
  }));
  const caches = [...document.querySelectorAll('.sgnb-ct')].map((el) => ({
    numNodes: Number(el.dataset.numNodes || 0),
    numShown: Number(el.dataset.numShown || 0),
    rows: el.querySelectorAll('.sgnb-ct-node').length,
    updates: Number(el.dataset.updates || 0),
    tierTags: [...el.querySelectorAll('.sgnb-ct-node .sgnb-ct-tier')].map((t) => [t.dataset.tier, t.textContent]),
    legend: [...el.querySelectorAll('.sgnb-ct-legend .sgnb-ct-tier')].map((t) => t.textContent),
    tierGauges: Object.fromEntries([...el.querySelectorAll('.sgnb-gauge[data-tier]')]
      .map((g) => [g.dataset.label, Number(g.dataset.value)])),
  }));
  const paths = [...document.querySelectorAll('.sgnb-cp')].map((el) => ({
    numSteps: Number(el.dataset.numSteps || 0),
    numForced: Number(el.dataset.numForced || 0),
    rows: el.querySelectorAll('tr.sgnb-step').length,
    forcedRows: el.querySelectorAll('tr.sgnb-step[data-forced="true"]').length,
    stripTokens: el.querySelectorAll('.sgnb-cp-strip .sgnb-tok').length,
  }));
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map((p) => p.textContent.trim());
  const errors = [...document.querySelectorAll('[data-mime-type="application/vnd.jupyter.error"]')]
    .map((e) => e.textContent.slice(0, 2000));
  return {views, caches, paths, prompts, errors};
}"""


def _all_ran(obs: dict) -> bool:
    return bool(obs["prompts"]) and all(p.startswith("[") and p[1:-2].strip().isdigit() for p in obs["prompts"])


def _open_and_run_all(page, jupyter_lab: str, name: str) -> None:
    """Open notebook `name` (in the lab's root) on a fresh kernel and start Run All Cells."""
    import httpx

    # start the notebook's kernel through the REST API, so the page opens attached to it (no kernel dialog)
    session = httpx.post(f"{jupyter_lab}/api/sessions", json={
        "path": name, "name": name, "type": "notebook", "kernel": {"name": "python3"}}, timeout=60)
    assert session.status_code == 201, session.text
    page.goto(f"{jupyter_lab}/lab/tree/{name}?reset")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell")
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=90_000)
    page.wait_for_timeout(1000)
    if page.locator(".jp-Dialog").count():  # a kernel picker despite the running session: accept its default
        page.locator(".jp-Dialog .jp-mod-accept").click()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def test_notebook_widgets_render_and_update_live(page, jupyter_lab, screenshots):
    began = time.monotonic()
    _open_and_run_all(page, jupyter_lab, NOTEBOOK)

    observations: list[tuple[float, dict]] = []
    mid_shot = screenshots / "jupyterlab_running.png"
    took_mid_shot = False
    streaming_seen: dict[int, int] = {}
    settled: tuple[tuple[int, int, int], float] | None = None  # (widget counts, since when) once all has run
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        obs = page.evaluate(OBSERVE_JS)
        observations.append((time.monotonic(), obs))
        if obs["errors"]:
            page.screenshot(path=str(screenshots / "jupyterlab_error.png"), full_page=True)
            pytest.fail(f"a cell raised: {obs['errors'][0]}")
        for i, v in enumerate(obs["views"]):
            if v["status"] == "running" and "generated" in v["kinds"]:
                streaming_seen[i] = streaming_seen.get(i, 0) + 1
                if streaming_seen[i] == 8 and not took_mid_shot:  # a view caught while its text streams in
                    live = page.locator(".sgnb-pv").nth(i)
                    live.scroll_into_view_if_needed()
                    live.screenshot(path=str(mid_shot))
                    took_mid_shot = True
        # Done once every cell ran, every view finished and the widgets on the page stopped changing for a second:
        # a cell's prompt number can arrive before its widget output has rendered (shell and iopub are separate
        # channels, and widget views render asynchronously), so "all ran" alone can miss the last cell's widget.
        shape = (len(obs["views"]), len(obs["caches"]), len(obs["paths"]))
        if _all_ran(obs) and obs["views"] and all(v["status"] == "finished" for v in obs["views"]) \
                and (not IS_SMOKE or obs["paths"]):
            if settled is None or settled[0] != shape:
                settled = (shape, time.monotonic())
            elif time.monotonic() - settled[1] >= 1.0:
                break
        else:
            settled = None
        time.sleep(0.15)
    else:
        page.screenshot(path=str(screenshots / "jupyterlab_timeout.png"), full_page=True)
        pytest.fail(f"the notebook did not finish in time; last observation: {observations[-1][1]}")
    final = observations[-1][1]
    page.screenshot(path=str(screenshots / "jupyterlab_final.png"), full_page=True)

    # --- program views: every state of the fork tree is listed; text and token marks rendered (a view shows
    #     its root's text and every fork's own text below it)
    assert final["views"], "no program view rendered"
    for view in final["views"]:
        assert view["forkNodes"] == view["numStates"] >= 1
        assert view["chars"] > 0 and "generated" in view["kinds"]
        assert {"computed", "cache"} & set(view["kinds"]), f"prompt tokens unmarked in {view}"
        assert "pending" not in view["kinds"], f"a finished view still shows pending text: {view}"
    # --- it updated during generation: one view's text grew over several observations while running
    growth: dict[int, list[int]] = {}
    for _, obs in observations:
        for i, view in enumerate(obs["views"]):
            if view["status"] == "running":
                growth.setdefault(i, []).append(view["chars"])
    best = max(growth.values(), key=lambda xs: len(set(xs)), default=[])
    assert len(set(best)) >= 3 and best == sorted(best), f"no program view grew live: {growth}"
    # --- cache tree: one row per node shown; it changed while the programs ran
    assert final["caches"], "no cache tree rendered"
    cache = final["caches"][0]
    assert cache["rows"] == cache["numShown"] == min(cache["numNodes"], cache["numShown"]) and cache["numNodes"] > 1
    first_seen = next(obs["caches"][0] for _, obs in observations if obs["caches"])
    assert cache["numNodes"] > first_seen["numNodes"] and cache["updates"] > first_seen["updates"]

    # --- constraint paths: one table row and one strip token per step, forced ones flagged
    for path in final["paths"]:
        assert path["rows"] == path["stripTokens"] == path["numSteps"] > 0
        assert path["forcedRows"] == path["numForced"]

    if IS_SMOKE:
        assert len(final["paths"]) == 1 and final["paths"][0]["numForced"] >= 1
        assert len(final["views"]) == 3
        facts, story, magic = final["views"]
        assert facts["title"] == "facts" and facts["numStates"] == facts["forkNodes"] == 4  # root + 3 forks
        assert facts["spans"] == ["summary", "confident", "fact", "fact", "fact"]
        assert story["title"] == "story" and story["numStates"] == 1 and story["spans"] == ["story"]
        assert magic["numStates"] == magic["forkNodes"] == 3 and magic["spans"] == ["moon", "moon"]  # %%sgl
        printed = page.locator(".jp-OutputArea-output", has_text="cache nodes").last.inner_text()
        assert printed.startswith(f"{cache['numNodes']} cache nodes"), (printed, cache)

    _check_interactions(page, screenshots)
    assert time.monotonic() - began < 240


def _check_interactions(page, screenshots) -> None:
    view = page.locator(".sgnb-pv").first
    view.scroll_into_view_if_needed()
    # hover a generated token: its logprob and the top alternatives
    token = view.locator('.sgnb-tok[data-has-logprob="true"]').first
    token.hover()
    tip = view.locator(".sgnb-tip")
    tip.wait_for(state="visible")
    assert "logprob" in tip.inner_text() and "top alternatives" in tip.inner_text()
    view.screenshot(path=str(screenshots / "program_view_hover.png"))
    # click a forked state in the fork tree: the text panel shows that state
    nodes = view.locator(".sgnb-fork-node")
    if nodes.count() > 1:
        child = nodes.nth(1)
        child_id = child.get_attribute("data-state")
        child.click()
        view.locator(f'.sgnb-pv-text[data-state="{child_id}"]').wait_for()
        assert child.get_attribute("data-selected") == "true"
        view.screenshot(path=str(screenshots / "program_view_fork.png"))
    _click_last_cache_node(page, screenshots / "cache_tree.png")
    path = page.locator(".sgnb-cp").first
    if path.count():
        path.scroll_into_view_if_needed()
        path.screenshot(path=str(screenshots / "constraint_path.png"))


def _click_last_cache_node(page, screenshot) -> None:
    """Click the first cache tree's last (deepest) node: the kernel answers with the node's full text (the
    notebook must be idle); the detail panel shows it."""
    cache = page.locator(".sgnb-ct").first
    cache.scroll_into_view_if_needed()
    rows = cache.locator(".sgnb-ct-node")
    leaf = rows.nth(rows.count() - 1)
    leaf.click()
    full = cache.locator(".sgnb-ct-detail .sgnb-ct-fulltext")
    full.wait_for(timeout=30_000)
    excerpt = json.loads(leaf.locator(".sgnb-ct-text").inner_text()).rstrip("…")
    assert excerpt and excerpt in full.inner_text()
    cache.screenshot(path=str(screenshot))


def _cache_tree_notebook(url: str) -> dict:
    """A two-cell notebook that shows the cache tree of the server at `url` (written into the lab's scratch root)."""
    cells = [
        {"cell_type": "markdown", "id": "remote-md", "metadata": {},
         "source": ["The radix cache of a running `sgnb serve`, followed over HTTP."]},
        {"cell_type": "code", "execution_count": None, "id": "remote-tree", "metadata": {}, "outputs": [],
         "source": ["from sgnb.widgets import CacheTree\n", "\n", f"CacheTree({url!r}, interval=0.2)"]},
    ]
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}}


def test_notebook_shows_a_servers_cache_tree_growing(page, jupyter_lab, lab_root, screenshots, engine):
    import httpx

    from sgnb.serve import ServerThread, create_app

    began = time.monotonic()
    assert engine.flush_cache()
    with ServerThread(create_app(engine)) as server:
        name = "remote_cache_tree.ipynb"
        (lab_root / name).write_text(json.dumps(_cache_tree_notebook(server.url), indent=1))
        _open_and_run_all(page, jupyter_lab, name)
        deadline = time.monotonic() + 120  # a fresh kernel on a loaded machine can take a minute
        while not (first := page.evaluate(OBSERVE_JS))["caches"] or first["caches"][0]["updates"] < 1:
            if first["errors"] or time.monotonic() > deadline:
                page.screenshot(path=str(screenshots / "remote_cache_tree_error.png"), full_page=True)
                outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
                pytest.fail(f"no cache tree rendered: errors {first['errors']}, outputs {outputs}")
            time.sleep(0.2)
        tree = page.locator(".sgnb-ct").first
        [start] = first["caches"]
        assert start["numNodes"] == 1 and start["rows"] == 1  # the flushed server: the root alone

        counts = [start["numNodes"]]
        prompts = ["Browser cache test: the shared start, then branch one", "Browser cache test: the shared start, "
                   "then branch two", "Something else entirely for a third branch"]
        for prompt in prompts:  # another client, sending requests to the server while the notebook watches
            r = httpx.post(server.url + "/generate",
                           json={"text": prompt, "sampling_params": {"max_new_tokens": 4, "temperature": 0}},
                           timeout=120)
            assert r.status_code == 200
            page.wait_for_function(
                "(n) => Number(document.querySelector('.sgnb-ct')?.dataset.numNodes || 0) > n", arg=counts[-1],
                timeout=30_000)
            counts.append(page.evaluate(OBSERVE_JS)["caches"][0]["numNodes"])
        assert counts == sorted(set(counts)) and counts[-1] >= 5, counts  # grew after every request
        time.sleep(0.3)  # past the server's snapshot throttle: its tree with every request finished
        on_server = httpx.get(server.url + "/cache_snapshot?max_nodes=1", timeout=60).json()["cache"]["num_nodes"]
        page.wait_for_function(  # the view settles on the server's whole tree (so the click below hits a leaf)
            "(n) => Number(document.querySelector('.sgnb-ct')?.dataset.numNodes || 0) === n", arg=on_server,
            timeout=30_000)
        final = page.evaluate(OBSERVE_JS)["caches"][0]
        assert final["rows"] == final["numShown"] == final["numNodes"]
        assert tree.get_attribute("data-error") == "false"
        assert final["tierTags"] == final["legend"] == [] and final["tierGauges"] == {}  # no tiers: none shown

        _click_last_cache_node(page, screenshots / "remote_cache_tree.png")  # the kernel asks the server
    engine.check_integrity()
    assert time.monotonic() - began < 180


def test_notebook_shows_a_tiered_servers_nodes_by_tier(page, jupyter_lab, lab_root, screenshots, smollm2_path,
                                                       tmp_path):
    """A server whose engine has the tiered cache on and a pool for two prompts: the node the third prompt
    evicts shows as held in host memory, with the legend and the host memory and disk gauges."""
    import httpx

    from sgnb.engine import Engine
    from sgnb.serve import ServerThread, create_app
    from tests.conftest import make_tiny_model

    model = str(make_tiny_model(tmp_path / "tiny", smollm2_path))
    # tiers of about 100 kB, so that a few pages of this tiny model's KV show on the gauges
    engine = Engine(model, max_total_tokens=96, enable_hierarchical_cache=True, hicache_size=1e-4,
                    hicache_storage_dir=str(tmp_path / "kv"), hicache_storage_size=1e-4)
    with engine, ServerThread(create_app(engine)) as server:
        name = "tiered_cache_tree.ipynb"
        (lab_root / name).write_text(json.dumps(_cache_tree_notebook(server.url), indent=1))
        _open_and_run_all(page, jupyter_lab, name)
        for word in ("apple", "river", "stone"):  # ~40 tokens each: the third evicts the first to host memory
            r = httpx.post(server.url + "/generate", json={"text": " ".join([word] * 40), "sampling_params": {
                "max_new_tokens": 3, "temperature": 0}}, timeout=120)
            assert r.status_code == 200
        try:
            page.wait_for_selector('.sgnb-ct-node[data-tier="host"] .sgnb-ct-tier', timeout=120_000)
        except Exception:
            page.screenshot(path=str(screenshots / "tiered_cache_tree_error.png"), full_page=True)
            raise
        [cache] = page.evaluate(OBSERVE_JS)["caches"]
        assert ["host", "host memory"] in cache["tierTags"] and ["device", "pool"] in cache["tierTags"]
        assert len(cache["tierTags"]) == cache["rows"] - 1  # every node but the root is tagged
        assert cache["legend"] == ["pool", "host memory", "disk"]
        assert cache["tierGauges"]["host memory"] > 0 and cache["tierGauges"]["disk"] > 0
        page.locator(".sgnb-ct").first.screenshot(path=str(screenshots / "tiered_cache_tree.png"))
        engine.check_integrity()


IMAGES_JS = """() => ({
  thumbnails: [...document.querySelectorAll('.sgnb-pv .sgnb-tok[data-image="true"]')].map((t) => ({
    kind: t.dataset.kind, src: t.querySelector('img.sgnb-img')?.getAttribute('src') || '',
    width: t.querySelector('img.sgnb-img')?.naturalWidth || 0})),
  imageNodes: [...document.querySelectorAll('.sgnb-ct-node')].map((n) => Number(n.dataset.imageTokens || 0))
    .filter((n) => n > 0),
  imageBadges: [...document.querySelectorAll('.sgnb-ct-node .sgnb-ct-meta')].map((m) => m.textContent)
    .filter((t) => t.includes('image:')),
})"""


def test_images_notebook_draws_thumbnails_and_labels_image_nodes(page, jupyter_lab, screenshots):
    _open_and_run_all(page, jupyter_lab, "07_images.ipynb")
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline:
        obs = page.evaluate(OBSERVE_JS)
        if obs["errors"]:
            page.screenshot(path=str(screenshots / "jupyterlab_images_error.png"), full_page=True)
            pytest.fail(f"a cell raised: {obs['errors'][0]}")
        if _all_ran(obs) and len(obs["views"]) == 2 and all(v["status"] == "finished" for v in obs["views"]):
            break
        time.sleep(0.25)
    else:
        page.screenshot(path=str(screenshots / "jupyterlab_images_timeout.png"), full_page=True)
        pytest.fail(f"the images notebook did not finish in time; last observation: {obs}")
    page.wait_for_timeout(1000)  # the cache tree's last poll
    images = page.evaluate(IMAGES_JS)
    page.screenshot(path=str(screenshots / "jupyterlab_images.png"), full_page=True)
    # the caption view holds one picture, the clip's view its four frames: each a loaded thumbnail, marked as
    # prompt tokens computed or read from the cache
    assert len(images["thumbnails"]) == 5, images
    for thumb in images["thumbnails"]:
        assert thumb["src"].startswith("data:image/png;base64,") and 0 < thumb["width"] <= 64
        assert thumb["kind"] in ("cache", "computed")
    assert images["thumbnails"][0]["kind"] == "cache"  # the picture was asked about before: its KV was reused
    assert images["imageNodes"] and len(images["imageBadges"]) == len(images["imageNodes"])
