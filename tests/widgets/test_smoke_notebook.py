"""notebooks/00_widgets_smoke.ipynb headless (nbclient): the saved widget state holds the fork and cache trees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "00_widgets_smoke.ipynb"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_smoke_notebook_saves_fork_and_cache_trees(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    models = nb.metadata["widgets"][WIDGET_STATE]["state"]
    shown = [o["data"][WIDGET_VIEW]["model_id"] for c in nb.cells if c.cell_type == "code"
             for o in c.outputs if WIDGET_VIEW in o.get("data", {})]
    kinds = [models[m]["state"]["_anywidget_id"].rsplit(".", 1)[1] for m in shown]
    assert kinds == ["CacheTree", "ProgramView", "ProgramView", "ProgramView", "ConstraintPath"]
    programs = [models[m]["state"]["program"] for m in shown[1:4]]
    assert all(p["is_finished"] and p["error"] is None for p in programs)
    # facts: root + 3 forks; story: one state; the %%sgl cell: root + 2 forks
    assert [len(p["states"]) for p in programs] == [4, 1, 3]
    facts = programs[0]
    root = facts["states"][0]
    assert len(root["variables"]["fact"]) == 3 and root["children"] == [s["id"] for s in facts["states"][1:]]
    assert facts["totals"]["generated"] == 16 + 3 * 12
    story_kinds = {s["kind"] for s in programs[1]["states"][0]["segments"]}
    assert {"generated", "computed"} <= story_kinds and "pending" not in story_kinds
    # the cache tree's final state matches what the last cell printed
    cache = models[shown[0]]["state"]["cache"]
    printed = nb.cells[-1].outputs[0]["text"]
    assert re.match(rf"{cache['num_nodes']} cache nodes, hit rate", printed), (printed, cache["num_nodes"])
    assert cache["num_nodes"] == len(cache["nodes"]) > 10 and cache["num_running"] == 0
    # the static HTML (for nbconvert / GitHub) was refreshed to the final pictures
    htmls = [o["data"]["text/html"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if WIDGET_VIEW in o.get("data", {})]
    assert f'data-num-nodes="{cache["num_nodes"]}"' in htmls[0]
    assert all('data-status="finished"' in h for h in htmls[1:4])
    # the constraint path: every generated token is a step, the JSON key came from jump-forward
    trace = models[shown[4]]["state"]["trace"]
    assert trace["num_steps"] >= 5 and trace["num_forced"] >= 1 and trace["text"].startswith("{")
    assert f'data-num-steps="{trace["num_steps"]}"' in htmls[4]
