"""Executing the demo notebooks headless (nbclient, a real kernel from this venv), once per test session.

Each notebook is copied into its own temporary folder and executed there (it writes its data files next to
itself), with `store_widget_state=True` so the final widget models are saved in the notebook metadata.
`executed(name)` memoizes, so the notebook tests and the pipeline tests share one execution of notebook 05.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
DEMO_NOTEBOOKS = ("01_quickstart", "02_fork_join", "03_constrained_decoding", "04_inside_the_radix_cache",
                  "05_batch_pipelines", "06_remote_backends", "07_images")
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@dataclass
class Executed:
    nb: object  # nbformat.NotebookNode, outputs filled in
    folder: Path  # where it ran (its data files are there)
    seconds: float

    def code_cells(self) -> list:
        return [c for c in self.nb.cells if c.cell_type == "code"]

    def cell_with(self, text: str):
        """The one code cell whose source contains `text`."""
        found = [c for c in self.code_cells() if text in c.source]
        assert len(found) == 1, f"{len(found)} cells contain {text!r}"
        return found[0]

    def stream_text(self, cell) -> str:
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    def widgets(self, cell) -> list[dict]:
        """The saved state of each widget the cell displayed, in display order."""
        models = self.nb.metadata["widgets"][WIDGET_STATE]["state"]
        ids = [o["data"][WIDGET_VIEW]["model_id"] for o in cell.outputs if WIDGET_VIEW in o.get("data", {})]
        return [models[i]["state"] for i in ids]

    def static_html(self, cell) -> list[str]:
        return [o["data"]["text/html"] for o in cell.outputs if WIDGET_VIEW in o.get("data", {})]

    def errors(self) -> list[tuple[int, str]]:
        return [(i, f"{o.ename}: {o.evalue}") for i, c in enumerate(self.nb.cells) if c.cell_type == "code"
                for o in c.outputs if o.output_type == "error"]


_cache: dict[str, Executed] = {}


def executed(name: str, timeout: int = 300) -> Executed:
    """Notebook `name` (no suffix) executed top to bottom in a fresh folder; raises if a cell not tagged
    `raises-exception` fails."""
    if name not in _cache:
        import nbformat
        from nbclient import NotebookClient

        folder = Path(tempfile.mkdtemp(prefix=f"sgnb-{name}-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / f"{name}.ipynb"
        shutil.copy(NOTEBOOKS / f"{name}.ipynb", path)
        nb = nbformat.read(path, as_version=4)
        began = time.monotonic()
        NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                       resources={"metadata": {"path": str(folder)}}).execute()
        _cache[name] = Executed(nb, folder, time.monotonic() - began)
    return _cache[name]
