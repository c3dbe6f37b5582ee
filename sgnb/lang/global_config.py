"""Process-wide settings of the language (SGLang's `global_config`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class GlobalConfig:
    """Mutable settings; `sgnb.global_config` is the one instance.

    default_backend:              backend used when `run(backend=None)`; set by `set_default_backend`, or
                                  created lazily as an in-process engine on `default_model`.
    default_model:                model of the lazily created engine.
    enable_precache_with_tracing: `run_batch` traces the program and commits its constant prefix once.
    min_precache_chars:           shorter constant prefixes are not worth a separate prefill.
    verbosity:                    0 quiet; 1 log precache/fork commits to stderr.
    """

    default_backend: Any = None
    default_model: str = "smollm2-135m"
    enable_precache_with_tracing: bool = True
    min_precache_chars: int = 64
    verbosity: int = 0


global_config = GlobalConfig()
