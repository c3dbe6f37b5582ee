"""The C++ CPU kernels (`sgnb/kernels/csrc/*.cpp`), compiled once into the user cache and reused.

    ext = load_cpu_extension()     # the compiled module, or None: no compiler, a failed build, or turned off
    ext.cpu_isa()                  # "avx512_vnni" | "avx512" | "avx2" | "scalar": the vector path the kernels take

The build goes through `torch.utils.cpp_extension.load` into `$SGNB_CACHE/kernels/cpu-<key>/` (default
`~/.cache/sgnb`), where `key` hashes the sources, torch's version and the compiler, so a changed source or
another torch builds anew and an unchanged one loads in well under a second. A file lock keeps two processes
from building the same folder at once. The extension is compiled for baseline x86-64; each kernel picks its
AVX512 or AVX2 body at run time (`csrc/cpu_features.h`).

Where no C++ compiler is found (`CXX=false` simulates that), or the build fails, the function returns None and
says so once; the engine then runs today's torch path. `SGNB_CPU_KERNELS=0` turns the kernels off without a
notice. `python -m sgnb.kernels.cpu_extension` builds the extension (as `make test` does) and prints its ISA.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType

CSRC = Path(__file__).parent / "csrc"


class CpuKernelsUnavailable(RuntimeError):
    """The C++ CPU kernels could not be built or loaded here."""


def cache_root() -> Path:
    env = os.environ.get("SGNB_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "sgnb") / "kernels"


def sources() -> list[Path]:
    return sorted(CSRC.glob("*.cpp"))


def compiler() -> str | None:
    """The C++ compiler torch's builder would run (`$CXX`, else `c++`), if it exists and answers `--version`
    (so `CXX=false` reads as no compiler)."""
    cxx = os.environ.get("CXX", "c++").strip()
    found = shutil.which(cxx.split()[0]) if cxx else None
    if found is None:
        return None
    try:
        probe = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found if probe.returncode == 0 and probe.stdout.strip() else None


def build_key(cxx: str) -> str:
    import torch

    digest = hashlib.sha256()
    for path in sorted([*CSRC.glob("*.cpp"), *CSRC.glob("*.h")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(f"{torch.__version__}|{sys.version_info[:2]}|{cxx}".encode())
    return digest.hexdigest()[:16]


_CFLAGS = ["-O3", "-std=c++17", "-fopenmp", "-fno-math-errno", "-Wno-unused-function"]


def build(verbose: bool = False) -> ModuleType:
    """Compile (or load the cached build of) the extension; raises CpuKernelsUnavailable on failure."""
    import fcntl

    cxx = compiler()
    if cxx is None:
        raise CpuKernelsUnavailable(f"no C++ compiler found (CXX={os.environ.get('CXX', 'c++')!r})")
    key = build_key(cxx)
    folder = cache_root() / f"cpu-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    from torch.utils import cpp_extension

    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)           # a second process waits for the first one's build
        try:
            return cpp_extension.load(
                name=f"sgnb_cpu_{key}", sources=[str(p) for p in sources()], extra_cflags=_CFLAGS,
                extra_ldflags=["-fopenmp"], extra_include_paths=[str(CSRC)], build_directory=str(folder),
                verbose=verbose)
        except Exception as exc:  # compiler errors arrive as RuntimeError / subprocess errors / ImportError
            raise CpuKernelsUnavailable(f"building the C++ CPU kernels failed: {type(exc).__name__}: "
                                        f"{str(exc)[-2000:]}") from exc


@functools.cache
def load_cpu_extension() -> ModuleType | None:
    """The compiled kernels, built on first use; None (with one notice) where they cannot be built."""
    if os.environ.get("SGNB_CPU_KERNELS", "1").strip().lower() in ("0", "false", "off", "no"):
        return None
    try:
        return build()
    except CpuKernelsUnavailable as exc:
        warnings.warn(f"sgnb: C++ CPU kernels unavailable, using the torch path instead ({exc})",
                      RuntimeWarning, stacklevel=2)
        return None


def require_cpu_extension() -> ModuleType:
    """The compiled kernels, or CpuKernelsUnavailable naming why not (for callers that asked for them)."""
    ext = load_cpu_extension()
    if ext is None:
        raise CpuKernelsUnavailable("the C++ CPU kernels are unavailable here (see the earlier notice); "
                                    "pass cpu_kernels=False to run the torch path")
    return ext


def main() -> int:
    try:
        ext = build(verbose="-v" in sys.argv)
    except CpuKernelsUnavailable as exc:
        print(f"sgnb CPU kernels: not built: {exc}", file=sys.stderr)
        return 1
    print(f"sgnb CPU kernels: {ext.__file__} (isa: {ext.cpu_isa()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
