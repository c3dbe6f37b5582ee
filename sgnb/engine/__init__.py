"""The in-process engine: model code, KV pool, radix cache, scheduler, sampler, loop.

`from sgnb.engine import Engine` is lazy so that importing the package stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Engine", "EngineError", "SamplingParams"]


def __getattr__(name: str) -> Any:
    if name in ("Engine", "EngineError"):
        from sgnb.engine import engine

        return getattr(engine, name)
    if name == "SamplingParams":
        from sgnb.engine.sampling_params import SamplingParams

        return SamplingParams
    raise AttributeError(f"module 'sgnb.engine' has no attribute {name!r}")
