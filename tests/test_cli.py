"""The installed `sgnb` console script, run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sgnb.engine.model_store import cache_dir, resolve_model

SGNB = Path(sys.executable).parent / "sgnb"  # the console script installed next to this interpreter


def _sgnb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert SGNB.is_file(), f"console script missing at {SGNB}: install the package (`make venv`)"
    return subprocess.run(
        [str(SGNB), *args], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.fixture(scope="module")
def pulled_model() -> Path:
    """The real default cache's smollm2-135m folder (pulled here if `make model` has not run)."""
    return resolve_model("smollm2-135m")


def test_help_lists_subcommands() -> None:
    result = _sgnb("--help")
    assert result.returncode == 0
    assert "pull" in result.stdout and "COMMAND" in result.stdout


def test_no_subcommand_is_a_usage_error() -> None:
    result = _sgnb()
    assert result.returncode == 2
    assert "usage: sgnb" in result.stderr


def test_pull_on_an_existing_cache_is_a_fast_no_op_printing_the_folder(pulled_model: Path) -> None:
    mtime = (pulled_model / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    result = _sgnb("pull", "smollm2-135m", env={"SGNB_CACHE": str(cache_dir())})
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(pulled_model)
    assert "downloading" not in result.stderr
    assert (pulled_model / "model.safetensors").stat().st_mtime_ns == mtime
    assert elapsed < 5, f"no-op pull took {elapsed:.1f}s"


def test_pull_list_shows_known_models_and_state(pulled_model: Path) -> None:
    result = _sgnb("pull", "--list", env={"SGNB_CACHE": str(cache_dir())})
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].startswith("smollm2-135m\tpulled\t")


def test_pull_unknown_model_fails_with_a_clear_message(tmp_path: Path) -> None:
    result = _sgnb("pull", "not-a-model", env={"SGNB_CACHE": str(tmp_path)})
    assert result.returncode == 1
    assert "unknown model 'not-a-model'" in result.stderr and "smollm2-135m" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()
