"""`python -m sgnb`: the same command as the `sgnb` console script, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys

from sgnb.cli import COMMANDS
from sgnb.engine.model_store import resolve_model


def _python_m_sgnb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sgnb", *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_help_lists_every_subcommand() -> None:
    result = _python_m_sgnb("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: sgnb ")
    for name in COMMANDS:
        assert f"    {name} " in result.stdout, name


def test_each_subcommand_has_its_help() -> None:
    for name in COMMANDS:
        result = _python_m_sgnb(name, "--help")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"usage: sgnb {name} ")


def test_pull_prints_the_cached_model_folder() -> None:
    result = _python_m_sgnb("pull", "smollm2-135m")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(resolve_model("smollm2-135m"))


def test_errors_keep_their_exit_status() -> None:
    assert _python_m_sgnb().returncode == 2  # no subcommand: usage error
    result = _python_m_sgnb("pull", "not-a-model")
    assert result.returncode == 1
    assert "sgnb pull: error: unknown model 'not-a-model'" in result.stderr
