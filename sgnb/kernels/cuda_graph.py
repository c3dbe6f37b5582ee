"""CUDA-graph capture and replay of one decode step, for a fixed set of batch sizes.

Contract with the model runner (engine flag `cuda_graph=False` by default; build a runner only
when it is True and the device is CUDA):

    forward(input_ids, positions, out_cache_loc, kv_indptr, kv_indices) -> logits
        input_ids, positions, out_cache_loc: [batch] int64     (one new token per request)
        kv_indptr: [batch + 1], kv_indices: [max_num_kv]        (the attention ops' layout, current
                                                                  token included)
        logits: [batch, vocab] (any tensor whose first dim is batch)

  - `forward` must be capturable: no host reads of tensor values (.item(), .tolist(), int(t),
    Python branches on values), no new CUDA allocations that outlive the call, and all per-step
    state comes from these five tensors (plus the model weights and the KV pool, which are read
    and written in place). Use attention ops with `is_graph_safe` (Triton): the torch reference
    decode reads the max sequence length on the host.
  - kv_indices is the whole static buffer: only its first kv_indptr[batch] entries are meaningful,
    so `forward` must not use kv_indices.numel() as the token count.
  - Sampling stays outside the graph.

Padding: a batch of n is run as the smallest captured size b >= n. Rows n..b-1 get input id 0,
position 0, out_cache_loc = the padding slot, and a one-token sequence at the padding slot, so
they write and read only the reserved slot 0. `replay` returns a view of the first n rows of the
graph's static output; it is overwritten by the next replay (clone it to keep it).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable

import torch

DecodeForward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(slots=True)
class StaticDecodeInputs:
    """The graph's input buffers, sized for the largest captured batch."""

    input_ids: torch.Tensor      # [max_batch] int64
    positions: torch.Tensor      # [max_batch] int64
    out_cache_loc: torch.Tensor  # [max_batch] int64
    kv_indptr: torch.Tensor      # [max_batch + 1]
    kv_indices: torch.Tensor     # [max_num_kv]
    arange: torch.Tensor         # [max_batch + 1], 0..max_batch, same dtype as kv_indptr

    @classmethod
    def allocate(cls, max_batch: int, max_num_kv: int, device: torch.device | str,
                 index_dtype: torch.dtype = torch.int64) -> StaticDecodeInputs:
        def zeros(n: int, dtype: torch.dtype) -> torch.Tensor:
            return torch.zeros(n, dtype=dtype, device=device)
        return cls(zeros(max_batch, torch.int64), zeros(max_batch, torch.int64), zeros(max_batch, torch.int64),
                   zeros(max_batch + 1, index_dtype), zeros(max_num_kv, index_dtype),
                   torch.arange(max_batch + 1, dtype=index_dtype, device=device))

    def args(self, batch: int) -> tuple[torch.Tensor, ...]:
        """The forward's arguments for a captured batch size (views of the static buffers)."""
        return (self.input_ids[:batch], self.positions[:batch], self.out_cache_loc[:batch],
                self.kv_indptr[:batch + 1], self.kv_indices)

    def fill(self, padded_batch: int, input_ids: torch.Tensor, positions: torch.Tensor,
             out_cache_loc: torch.Tensor, kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
             padding_slot: int = 0) -> None:
        """Copy one step's inputs in and pad rows len(input_ids)..padded_batch-1 (no host sync).

        kv_indices must hold exactly kv_indptr[-1] entries, and kv_indptr[0] must be 0.
        """
        batch, num_kv = input_ids.shape[0], kv_indices.shape[0]
        num_pad = padded_batch - batch
        if not 0 <= num_pad <= self.input_ids.shape[0] - batch:
            raise ValueError(f"cannot pad a batch of {batch} to {padded_batch} "
                             f"(static buffers hold {self.input_ids.shape[0]})")
        if positions.shape[0] != batch or out_cache_loc.shape[0] != batch or kv_indptr.shape[0] != batch + 1:
            raise ValueError(f"inconsistent decode inputs: {batch} input ids, {positions.shape[0]} positions, "
                             f"{out_cache_loc.shape[0]} out_cache_loc, {kv_indptr.shape[0]} kv_indptr entries")
        if num_kv + num_pad > self.kv_indices.shape[0]:
            raise ValueError(f"{num_kv} kv indices (+{num_pad} padding) exceed the static buffer "
                             f"of {self.kv_indices.shape[0]}")
        self.input_ids[:batch].copy_(input_ids)
        self.positions[:batch].copy_(positions)
        self.out_cache_loc[:batch].copy_(out_cache_loc)
        self.kv_indptr[:batch + 1].copy_(kv_indptr)
        self.kv_indices[:num_kv].copy_(kv_indices)
        if num_pad:
            self.input_ids[batch:padded_batch].zero_()
            self.positions[batch:padded_batch].zero_()
            self.out_cache_loc[batch:padded_batch].fill_(padding_slot)
            # padding row r holds one token: kv_indptr[r + 1] = kv_indptr[batch] + (r + 1 - batch)
            torch.add(self.arange[1:num_pad + 1], self.kv_indptr[batch:batch + 1],
                      out=self.kv_indptr[batch + 1:padded_batch + 1])
            self.kv_indices[num_kv:num_kv + num_pad].fill_(padding_slot)


class DecodeGraphRunner:
    """Captures `forward` once per batch size and replays the smallest graph that fits a batch."""

    def __init__(self, forward: DecodeForward, batch_sizes: list[int], max_num_kv: int,
                 device: torch.device | str = "cuda", *, index_dtype: torch.dtype = torch.int64,
                 padding_slot: int = 0, num_warmup: int = 2) -> None:
        device = torch.device(device)
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {device}; "
                             "keep cuda_graph=False on the CPU")
        if not torch.cuda.is_available():
            raise ValueError("CUDA graphs need a CUDA device, but torch.cuda.is_available() is False")
        sizes = sorted(set(batch_sizes))
        if not sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
            raise ValueError(f"batch_sizes must be positive ints, got {batch_sizes!r}")
        if max_num_kv < sizes[-1]:
            raise ValueError(f"max_num_kv ({max_num_kv}) must hold at least one token per request "
                             f"of the largest batch ({sizes[-1]})")
        if index_dtype not in (torch.int32, torch.int64):
            raise ValueError(f"index_dtype must be torch.int32 or torch.int64, got {index_dtype}")
        self.forward = forward
        self.batch_sizes = sizes
        self.device = device
        self.padding_slot = padding_slot
        self.static = StaticDecodeInputs.allocate(sizes[-1], max_num_kv, device, index_dtype)
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._outputs: dict[int, torch.Tensor] = {}
        self._capture(num_warmup)

    @property
    def max_batch_size(self) -> int:
        return self.batch_sizes[-1]

    def padded_batch_size(self, batch: int) -> int | None:
        """The captured size a batch of `batch` runs as, or None when it is too large."""
        i = bisect.bisect_left(self.batch_sizes, batch)
        return self.batch_sizes[i] if i < len(self.batch_sizes) else None

    def can_run(self, batch: int, num_kv: int) -> bool:
        padded = self.padded_batch_size(batch)
        return (batch >= 1 and padded is not None
                and num_kv + padded - batch <= self.static.kv_indices.shape[0])

    def _empty_step(self) -> tuple[torch.Tensor, ...]:
        index_dtype = self.static.kv_indptr.dtype
        empty = torch.zeros(0, dtype=torch.int64, device=self.device)
        return (empty, empty, empty, torch.zeros(1, dtype=index_dtype, device=self.device),
                torch.zeros(0, dtype=index_dtype, device=self.device))

    def _capture(self, num_warmup: int) -> None:
        stream = torch.cuda.Stream(self.device)
        pool = None
        # largest first, so the smaller graphs reuse the largest one's memory pool
        for batch in reversed(self.batch_sizes):
            self.static.fill(batch, *self._empty_step(), padding_slot=self.padding_slot)  # all padding rows
            args = self.static.args(batch)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(num_warmup):          # compiles Triton kernels, warms allocators
                    self.forward(*args)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, stream=stream):
                self._outputs[batch] = self.forward(*args)
            pool = graph.pool()
            self._graphs[batch] = graph
        torch.cuda.synchronize(self.device)

    def replay(self, input_ids: torch.Tensor, positions: torch.Tensor, out_cache_loc: torch.Tensor,
               kv_indptr: torch.Tensor, kv_indices: torch.Tensor) -> torch.Tensor:
        """Run one decode step through the graph; returns logits [batch, ...] (a view, see module doc)."""
        batch = input_ids.shape[0]
        padded = self.padded_batch_size(batch)
        if batch < 1 or padded is None:
            raise ValueError(f"batch of {batch} is outside the captured sizes 1..{self.max_batch_size}")
        self.static.fill(padded, input_ids, positions, out_cache_loc, kv_indptr, kv_indices,
                         padding_slot=self.padding_slot)
        self._graphs[padded].replay()
        return self._outputs[padded][:batch]
