"""Engine construction options, validated once."""

from __future__ import annotations

from dataclasses import dataclass

from sgnb.engine.policy import get_policy
from sgnb.engine.scheduler import SchedulerConfig

_DTYPES = ("float32", "bfloat16", "float16")


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

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")
        get_policy(self.schedule_policy)        # ValueError naming the known ones
        if self.kv_cache_gb <= 0:
            raise ValueError(f"kv_cache_gb must be positive, got {self.kv_cache_gb}")
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
