"""Live notebook views (anywidget; JavaScript shipped in ``sgnb/widgets/static``) and their static fallbacks.

- ``ProgramView``: a program's text streaming in, every token marked (cache / computed / generated /
  forced), hover for logprobs, the fork tree beside it.
- ``CacheTree(engine)``: the radix cache live, with pool and hit-rate gauges; click a node for its text.
- ``ConstraintPath(meta_info)``: a constrained gen step by step.
- ``program_html`` / ``cache_html`` / ``constraint_html``: the same facts as static HTML, from plain
  snapshot dicts, without ipywidgets.

Exports are lazy: importing ``sgnb.widgets.static_html`` never loads ipywidgets.
"""

from __future__ import annotations

from sgnb._lazy import lazy_exports

_EXPORTS = {
    "ProgramView": "sgnb.widgets.program_view",
    "CacheTree": "sgnb.widgets.cache_tree",
    "ConstraintPath": "sgnb.widgets.constraint_path",
    "program_html": "sgnb.widgets.static_html",
    "cache_html": "sgnb.widgets.static_html",
    "constraint_html": "sgnb.widgets.static_html",
    "program_data": "sgnb.widgets.program_data",
    "cache_data": "sgnb.widgets.cache_data",
    "constraint_data": "sgnb.widgets.constraint_data",
    "mark_tokens": "sgnb.widgets.token_marks",
    "TOKEN_KINDS": "sgnb.widgets.token_marks",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
