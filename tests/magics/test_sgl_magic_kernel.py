"""%%sgl inside a real Jupyter kernel (nbclient): the live ProgramView is displayed and follows the run."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def test_cell_displays_a_program_view_that_ends_with_the_final_state(smollm2_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "%load_ext sgnb.magics\n"
            "from sgnb.engine import Engine\n"
            f"engine = Engine({str(smollm2_path)!r}, dtype='float32')\n"
            "%config SglMagics.backend = 'engine'"
        ),
        nbformat.v4.new_code_cell(
            "%%sgl --temperature 0 --max-tokens 4\n"
            "@user Say hi.\n"
            "@assistant\n"
            '{fork tone in ["warm", "cool"]}\n'
            '{tone}: {gen("reply")}\n'
            "{join}"
        ),
        nbformat.v4.new_code_cell("import json; print(json.dumps(_sgl['reply']))"),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True).execute()

    run_outputs = nb.cells[1].outputs
    views = [o for o in run_outputs if o.get("output_type") == "display_data" and WIDGET_VIEW in o["data"]]
    assert len(views) == 1, run_outputs  # the widget, and no printed text
    assert not [o for o in run_outputs if o.get("output_type") == "stream"]
    model_id = views[0]["data"][WIDGET_VIEW]["model_id"]
    replies = json.loads(nb.cells[2].outputs[0]["text"])
    assert len(replies) == 2

    models = nb.metadata["widgets"][WIDGET_STATE]["state"]
    program = models[model_id]["state"]["program"]
    assert program["is_finished"] and program["error"] is None
    states = {s["id"]: s for s in program["states"]}
    root = states[program["root"]]
    assert len(root["children"]) == 2  # the fork tree: root and its two children
    children = [states[c] for c in root["children"]]
    assert [c["variables"]["reply"] for c in children] == replies
    assert root["variables"]["reply"] == replies
