"""sgnb: structured language-model programs in Jupyter.

`import sgnb as sgl` gives SGLang's frontend language (gen, select, function, roles, backends ...).
Everything is re-exported lazily, so `import sgnb` loads no torch, triton or ipywidgets.
"""

from __future__ import annotations

from typing import Any

from sgnb._lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "sgnb.lang.ir": (
        "gen", "gen_int", "gen_string", "select", "image", "video", "system", "user", "assistant",
        "system_begin", "system_end", "user_begin", "user_end", "assistant_begin", "assistant_end",
    ),
    "sgnb.lang.program": ("function", "SglFunction"),
    "sgnb.lang.state": ("ProgramState",),
    "sgnb.lang.errors": ("ProgramError", "ProgramInterrupted"),
    "sgnb.lang.api": ("set_default_backend", "get_default_backend", "flush_cache", "Runtime"),
    "sgnb.lang.global_config": ("global_config",),
    "sgnb.lang.choices": (
        "token_length_normalized", "greedy_token_selection", "unconditional_likelihood_normalized",
    ),
    "sgnb.engine": ("Engine",),
    "sgnb.lang.backends.engine_backend": ("EngineBackend",),
    "sgnb.lang.backends.runtime_endpoint": ("RuntimeEndpoint",),
    "sgnb.lang.backends.openai": ("OpenAI",),
})


def load_ipython_extension(ip: Any) -> None:
    """`%load_ext sgnb`: registers the %%sgl cell magic."""
    from sgnb.magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    from sgnb.magics import unload_ipython_extension as unload

    unload(ip)
