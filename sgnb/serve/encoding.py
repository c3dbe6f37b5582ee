"""JSON encoding of engine results: tolerant of what meta_info may carry (tuples, dataclasses, -inf)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fastapi.responses import JSONResponse as _StarletteJSONResponse


def _fallback(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return value.tolist()
    return str(value)


def dumps(payload: Any) -> str:
    """Compact JSON; -inf logprobs are written as `-Infinity` (what Python's json and the openai client read)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_fallback)


class JSONResponse(_StarletteJSONResponse):
    """A JSON response that never fails on engine values Starlette's default encoder rejects."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")
