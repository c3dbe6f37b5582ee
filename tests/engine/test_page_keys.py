"""Content addresses of KV pages: chained prefix hashes and the model/dtype/layout namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from sgnb.engine.page_keys import KEY_BYTES, PAGE_SIZE, kv_namespace, page_keys

NS = b"n" * KEY_BYTES


def test_keys_cover_whole_pages_only() -> None:
    ids = list(range(3 * PAGE_SIZE + 5))
    keys = list(page_keys(NS, ids))
    assert len(keys) == 3 and len(set(keys)) == 3 and all(len(k) == KEY_BYTES for k in keys)
    assert list(page_keys(NS, ids[:PAGE_SIZE - 1])) == []


def test_a_key_depends_on_the_whole_prefix_not_only_its_page() -> None:
    ids = list(range(100, 100 + 3 * PAGE_SIZE))
    changed = list(ids)
    changed[0] += 1                                  # first page differs, later pages hold the same tokens
    a, b = list(page_keys(NS, ids)), list(page_keys(NS, changed))
    assert all(x != y for x, y in zip(a, b))
    longer = ids + [7] * PAGE_SIZE                   # a shared prefix gives the same keys for its pages
    assert list(page_keys(NS, longer))[:3] == a


def test_namespace_separates_keys() -> None:
    ids = list(range(PAGE_SIZE))
    assert list(page_keys(NS, ids)) != list(page_keys(b"m" * KEY_BYTES, ids))


def _folder(path: Path, weights: bytes) -> Path:
    path.mkdir()
    (path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (path / "tokenizer.json").write_text('{"model": {}}')
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_namespace_distinguishes_weights_tokenizer_dtype_and_layout(tmp_path: Path) -> None:
    weights = bytes(range(256)) * 1000
    base = _folder(tmp_path / "a", weights)
    ns = kv_namespace(base, "float32", 2, 2, 16)
    assert kv_namespace(base, "float32", 2, 2, 16) == ns                        # stable
    assert kv_namespace(_folder(tmp_path / "copy", weights), "float32", 2, 2, 16) == ns   # same content anywhere
    tuned = bytearray(weights)
    tuned[len(weights) // 2] ^= 1                                               # one weight byte in the middle
    assert kv_namespace(_folder(tmp_path / "b", bytes(tuned)), "float32", 2, 2, 16) != ns
    assert kv_namespace(base, "bfloat16", 2, 2, 16) != ns
    assert kv_namespace(base, "float32", 3, 2, 16) != ns
    assert kv_namespace(base, "float32", 2, 1, 16) != ns
    assert kv_namespace(base, "float32", 2, 2, 32) != ns
    (base / "tokenizer.json").write_text('{"model": {"x": 1}}')
    assert kv_namespace(base, "float32", 2, 2, 16) != ns


@pytest.mark.parametrize("size", [0, 10, 5 * 2**20 + 3])
def test_namespace_of_a_single_weights_file(tmp_path: Path, size: int) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"\1" * size)
    ns = kv_namespace(gguf, "float32", 2, 2, 16)
    gguf.write_bytes(b"\1" * size + b"\2")
    assert kv_namespace(gguf, "float32", 2, 2, 16) != ns
