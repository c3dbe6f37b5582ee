"""Copies KV pages between the pool and host memory, and to and from bytes (the tiered cache's torch part).

A page is a CPU tensor [PAGE_SIZE, num_layers, 2, num_kv_heads, head_dim] of the pool's dtype: row i is
token i's K and V in every layer, copied from the pool's slots (`KVPool.layers`).
"""

from __future__ import annotations

import math

import torch

from sgnb.engine.kv_cache import KVPool
from sgnb.engine.page_keys import PAGE_SIZE


class KVPageIO:
    """Gathers pages out of ``pool`` and scatters them back; encodes pages as bytes for the disk tier."""

    def __init__(self, pool: KVPool) -> None:
        self.layers = pool.layers
        first = self.layers[0]
        self.device = first.device
        self.dtype = first.dtype
        self.page_shape = (PAGE_SIZE, len(self.layers), *first.shape[1:])
        self.page_nbytes = math.prod(self.page_shape) * first.element_size()

    def gather(self, slots: list[int], own_storage: bool = True) -> list[torch.Tensor]:
        """Pages holding the KV of ``slots`` (a whole number of pages, in position order).

        With ``own_storage`` each page is a copy of its own, freed alone (what a store bounded in bytes
        needs); without, the pages are views of one gathered tensor (one copy less, for short-lived pages).
        """
        if len(slots) % PAGE_SIZE:
            raise ValueError(f"gather needs whole pages of {PAGE_SIZE} slots, got {len(slots)}")
        if not slots:
            return []
        idx = torch.tensor(slots, dtype=torch.int64, device=self.device)
        rows = torch.stack([layer.index_select(0, idx) for layer in self.layers], dim=1).to("cpu")
        pages = rows.split(PAGE_SIZE)                                # contiguous: split along the first dim
        return [page.clone() for page in pages] if own_storage else list(pages)

    def scatter(self, slots: list[int], pages: list[torch.Tensor], skip: int = 0) -> None:
        """Writes the pages' rows from ``skip`` on (one per slot of ``slots``) into the pool."""
        rows = torch.cat(pages)[skip:]
        if rows.shape[0] != len(slots):
            raise ValueError(f"scatter got {rows.shape[0]} rows for {len(slots)} slots")
        idx = torch.tensor(slots, dtype=torch.int64, device=self.device)
        rows = rows.to(self.device)
        for i, layer in enumerate(self.layers):
            layer.index_copy_(0, idx, rows[:, i])

    def encode(self, page: torch.Tensor) -> bytes:
        return page.contiguous().view(torch.uint8).numpy().tobytes()

    def decode(self, data: bytes | memoryview) -> torch.Tensor:
        """The page encoded in ``data``; ValueError if it has the wrong size."""
        if len(data) != self.page_nbytes:
            raise ValueError(f"a page holds {self.page_nbytes} bytes, got {len(data)}")
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(self.dtype).view(self.page_shape)
