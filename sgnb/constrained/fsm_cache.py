"""Caches for compiled token FSMs: an in-memory LRU and `.npz` files under $SGNB_CACHE/fsm/.

Disk writes go to a temporary file in the same folder and are renamed into place, so
concurrent writers (threads, processes, notebooks) never expose a half-written file; a file
that fails to load is treated as a miss and rewritten.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

# Bump when the compiled format or the compilation semantics change.
FSM_CACHE_VERSION = 1

K = TypeVar("K")
V = TypeVar("V")


def fsm_cache_dir() -> Path:
    """$SGNB_CACHE/fsm (default ~/.cache/sgnb/fsm)."""
    root = os.environ.get("SGNB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sgnb")
    return Path(root) / "fsm"


def fsm_cache_key(pattern: str, vocab_fingerprint: str) -> str:
    digest = hashlib.sha256(f"v{FSM_CACHE_VERSION}\0{vocab_fingerprint}\0{pattern}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:40]


class LRUCache(Generic[K, V]):
    """A small thread-safe LRU map."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to `path` atomically (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays stored at `path`, or None when missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (FileNotFoundError, OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError):
        return None
