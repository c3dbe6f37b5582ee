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


# --- sgnb serve's flags (SGLang's names) -------------------------------------------------------

_SERVE_OWN_OPTIONS = {"model", "host", "port", "api_key", "served_model_name", "log_level", "limits"}


def _serve_options(*argv: str) -> dict:
    from sgnb.cli import build_parser, serve_options

    return serve_options(build_parser().parse_args(["serve", *argv]))


@pytest.mark.parametrize("argv", [["m1"], ["--model-path", "m1"], ["--model", "m1"]])
def test_serve_takes_the_model_as_positional_or_sglangs_model_path_or_model(argv: list[str]) -> None:
    assert _serve_options(*argv)["model"] == "m1"


def test_serve_defaults_to_the_default_model_and_leaves_unset_engine_options_to_the_engine() -> None:
    options = _serve_options()
    assert options["model"] == "smollm2-135m"
    engine_options = set(options) - _SERVE_OWN_OPTIONS
    assert engine_options == {"dtype", "device", "kv_cache_gb", "radix_cache"}


def test_serve_refuses_a_positional_model_and_model_path_together() -> None:
    result = _sgnb("serve", "a", "--model-path", "b")
    assert result.returncode == 2
    assert "argument --model-path/--model: not allowed with argument model" in result.stderr


@pytest.mark.parametrize(
    ("argv", "option", "expected"),
    [
        (["--context-length", "512"], "max_context_len", 512),
        (["--max-running-requests", "8"], "max_running_requests", 8),
        (["--max-total-tokens", "4096"], "max_total_tokens", 4096),
        (["--max-prefill-tokens", "256"], "max_prefill_tokens", 256),
        (["--chunked-prefill-size", "256"], "max_prefill_tokens", 256),
        (["--schedule-policy", "fcfs"], "schedule_policy", "fcfs"),
        (["--attention-backend", "torch"], "attention_backend", "torch"),
        (["--dtype", "half"], "dtype", "float16"),
        (["--dtype", "float"], "dtype", "float32"),
        (["--dtype", "bfloat16"], "dtype", "bfloat16"),
        (["--kv-cache-gb", "0.5"], "kv_cache_gb", 0.5),
        (["--disable-radix-cache"], "radix_cache", False),
        (["--quantization", "q8_0"], "quantization", "q8_0"),
        (["--no-cpu-kernels"], "cpu_kernels", False),
    ],
)
def test_serve_flag_sets_the_engine_option(argv: list[str], option: str, expected: object) -> None:
    from sgnb.engine.engine_config import EngineConfig

    options = _serve_options(*argv)
    assert options[option] == expected
    engine_options = {k: v for k, v in options.items() if k not in _SERVE_OWN_OPTIONS}
    assert getattr(EngineConfig(model=options["model"], **engine_options), option) == expected


def test_serve_hicache_flags_set_the_tiered_cache_options(tmp_path: Path) -> None:
    from sgnb.engine.engine_config import EngineConfig

    options = _serve_options("--enable-hierarchical-cache", "--hicache-size", "0.5", "--hicache-storage-dir",
                             str(tmp_path), "--hicache-storage-size", "3")
    expected = {"enable_hierarchical_cache": True, "hicache_size": 0.5, "hicache_storage_dir": str(tmp_path),
                "hicache_storage_size": 3.0}
    assert {name: options[name] for name in expected} == expected
    config = EngineConfig(**{k: v for k, v in options.items() if k not in _SERVE_OWN_OPTIONS})
    assert {name: getattr(config, name) for name in expected} == expected


def test_serve_limit_flags_set_the_http_limits() -> None:
    from sgnb.serve.limits import HTTPLimits

    options = _serve_options("--max-request-bytes", "1000", "--header-timeout", "2", "--body-timeout", "3",
                             "--timeout-keep-alive", "4")
    assert options["limits"] == HTTPLimits(max_request_bytes=1000, header_timeout=2.0, body_timeout=3.0,
                                           keep_alive_timeout=4.0)
    assert _serve_options()["limits"] == HTTPLimits()


def test_serve_with_a_bad_limit_fails_with_a_clear_message_before_loading_the_model() -> None:
    result = _sgnb("serve", "--max-request-bytes", "0", "--port", "1")
    assert result.returncode == 1
    assert "sgnb serve: error: max_request_bytes must be positive, got 0" in result.stderr
    assert "Traceback" not in result.stderr
