"""`ProgramData`: everything a program state has produced, as one value (text, chat messages, roles, images,
variables, meta info, spans, scopes).

The `StreamExecutor` holds one instance and writes it only on its worker (or, in `fork`, before the worker has
items), always under its `cond`; readers take `cond` too. Execution status (pending items, error, end) stays on
the executor: it is about running the program, not about what it produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sgnb.lang.image_part import ImagePart


@dataclass(slots=True)
class ProgramData:
    """What one program state has produced so far."""

    text: str = ""
    messages: list[dict] = field(default_factory=list)  # finished chat turns: {"role", "content"}
    cur_role: str | None = None  # the open role, if any
    cur_role_begin_pos: int = 0  # where the open role's content starts in `text`
    images: list[ImagePart] = field(default_factory=list)  # every image (video frames too), in text order
    variables: dict[str, Any] = field(default_factory=dict)
    partial_vars: dict[str, str] = field(default_factory=dict)  # streaming gens in progress
    meta_info: dict[str, dict] = field(default_factory=dict)  # per variable, of the gen/select that made it
    spans: list[dict] = field(default_factory=list)  # per-variable spans, see sgnb.lang.spans
    role_spans: list[dict] = field(default_factory=list)  # {"role", "start", "end"} per finished turn
    var_scopes: list[tuple[str, int]] = field(default_factory=list)  # open var_scopes: (name, start in `text`)

    def __post_init__(self) -> None:
        if not 0 <= self.cur_role_begin_pos <= len(self.text):
            raise ValueError(
                f"cur_role_begin_pos must be within the text (0..{len(self.text)}), got {self.cur_role_begin_pos}"
            )

    def fork(self) -> ProgramData:
        """A child's starting data: the same text, roles, variables and spans, in containers of its own (what
        the child appends never shows in the parent, nor the parent's in the child). The elements themselves
        (messages, span dicts, variable values, images) are shared, not copied. Streaming gens in progress
        (`partial_vars`) are not inherited: the child did not start them."""
        return ProgramData(
            text=self.text,
            messages=list(self.messages),
            cur_role=self.cur_role,
            cur_role_begin_pos=self.cur_role_begin_pos,
            images=list(self.images),
            variables=dict(self.variables),
            meta_info=dict(self.meta_info),
            spans=list(self.spans),
            role_spans=list(self.role_spans),
            var_scopes=list(self.var_scopes),
        )


__all__ = ["ProgramData"]
