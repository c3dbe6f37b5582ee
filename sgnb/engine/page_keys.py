"""Content addresses of KV pages for the tiered cache's lower tiers (host memory and disk).

A page is ``PAGE_SIZE`` consecutive tokens starting at a multiple of ``PAGE_SIZE``. Its key hashes the
whole token prefix up to the page's end, chained page by page (key k = H(namespace, key k-1, tokens of
page k)), so any process finds any prefix it shares with what was stored, whatever the radix tree looked
like then. The chain starts from a namespace: a fingerprint of the model's weights, its tokenizer, the
KV dtype and layout, and the page format, so a page of another model or dtype is never looked up.

16 tokens per page: small enough that an evicted leaf or a restarted prompt loses at most 15 tokens
(recomputed), large enough that a file holds a useful amount of KV. Plain Python, no torch.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path

PAGE_SIZE = 16
FORMAT_VERSION = 1
KEY_BYTES = 16
_SAMPLE_BYTES = 1 << 16     # bytes read at each of _NUM_SAMPLES places of a weights file
_NUM_SAMPLES = 16
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")


def page_keys(namespace: bytes, token_ids: Sequence[int]) -> Iterator[bytes]:
    """Keys of the whole pages of ``token_ids``, in order (computed lazily: stop early to hash less)."""
    prev = namespace
    for start in range(0, len(token_ids) - PAGE_SIZE + 1, PAGE_SIZE):
        prev = hashlib.blake2b(prev + array("q", token_ids[start:start + PAGE_SIZE]).tobytes(),
                               digest_size=KEY_BYTES).digest()
        yield prev


def kv_namespace(model_path: str | Path, dtype: str, num_layers: int, num_kv_heads: int, head_dim: int) -> bytes:
    """Fingerprint of everything that decides a page's bytes: weights, tokenizer, dtype, KV layout.

    Weights are fingerprinted cheaply but distinctly: each file's size and 16 evenly spaced 64 KiB samples
    of its bytes, the first one holding the safetensors header (names, shapes); a fine-tune changes them all.
    """
    path = Path(model_path)
    h = hashlib.blake2b(digest_size=KEY_BYTES)
    layout = {"format": FORMAT_VERSION, "page_size": PAGE_SIZE, "dtype": dtype, "num_layers": num_layers,
              "num_kv_heads": num_kv_heads, "head_dim": head_dim}
    h.update(json.dumps(layout, sort_keys=True).encode())
    if path.is_dir():
        weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.gguf"))
        extra = [path / "config.json"] + [path / name for name in _TOKENIZER_FILES]
    else:
        weights, extra = [path], []
    for file in weights:
        h.update(file.name.encode())
        _hash_samples(h, file)
    for file in extra:
        if file.exists():
            h.update(file.name.encode())
            h.update(file.read_bytes())
    return h.digest()


def _hash_samples(h, file: Path) -> None:
    size = file.stat().st_size
    h.update(size.to_bytes(8, "little"))
    step = max(size // _NUM_SAMPLES, 1)
    with open(file, "rb") as f:
        for offset in range(0, size, step):
            f.seek(offset)
            h.update(f.read(_SAMPLE_BYTES))
