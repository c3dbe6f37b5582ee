"""The tokenizer and chat template, taken from the model's own files through transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_tokenizer(source: str | Path) -> Any:
    """An HF fast tokenizer from a model folder or a `.gguf` file (offline only)."""
    from transformers import AutoTokenizer

    source = Path(source)
    try:
        if source.suffix == ".gguf":
            return AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name, local_files_only=True)
        return AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load a tokenizer from {source}: {exc}") from exc
