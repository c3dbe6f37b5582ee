"""Attention ops over the paged KV pool (see ARCHITECTURE.md, "Kernel contract").

Backends share one set of signatures: `torch_ref` (the one-request-at-a-time reference the others
are tested against), `torch_batched` (the "torch" backend: padded batches, shared prefixes once),
`triton_*` (CUDA, or the Triton interpreter with TRITON_INTERPRET=1), `flash_backend` (optional
vllm-flash-attn) and "cpu" (the C++ decode attention of `cpu_extension`, with torch_batched's extend).
Pick one with `get_attention_ops(name, device)`. Importing this package loads neither torch nor triton.
"""

from __future__ import annotations

from sgnb.kernels.backend import BACKEND_NAMES, AttentionOps, get_attention_ops
from sgnb.kernels.errors import BackendUnavailableError

__all__ = ["BACKEND_NAMES", "AttentionOps", "BackendUnavailableError", "get_attention_ops"]
