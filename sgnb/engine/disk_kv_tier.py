"""The disk tier of the tiered cache: content-addressed KV page files that outlive the process.

Layout: ``<folder>/<namespace hex>/<key hex[:2]>/<key hex>.kv``, one page per file (keys and namespaces:
`sgnb.engine.page_keys`). A file is a header (magic, namespace, key, token count, payload length,
checksum), the page's token ids, then the payload (the page I/O's bytes). The checksum covers
everything but the magic, and a read checks the length, the magic, the namespace, the key, the tokens
the caller expects and the checksum: a corrupt, truncated or foreign file is skipped (and removed, so a
good copy can replace it), with one warning per kind of problem; the caller recomputes the page.

Safety with several processes on one folder: a page is written to a temporary file named after the
process and thread, then renamed over the final name (``os.replace`` is atomic), so a reader sees a
whole page or none. A process killed mid-write leaves only a temporary file, which lookups never open
and scans remove once it is an hour old. LRU by file mtime (a hit touches its file), capped in bytes over
the whole folder: when a write would pass the cap the folder is rescanned (files other processes wrote
count too; files that vanished meanwhile are skipped) and the oldest files are removed.

Writes run on a background thread fed by a bounded queue (a page that does not fit is not written);
`flush` waits for it, and pending pages are flushed at interpreter exit. A write that fails (a folder
that cannot be written, a full disk) warns once and turns writing off; reads go on. Plain Python, no torch.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import queue
import struct
import threading
import time
import warnings
import weakref
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sgnb.engine.page_keys import KEY_BYTES

_MAGIC = b"SGNBKV01"
_HEAD = struct.Struct(f"<8s{KEY_BYTES}s{KEY_BYTES}sIQ{KEY_BYTES}s")  # magic ns key num_tokens payload_len checksum
_STALE_TMP_SECONDS = 3600
_SUFFIX = ".kv"

_open_tiers: weakref.WeakSet[DiskKVTier] = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:
    for tier in list(_open_tiers):
        tier.close(timeout=10)


class DiskKVTier:
    """Page files under ``folder`` for one namespace; ``read`` verifies, ``submit`` writes in the background."""

    def __init__(self, folder: str | os.PathLike, namespace: bytes, capacity_bytes: int,
                 encode: Callable[[Any], bytes], decode: Callable[[memoryview], Any],
                 max_queued_pages: int = 128) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        self.folder = Path(folder)
        self.namespace = namespace
        self.capacity_bytes = capacity_bytes
        self._encode, self._decode = encode, decode
        self._dir = self.folder / namespace.hex()
        self._lock = threading.Lock()
        self._index: dict[Path, tuple[int, float]] = {}   # every page file of the folder seen: (bytes, mtime)
        self.used_bytes = 0
        self.num_written = 0
        self.num_dropped = 0
        self.is_writable = True
        self._warned: set[str] = set()
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued_pages)
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._disable_writes(exc)
        self._rescan()
        self._thread = threading.Thread(target=self._write_loop, name="sgnb-kv-disk-writer", daemon=True)
        self._thread.start()
        _open_tiers.add(self)

    # ------------------------------------------------------------------ reading

    def path(self, key: bytes) -> Path:
        name = key.hex()
        return self._dir / name[:2] / (name + _SUFFIX)

    def has(self, key: bytes) -> bool:
        """Whether this process knows page ``key`` to be on disk (wrote it, read it, or saw it in a scan)."""
        return self.path(key) in self._index

    def read(self, key: bytes, token_ids: Sequence[int]) -> Any | None:
        """The page stored under ``key`` if its file is whole and holds ``token_ids``; else None."""
        path = self.path(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            self._warn("unreadable", f"cannot read KV page files under {self._dir}: {exc}; recomputing")
            return None
        problem = self._check(data, key, token_ids)
        if problem is None:
            try:
                page = self._decode(memoryview(data)[_HEAD.size + 8 * len(token_ids):])
            except ValueError:
                problem = "corrupt"
        if problem is not None:
            self._warn(problem, f"skipped a {problem} KV page file ({path.name}); its tokens are recomputed")
            self._remove(path)
            return None
        try:
            os.utime(path)                     # LRU: a hit makes the page recent
        except OSError:
            pass
        with self._lock:
            self._add(path, len(data), time.time())
        return page

    def check_file(self, path: str | os.PathLike) -> str | None:
        """None if the page file at ``path`` is whole and of this namespace; else what is wrong with it."""
        path = Path(path)
        try:
            key = bytes.fromhex(path.name.removesuffix(_SUFFIX))
        except ValueError:
            return "foreign"
        return self._check(path.read_bytes(), key, None)

    def _check(self, data: bytes, key: bytes, token_ids: Sequence[int] | None) -> str | None:
        """None for a good page of ``key`` (holding ``token_ids`` if given); else "corrupt", "truncated" or
        "foreign"."""
        if len(data) < _HEAD.size:
            return "truncated"
        magic, namespace, file_key, num_tokens, payload_len, checksum = _HEAD.unpack_from(data)
        if magic != _MAGIC:
            return "corrupt"
        if len(data) < _HEAD.size + 8 * num_tokens + payload_len:
            return "truncated"
        if len(data) > _HEAD.size + 8 * num_tokens + payload_len:
            return "corrupt"
        if _checksum(data[len(_MAGIC):_HEAD.size - KEY_BYTES], memoryview(data)[_HEAD.size:]) != checksum:
            return "corrupt"
        tokens = data[_HEAD.size:_HEAD.size + 8 * num_tokens]
        if namespace != self.namespace or file_key != key or (
                token_ids is not None and tokens != array("q", token_ids).tobytes()):
            return "foreign"
        return None

    # ------------------------------------------------------------------ writing

    def submit(self, key: bytes, token_ids: Sequence[int], page: Any) -> bool:
        """Queues the page for writing (encoded on the writer thread); False if it is not written.

        Skipped when writing is off, the page is known to be on disk, or the queue is full.
        """
        if not self.is_writable or self.has(key):
            return False
        try:
            self._queue.put_nowait((key, list(token_ids), page))
        except queue.Full:
            return False
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every queued page is written (or skipped); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Flushes, then stops the writer thread (idempotent)."""
        if self._thread.is_alive():
            self.flush(timeout)
            self._queue.put(None)
            self._thread.join(timeout)
        _open_tiers.discard(self)

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self.is_writable:
                    self._write(*item)
            except Exception as exc:           # never let one page stop the writer
                self._warn("write", f"failed to write a KV page file: {exc!r}")
            finally:
                self._queue.task_done()

    def _write(self, key: bytes, token_ids: list[int], page: Any) -> None:
        path = self.path(key)
        if path.exists():                       # another process (or an earlier run) wrote it
            return
        payload = self._encode(page)
        tokens = array("q", token_ids).tobytes()
        fields = _HEAD.pack(_MAGIC, self.namespace, key, len(token_ids), len(payload), b"\0" * KEY_BYTES)
        body = fields[len(_MAGIC):_HEAD.size - KEY_BYTES]
        data = fields[:_HEAD.size - KEY_BYTES] + _checksum(body, tokens + payload) + tokens + payload
        if len(data) > self.capacity_bytes:
            return
        self._make_room(len(data))
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            self._remove(tmp)
            self._disable_writes(exc)
            return
        with self._lock:
            self._add(path, len(data), time.time())
            self.num_written += 1

    def _make_room(self, nbytes: int) -> None:
        """Removes the least recently used page files until ``nbytes`` more fit under the cap."""
        if self.used_bytes + nbytes <= self.capacity_bytes:
            return
        self._rescan()
        with self._lock:
            oldest = sorted(self._index, key=lambda p: self._index[p][1])
        for path in oldest:
            if self.used_bytes + nbytes <= self.capacity_bytes:
                break
            self._remove(path)
            with self._lock:
                self.num_dropped += 1

    # ------------------------------------------------------------------ bookkeeping

    def _rescan(self) -> None:
        """Rebuilds the index from the folder: every namespace's page files; stale temporary files go."""
        index: dict[Path, tuple[int, float]] = {}
        now = time.time()
        for entry in _walk(self.folder):
            try:
                st = entry.stat()
            except OSError:
                continue                        # vanished meanwhile (another process evicted it)
            if entry.name.endswith(_SUFFIX):
                index[Path(entry.path)] = (st.st_size, st.st_mtime)
            elif entry.name.endswith(".tmp") and now - st.st_mtime > _STALE_TMP_SECONDS:
                self._remove(Path(entry.path))
        with self._lock:
            self._index = {}
            self.used_bytes = 0
            for path, (size, mtime) in index.items():
                self._add(path, size, mtime)

    def _add(self, path: Path, size: int, mtime: float) -> None:
        old = self._index.get(path)
        if old is not None:
            self.used_bytes -= old[0]
        self._index[path] = (size, mtime)
        self.used_bytes += size

    def _remove(self, path: Path) -> None:
        try:
            os.remove(path)
        except OSError:
            pass                                # already gone, or not ours to remove
        with self._lock:
            old = self._index.pop(path, None)
            if old is not None:
                self.used_bytes -= old[0]

    def _disable_writes(self, exc: OSError) -> None:
        self.is_writable = False
        self._warn("unwritable", f"cannot write KV pages under {self._dir} ({exc}); the disk tier is read-only now")

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def check_integrity(self) -> None:
        """Asserts that the byte count matches the indexed files and stays within the capacity."""
        with self._lock:
            total = sum(size for size, _ in self._index.values())
            if total != self.used_bytes:
                raise AssertionError(f"disk tier: used_bytes {self.used_bytes} != sum of its files {total}")


def _checksum(fields: bytes, rest: bytes | memoryview) -> bytes:
    h = hashlib.blake2b(fields, digest_size=KEY_BYTES)
    h.update(rest)
    return h.digest()


def _walk(folder: Path):
    """Files two levels under each namespace folder (``<ns>/<xx>/<file>``), tolerating vanishing folders."""
    stack = [(folder, 0)]
    while stack:
        path, depth = stack.pop()
        try:
            with os.scandir(path) as it:
                for entry in it:
                    if depth < 2 and entry.is_dir(follow_symlinks=False):
                        stack.append((Path(entry.path), depth + 1))
                    elif depth == 2 and entry.is_file(follow_symlinks=False):
                        yield entry
        except OSError:
            continue
