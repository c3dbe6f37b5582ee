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
from collections.abc import Callable
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
    """A small thread-safe LRU map bounded by entry count and by total weight (e.g. bytes)."""

    def __init__(self, max_entries: int, max_weight: float = float("inf"),
                 weigh: Callable[[V], float] = lambda value: 0.0) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries, self.max_weight, self._weigh = max_entries, max_weight, weigh
        self._data: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._weight = 0.0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            self._data.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._weight -= old[1]
            self._data[key] = (value, weight)
            self._weight += weight
            while len(self._data) > 1 and (len(self._data) > self.max_entries or self._weight > self.max_weight):
                _, (_, evicted) = self._data.popitem(last=False)  # the newest entry always stays
                self._weight -= evicted

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._weight = 0.0

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
