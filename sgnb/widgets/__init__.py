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

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "sgnb.widgets.program_view": ("ProgramView",),
    "sgnb.widgets.cache_tree": ("CacheTree",),
    "sgnb.widgets.constraint_path": ("ConstraintPath",),
    "sgnb.widgets.static_html": ("program_html", "cache_html", "constraint_html"),
    "sgnb.widgets.program_data": ("program_data",),
    "sgnb.widgets.cache_data": ("cache_data",),
    "sgnb.widgets.constraint_data": ("constraint_data",),
    "sgnb.widgets.token_marks": ("mark_tokens", "TOKEN_KINDS"),
})
