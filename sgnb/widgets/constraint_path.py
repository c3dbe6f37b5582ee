"""`ConstraintPath`: a constrained gen step by step (FSM state, or a grammar's position, allowed tokens, chosen or
forced token, the top alternatives the mask removed).

    ConstraintPath(state.get_meta_info("answer"))     # or ConstraintPath(state, "answer"), or a trace list
"""

from __future__ import annotations

from typing import Any

import traitlets

from sgnb.widgets.base import STATIC, StaticFallbackWidget
from sgnb.widgets.constraint_data import constraint_data
from sgnb.widgets.rich_text import render_constraint_rich
from sgnb.widgets.static_html import render_constraint_html


class ConstraintPath(StaticFallbackWidget):
    """Static (non-polling) view of one constrained gen's ``constraint_trace``."""

    _esm = STATIC / "constraint_path.js"

    trace = traitlets.Dict({}).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)

    def __init__(self, source: Any, name: str | None = None, **kwargs: Any) -> None:
        if name is not None:
            if not callable(getattr(source, "get_meta_info", None)):
                raise ValueError("ConstraintPath(source, name) needs a program state as source")
            meta = source.get_meta_info(name)
            if meta is None:
                raise ValueError(f"variable {name!r} has no meta_info (was it produced by a gen?)")
            source = meta
        data = constraint_data(source)
        super().__init__(trace=data, title=kwargs.pop("title", name or ""), **kwargs)

    def static_html(self) -> str:
        return render_constraint_html(self.trace)

    def __rich__(self) -> Any:
        return render_constraint_rich(self.trace)
