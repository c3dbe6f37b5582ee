"""The C++ CPU extension: built once into the cache, dispatching on the CPU's vector ISA, and a clear torch
fallback (one notice) where no compiler exists."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sgnb.kernels import cpu_extension
from sgnb.kernels.cpu_extension import build_key, compiler, load_cpu_extension

REPO = Path(__file__).resolve().parents[2]
ISAS = ("scalar", "avx2", "avx512", "avx512_vnni")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


@pytest.mark.skipif(compiler() is None, reason="no C++ compiler here: the fallback tests below cover this machine")
def test_builds_where_a_compiler_exists_and_dispatches_on_the_cpus_isa():
    ext = load_cpu_extension()
    assert ext is not None, "a compiler exists, so the extension must build (see the warning for the error)"
    flags = _cpu_flags()
    expected = ("avx512_vnni" if {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= flags else
                "avx512" if {"avx512f", "avx512bw", "avx512vl"} <= flags else
                "avx2" if {"avx2", "fma", "f16c"} <= flags else "scalar")
    assert ext.detected_isa() == expected
    assert ext.cpu_isa() in ISAS


@pytest.mark.skipif(compiler() is None, reason="no C++ compiler here")
def test_isa_cap_lowers_the_path_kernels_take_and_restores():
    ext = load_cpu_extension()
    assert ext is not None
    best = ext.detected_isa()
    previous = ext.set_isa_cap("scalar")
    try:
        assert ext.cpu_isa() == "scalar"
        ext.set_isa_cap("avx512_vnni")                 # a cap above the CPU's best: the best
        assert ext.cpu_isa() == best
        with pytest.raises(ValueError, match="unknown ISA 'sse9'"):
            ext.set_isa_cap("sse9")
    finally:
        ext.set_isa_cap(previous)


def test_build_key_follows_the_sources(tmp_path, monkeypatch):
    copy = tmp_path / "csrc"
    shutil.copytree(cpu_extension.CSRC, copy)
    monkeypatch.setattr(cpu_extension, "CSRC", copy)
    before = build_key("g++")
    assert build_key("g++") == before                  # stable: an unchanged tree reuses its build folder
    assert build_key("clang++") != before              # another compiler builds anew
    (copy / "module.cpp").write_text((copy / "module.cpp").read_text() + "\n// changed\n")
    assert build_key("g++") != before


def test_without_a_compiler_the_engine_path_falls_back_with_one_notice(tmp_path):
    code = ("import warnings\n"
            "from sgnb.kernels.cpu_extension import load_cpu_extension\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    first, second = load_cpu_extension(), load_cpu_extension()\n"
            "print(first is None and second is None, len(caught), caught[0].message if caught else '')\n")
    proc = _run(code, CXX="false", SGNB_CACHE=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    is_none, num_notices, notice = proc.stdout.strip().split(" ", 2)
    assert is_none == "True" and num_notices == "1"
    assert "C++ CPU kernels unavailable" in notice and "no C++ compiler" in notice and "torch path" in notice
    assert not (tmp_path / "kernels").exists() or not any((tmp_path / "kernels").rglob("*.so"))


def test_turned_off_by_environment_without_a_notice(tmp_path):
    proc = _run("from sgnb.kernels.cpu_extension import load_cpu_extension; print(load_cpu_extension())",
                SGNB_CPU_KERNELS="0", SGNB_CACHE=str(tmp_path))
    assert proc.returncode == 0 and proc.stdout.strip() == "None" and "unavailable" not in proc.stderr


def test_module_entry_point_reports_a_missing_compiler(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sgnb.kernels.cpu_extension"], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "CXX": "false", "SGNB_CACHE": str(tmp_path)}, timeout=120)
    assert proc.returncode == 1 and "not built: no C++ compiler found (CXX='false')" in proc.stderr
