"""The disk tier: atomic, checksummed, content-addressed page files, LRU-capped, shared by processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from sgnb.engine.disk_kv_tier import DiskKVTier
from sgnb.engine.page_keys import KEY_BYTES, PAGE_SIZE, page_keys

NS = b"a" * KEY_BYTES
PAYLOAD = 1000


def _tier(folder: Path, namespace: bytes = NS, capacity_bytes: int = 10**9) -> DiskKVTier:
    # pages are plain bytes here: the codec is the identity
    return DiskKVTier(folder, namespace, capacity_bytes, encode=bytes, decode=bytes)


def _page(i: int) -> tuple[bytes, list[int], bytes]:
    """Key, tokens and payload of page ``i`` (the first page of a prompt starting with token ``i``)."""
    tokens = [i] * PAGE_SIZE
    return next(page_keys(NS, tokens)), tokens, bytes([i % 256]) * PAYLOAD


def _write(tier: DiskKVTier, *pages: int) -> None:
    for i in pages:
        assert tier.submit(*_page(i))
    assert tier.flush(timeout=30)


def _read_warnings(tier: DiskKVTier, key: bytes, tokens: list[int]) -> tuple[bytes | None, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        page = tier.read(key, tokens)
    return page, [str(w.message) for w in caught]


def test_written_page_reads_back_and_is_counted(tmp_path: Path) -> None:
    tier = _tier(tmp_path)
    _write(tier, 1)
    key, tokens, payload = _page(1)
    assert tier.has(key) and tier.path(key).exists()
    assert tier.read(key, tokens) == payload
    assert tier.num_written == 1 and tier.used_bytes == tier.path(key).stat().st_size
    assert tier.check_file(tier.path(key)) is None
    assert not tier.submit(key, tokens, payload)      # already on disk: not queued again
    assert tier.read(_page(2)[0], _page(2)[1]) is None
    tier.check_integrity()
    tier.close()


def test_a_second_tier_on_the_folder_finds_the_pages(tmp_path: Path) -> None:
    _write(_tier(tmp_path), 1)
    key, tokens, payload = _page(1)
    again = _tier(tmp_path)
    assert again.has(key) and again.read(key, tokens) == payload


@pytest.mark.parametrize(("damage", "kind"), [
    (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "corrupt"),     # a flipped payload bit
    (lambda data: data[:100], "truncated"),                           # a half-written or cut file
    (lambda data: b"X" + data[1:], "corrupt"),                        # not a page file at all
])
def test_damaged_page_is_skipped_removed_and_warned_about_once(tmp_path: Path, damage, kind) -> None:
    tier = _tier(tmp_path)
    _write(tier, 1, 2)
    for i in (1, 2):
        path = tier.path(_page(i)[0])
        path.write_bytes(damage(path.read_bytes()))
    page, said = _read_warnings(tier, *_page(1)[:2])
    assert page is None and len(said) == 1 and kind in said[0]
    assert not tier.path(_page(1)[0]).exists() and not tier.has(_page(1)[0])
    page, said = _read_warnings(tier, *_page(2)[:2])
    assert page is None and said == []                                # once per kind of problem
    tier.check_integrity()
    _write(tier, 1)                                                    # recomputed pages are written again
    assert tier.read(*_page(1)[:2]) == _page(1)[2]


def test_page_of_another_namespace_is_never_returned(tmp_path: Path) -> None:
    ours, theirs = _tier(tmp_path), _tier(tmp_path, namespace=b"b" * KEY_BYTES)
    _write(ours, 1)
    key, tokens, _ = _page(1)
    assert theirs.read(key, tokens) is None                           # another namespace has its own folder
    theirs.path(key).parent.mkdir(parents=True, exist_ok=True)
    theirs.path(key).write_bytes(ours.path(key).read_bytes())         # a foreign file under the expected name
    page, said = _read_warnings(theirs, key, tokens)
    assert page is None and len(said) == 1 and "foreign" in said[0]
    assert theirs.check_file(ours.path(key)) == "foreign" and ours.check_file(ours.path(key)) is None


def test_kill_during_write_leaves_only_a_temporary_file(tmp_path: Path) -> None:
    tier = _tier(tmp_path)
    _write(tier, 1)
    key, tokens, payload = _page(1)
    path = tier.path(key)
    leftover = path.with_name(path.name + ".999.1.tmp")
    leftover.write_bytes(path.read_bytes()[:50])                      # a writer killed mid-page
    path.unlink()
    tier2 = _tier(tmp_path)
    page, said = _read_warnings(tier2, key, tokens)
    assert page is None and said == []                                # a miss: the page is recomputed
    assert leftover.exists() and tier2.used_bytes == 0                # not counted, kept while it may be live
    old = time.time() - 2 * 3600
    os.utime(leftover, (old, old))
    _tier(tmp_path)                                                   # a scan removes stale temporary files
    assert not leftover.exists()
    _write(tier2, 1)
    assert tier2.read(key, tokens) == payload


def test_unwritable_folder_warns_once_and_keeps_serving_reads(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tier = _tier(blocker)
        assert not tier.submit(*_page(1))
        assert tier.read(*_page(1)[:2]) is None                       # a miss, not an error
    assert not tier.is_writable and len(caught) == 1 and "read-only" in str(caught[0].message)
    tier.check_integrity()


def test_lru_cap_removes_least_recently_used_files(tmp_path: Path) -> None:
    probe = _tier(tmp_path / "probe")
    _write(probe, 1)
    size = probe.used_bytes
    tier = _tier(tmp_path / "lru", capacity_bytes=3 * size)
    _write(tier, 1, 2, 3)
    for age, i in enumerate((1, 2, 3)):                               # 1 oldest, then 2, then 3
        t = time.time() - 100 + age
        os.utime(tier.path(_page(i)[0]), (t, t))
    assert tier.read(*_page(1)[:2]) is not None                       # a hit makes page 1 the most recent
    _write(tier, 4)
    assert [tier.path(_page(i)[0]).exists() for i in (1, 2, 3, 4)] == [True, False, True, True]
    assert tier.num_dropped == 1 and tier.used_bytes == 3 * size
    tier.path(_page(3)[0]).unlink()                                   # another process removed it meanwhile
    _write(tier, 5, 6)
    assert tier.used_bytes <= 3 * size
    tier.check_integrity()


_WRITER = """
import sys
from pathlib import Path
from sgnb.engine.disk_kv_tier import DiskKVTier
from sgnb.engine.page_keys import PAGE_SIZE, page_keys
tier = DiskKVTier(Path(sys.argv[1]), b"a" * 16, int(sys.argv[2]), encode=bytes, decode=bytes)
for round in range(3):
    for i in range(40):
        tokens = [i] * PAGE_SIZE
        tier.submit(next(page_keys(b"a" * 16, tokens)), tokens, bytes([i]) * 5000)
    tier.flush()
    for i in range(40):
        tokens = [i] * PAGE_SIZE
        page = tier.read(next(page_keys(b"a" * 16, tokens)), tokens)
        assert page is None or page == bytes([i]) * 5000
tier.close()
"""


def test_two_processes_sharing_a_folder_leave_every_file_valid(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cap = 25 * 5300                                                   # room for about half the pages: eviction races
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(cap)], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    tier = _tier(tmp_path)
    files = list(tmp_path.rglob("*.kv"))
    assert files and all(tier.check_file(f) is None for f in files)
    assert not list(tmp_path.rglob("*.tmp"))
