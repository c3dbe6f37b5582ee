"""Load a GGUF with llama-cpp-python the way every benchmark here does (runs in bench/.venv-llama's Python).

ggml's AMX matmul (picked through "extra buffer types" on CPUs with AMX) segfaults on SmolLM2's Q4_1 GGUF in
llama-cpp-python 0.3.36; the plain AVX-512/AVX2 kernels run it fine, so the model loads without extra buffer
types. This module imports neither sgnb nor torch: bench/.venv-llama has neither.
"""

from __future__ import annotations

from typing import Any


def _without_extra_buffer_types() -> None:
    """Make every later model load use ggml's plain CPU buffers (idempotent)."""
    import llama_cpp.llama_cpp as C

    defaults = C.llama_model_default_params
    if getattr(defaults, "_sgnb_without_extra_bufts", False):
        return

    def params() -> Any:
        p = defaults()
        p.use_extra_bufts = False
        return p

    params._sgnb_without_extra_bufts = True    # type: ignore[attr-defined]
    C.llama_model_default_params = params


def load_llama(gguf: str, n_threads: int, n_ctx: int = 2048) -> Any:
    """A `llama_cpp.Llama` over `gguf` on `n_threads` threads (batch and decode alike), quiet."""
    _without_extra_buffer_types()
    from llama_cpp import Llama

    return Llama(model_path=gguf, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, verbose=False)
