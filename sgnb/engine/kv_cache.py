"""KV storage: the per-layer token-to-KV pool and the request-to-token table.

Slot bookkeeping (which slot is free) lives in `SlotAllocator`; these classes only
hold the tensors the attention kernels read.
"""

from __future__ import annotations

import torch

from sgnb.engine.model_config import ModelConfig


class KVPool:
    """k_buffers[layer], v_buffers[layer]: [num_slots, num_kv_heads, head_dim]. Slot 0 is padding.

    A layer's K and V are two views of one [num_slots, 2, num_kv_heads, head_dim] tensor: a slot's K
    and V lie side by side, so a backend may store or gather both with one copy (the CPU backend
    does; see `sgnb.kernels.paged_kv`). Kernels that take strides see two plain buffers.
    """

    def __init__(self, cfg: ModelConfig, num_slots: int, dtype: torch.dtype, device: str):
        if num_slots < 2:
            raise ValueError(f"KV pool needs at least 2 slots, got {num_slots}")
        shape = (num_slots, 2, cfg.num_kv_heads, cfg.head_dim)
        self.num_slots = num_slots
        kv = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_layers)]
        self.layers = kv  # per layer [num_slots, 2, num_kv_heads, head_dim]: what copies of whole slots use
        self.k_buffers = [layer[:, 0] for layer in kv]
        self.v_buffers = [layer[:, 1] for layer in kv]

    @staticmethod
    def slots_for_budget(cfg: ModelConfig, budget_bytes: int, dtype: torch.dtype) -> int:
        per_token = cfg.kv_bytes_per_token * torch.finfo(dtype).bits // 8
        return max(2, budget_bytes // per_token)


class ReqToTokenPool:
    """table[row, pos] = KV slot of token `pos` of the request holding `row`."""

    def __init__(self, num_rows: int, max_context_len: int, device: str):
        self.table = torch.zeros((num_rows, max_context_len), dtype=torch.int64, device=device)
        self._free_rows = list(range(num_rows - 1, -1, -1))
        self.num_rows = num_rows

    @property
    def num_free(self) -> int:
        return len(self._free_rows)

    def alloc(self) -> int | None:
        return self._free_rows.pop() if self._free_rows else None

    def free(self, row: int) -> None:
        if row in self._free_rows:
            raise RuntimeError(f"request row {row} freed twice")
        self._free_rows.append(row)

    def write(self, row: int, start: int, slots: list[int]) -> None:
        if slots:
            self.table[row, start:start + len(slots)] = torch.tensor(slots, dtype=torch.int64)

    def read(self, row: int, start: int, end: int) -> list[int]:
        return self.table[row, start:end].tolist()
