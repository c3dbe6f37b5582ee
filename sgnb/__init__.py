"""sgnb: structured language-model programs in Jupyter.

`import sgnb as sgl` gives SGLang's frontend language (gen, select, function, roles, backends ...).
Everything is re-exported lazily, so `import sgnb` loads no torch, triton or ipywidgets.
"""

from __future__ import annotations

from typing import Any

from sgnb._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> (module, attribute)
_EXPORTS: dict[str, tuple[str, str]] = {
    **{name: ("sgnb.lang.ir", name) for name in (
        "gen", "gen_int", "gen_string", "select", "image", "video", "system", "user", "assistant",
        "system_begin", "system_end", "user_begin", "user_end", "assistant_begin", "assistant_end",
    )},
    "function": ("sgnb.lang.program", "function"),
    "SglFunction": ("sgnb.lang.program", "SglFunction"),
    "ProgramState": ("sgnb.lang.state", "ProgramState"),
    "ProgramError": ("sgnb.lang.interpreter", "ProgramError"),
    "ProgramInterrupted": ("sgnb.lang.errors", "ProgramInterrupted"),
    "set_default_backend": ("sgnb.lang.api", "set_default_backend"),
    "get_default_backend": ("sgnb.lang.api", "get_default_backend"),
    "flush_cache": ("sgnb.lang.api", "flush_cache"),
    "Runtime": ("sgnb.lang.api", "Runtime"),
    "global_config": ("sgnb.lang.global_config", "global_config"),
    "token_length_normalized": ("sgnb.lang.choices", "token_length_normalized"),
    "greedy_token_selection": ("sgnb.lang.choices", "greedy_token_selection"),
    "unconditional_likelihood_normalized": ("sgnb.lang.choices", "unconditional_likelihood_normalized"),
    "Engine": ("sgnb.engine", "Engine"),
    "EngineBackend": ("sgnb.lang.backends.engine_backend", "EngineBackend"),
    "RuntimeEndpoint": ("sgnb.lang.backends.runtime_endpoint", "RuntimeEndpoint"),
    "OpenAI": ("sgnb.lang.backends.openai", "OpenAI"),
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def load_ipython_extension(ip: Any) -> None:
    """`%load_ext sgnb`: registers the %%sgl cell magic."""
    from sgnb.magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    from sgnb.magics import unload_ipython_extension as unload

    unload(ip)
