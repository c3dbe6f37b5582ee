"""Engine construction options, validated once."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sgnb.engine.policy import get_policy
from sgnb.engine.scheduler import SchedulerConfig

_DTYPES = ("float32", "bfloat16", "float16")
# None: dense weights; "gguf": the GGUF's own Q4_0/Q4_1/Q8_0 blocks; else: quantize an HF folder's weights at load
QUANTIZATIONS = (None, "gguf", "q8_0", "q4_0", "q4_1")


@dataclass(slots=True)
class EngineConfig:
    model: str = "smollm2-135m"
    dtype: str = "float32"
    device: str = "cpu"
    kv_cache_gb: float = 1.0                 # memory budget of the KV pool
    max_total_tokens: int | None = None      # overrides kv_cache_gb: pool size in tokens
    max_context_len: int | None = None       # default: the model's
    radix_cache: bool = True
    schedule_policy: str = "lpm"
    max_running_requests: int = 64
    max_prefill_tokens: int = 2048
    attention_backend: str = "auto"          # "torch" | "triton" | "flash" | "auto"
    jump_forward: bool = True                # constrained decoding: append forced text in one extend step
    draft_held_back: bool = True             # ...and the forced tokens held back at its end, as a draft to verify
    cuda_graph: bool = False                 # capture the decode step in CUDA graphs (CUDA + triton backend)
    num_threads: int | None = None           # torch intra-op threads (default: torch's)
    prepack_weights: bool = True             # CPU: matmuls on oneDNN-prepacked weights where faster
    cpu_kernels: bool = True                 # CPU: the C++ kernels (sgnb/kernels/csrc) where they build
    quantization: str | None = None          # see QUANTIZATIONS; packed weights run on the C++ kernels
    # tiered cache (sgnb/engine/tiered_radix_cache.py): evicted KV goes to host memory (and disk), comes back on a match
    enable_hierarchical_cache: bool = False
    hicache_size: float = 2.0                # GB of host memory for the host tier
    hicache_storage_dir: str | None = None   # disk tier folder, kept across restarts; implies enable_hierarchical_cache
    hicache_storage_size: float = 10.0       # GB cap of the disk tier (LRU over the whole folder)
    image_cache_mb: float = 256.0            # vision-language models: LRU of image embeddings (0: none kept)

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")
        get_policy(self.schedule_policy)        # ValueError naming the known ones
        if not isinstance(self.cpu_kernels, bool):
            raise ValueError(f"cpu_kernels must be a bool, got {self.cpu_kernels!r}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {self.quantization!r}")
        if self.kv_cache_gb <= 0:
            raise ValueError(f"kv_cache_gb must be positive, got {self.kv_cache_gb}")
        if self.image_cache_mb < 0:
            raise ValueError(f"image_cache_mb must be >= 0, got {self.image_cache_mb}")
        self._check_hicache()
        if self.max_total_tokens is not None and self.max_total_tokens < 2:
            raise ValueError(f"max_total_tokens must be >= 2, got {self.max_total_tokens}")
        if self.cuda_graph and not self.device.startswith("cuda"):
            raise ValueError("cuda_graph=True needs device='cuda'")
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"device {self.device!r} requested but CUDA is not available")
        elif self.device != "cpu":
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")

    def _check_hicache(self) -> None:
        if not isinstance(self.enable_hierarchical_cache, bool):
            raise ValueError(f"enable_hierarchical_cache must be a bool, got {self.enable_hierarchical_cache!r}")
        for name in ("hicache_size", "hicache_storage_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number of GB, got {value!r}")
        if self.hicache_storage_dir is not None:
            if not isinstance(self.hicache_storage_dir, (str, os.PathLike)) or not os.fspath(self.hicache_storage_dir):
                raise ValueError(f"hicache_storage_dir must be a folder path, got {self.hicache_storage_dir!r}")
            self.hicache_storage_dir = os.fspath(self.hicache_storage_dir)
            self.enable_hierarchical_cache = True        # a storage folder asks for the tiers
        if self.enable_hierarchical_cache and not self.radix_cache:
            raise ValueError("enable_hierarchical_cache needs radix_cache=True (the tiers lie under the radix tree)")

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    def cuda_graph_batch_sizes(self) -> list[int] | None:
        if not self.cuda_graph:
            return None
        sizes = [1, 2, 4] + list(range(8, self.max_running_requests + 1, 8))
        return sorted({b for b in sizes if b <= self.max_running_requests} | {self.max_running_requests})

    def scheduler_config(self) -> SchedulerConfig:
        return SchedulerConfig(schedule_policy=self.schedule_policy, max_running_requests=self.max_running_requests,
                               max_prefill_tokens=self.max_prefill_tokens)
