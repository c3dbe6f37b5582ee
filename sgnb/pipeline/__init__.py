"""Notebook to pipeline: `sgnb export` turns a notebook's `%%sgl` programs into a Python module, `sgnb run`
runs one over a file of rows (resumable, one output record per row).

    from sgnb.pipeline import export_notebook, read_rows
    source = export_notebook("05_batch_pipelines.ipynb").source

Nothing heavy is imported here: the engine loads only when a run starts.
"""

from __future__ import annotations

from sgnb._lazy import lazy_exports

_EXPORTS = {
    "export_notebook": "sgnb.pipeline.export",
    "Export": "sgnb.pipeline.export",
    "read_notebook": "sgnb.pipeline.notebook",
    "read_rows": "sgnb.pipeline.rows",
    "read_output": "sgnb.pipeline.rows",
    "load_pipeline": "sgnb.pipeline.runner",
    "run_pipeline": "sgnb.pipeline.runner",
    "run_rows": "sgnb.pipeline.runner",
    "main_for_module": "sgnb.pipeline.runner",
    "PipelineError": "sgnb.pipeline.errors",
    "NotebookError": "sgnb.pipeline.errors",
    "RowError": "sgnb.pipeline.errors",
    "OutputError": "sgnb.pipeline.errors",
    "ProgramNotFoundError": "sgnb.pipeline.errors",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
