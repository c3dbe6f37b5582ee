"""Notebook to pipeline: `sgnb export` turns a notebook's `%%sgl` programs into a Python module, `sgnb run`
runs one over a file of rows (resumable, one output record per row).

    from sgnb.pipeline import export_notebook, read_rows
    source = export_notebook("05_batch_pipelines.ipynb").source

Nothing heavy is imported here: the engine loads only when a run starts.
"""

from __future__ import annotations

from sgnb._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "sgnb.pipeline.export": ("export_notebook", "Export"),
    "sgnb.pipeline.notebook": ("read_notebook",),
    "sgnb.pipeline.rows": ("read_rows", "read_output"),
    "sgnb.pipeline.runner": ("load_pipeline", "run_pipeline", "run_rows", "main_for_module"),
    "sgnb.pipeline.errors": ("PipelineError", "NotebookError", "RowError", "OutputError", "ProgramNotFoundError"),
})
