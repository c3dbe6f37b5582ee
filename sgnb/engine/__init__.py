"""The in-process engine: model code, KV pool, radix cache, scheduler, sampler, loop.

`from sgnb.engine import Engine` is lazy so that importing the package stays cheap.
"""

from __future__ import annotations

from sgnb._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "sgnb.engine.engine": ("Engine",),
    "sgnb.engine.errors": ("EngineError",),
    "sgnb.engine.sampling_params": ("SamplingParams",),
})
