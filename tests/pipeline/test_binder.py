"""Binder without Binder: a fresh venv built only from the files in binder/ executes notebooks/01.

What mybinder (repo2docker) does, and what this test does instead where this machine differs:

1. `pip install -r binder/requirements.txt` in the repository root. There, the `--extra-index-url` line
   fetches the CPU torch wheel from download.pytorch.org. This machine cannot reach that index but has the same
   wheel locally, so the test first runs `pip install torch==2.13.0` (pip's configuration here finds the local
   CPU wheel), then installs the requirements minus that one index line; the `torch==2.13.0+cpu` pin is then
   already satisfied. pip's cache is reused between runs.
2. `binder/postBuild`, with the new venv first on PATH. `SGNB_CACHE` is shared with the test session, where the
   model is already pulled, so `sgnb pull` finds it instead of downloading it again.
3. JupyterLab opens notebooks/01 (the README badge's `labpath`). Here nbclient executes it top to bottom on a
   kernel running the new venv's Python.

It is slow (about two to three minutes, mostly pip) but part of the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.notebooks.execution import NOTEBOOKS, WIDGET_STATE, WIDGET_VIEW
from tests.pipeline.notebook_files import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BINDER = REPO / "binder"


def _run(cmd, **kwargs):
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_binder_files_declare_cpu_torch_the_package_and_the_model_step():
    requirements = (BINDER / "requirements.txt").read_text().splitlines()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
    assert "torch==2.13.0+cpu" in requirements and ".[serve]" in requirements
    post_build = (BINDER / "postBuild").read_text()
    assert post_build.startswith("#!/bin/bash") and "sgnb pull smollm2-135m" in post_build
    assert os.access(BINDER / "postBuild", os.X_OK)
    assert (BINDER / "runtime.txt").read_text().strip() == f"python-{sys.version_info.major}.{sys.version_info.minor}"
    readme = (REPO / "README.md").read_text()
    assert "https://mybinder.org/v2/gh/OWNER/REPO/HEAD?labpath=notebooks%2F01_quickstart.ipynb" in readme


def test_a_venv_built_from_binder_files_runs_notebook_01(tmp_path, monkeypatch, smollm2_path):
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run([sys._base_executable, "-m", "venv", venv])
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, "torch==2.13.0"])  # the local CPU wheel here; the requirements' index line on mybinder
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(line for line in lines if not line.startswith("--extra-index-url")) + "\n")
    _run([*pip, "-r", requirements], cwd=REPO)  # "." is the repository, as in repo2docker

    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    pulled = _run(["bash", BINDER / "postBuild"], cwd=REPO, env=env)
    assert Path(pulled.stdout.strip().splitlines()[-1]) == smollm2_path

    # a kernelspec for the new venv's Python, found through JUPYTER_PATH
    kernels = tmp_path / "jupyter" / "kernels" / "binder-venv"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "binder venv", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.delenv("PYTHONPATH", raising=False)

    import nbformat
    from nbclient import NotebookClient

    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy(NOTEBOOKS / "01_quickstart.ipynb", folder)
    nb = nbformat.read(folder / "01_quickstart.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys, sgnb\nprint(sys.prefix)\nprint(sgnb.__file__)"))
    NotebookClient(nb, timeout=300, kernel_name="binder-venv", store_widget_state=True,
                   resources={"metadata": {"path": str(folder)}}).execute()

    where = nb.cells[-1].outputs[0]["text"].splitlines()
    assert where[0] == str(venv) and where[1].startswith(str(venv / "lib"))  # the venv's own sgnb, not the repo
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert [e["ename"] for e in errors] == ["SglSyntaxError"]  # the notebook's tagged error example only
    models = nb.metadata["widgets"][WIDGET_STATE]["state"]
    views = [models[o["data"][WIDGET_VIEW]["model_id"]]["state"] for c in nb.cells if c.cell_type == "code"
             for o in c.outputs if WIDGET_VIEW in o.get("data", {})]
    programs = [v["program"] for v in views if "program" in v]
    assert len(programs) == 4 and all(p["is_finished"] and p["error"] is None for p in programs)
    assert [len(p["states"]) for p in programs] == [1, 1, 3, 1]  # the fork cell: a root and two branches
