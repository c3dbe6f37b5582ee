"""A request's life inside the engine: its tokens, KV ownership, progress and results."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sgnb.engine.detokenizer import IncrementalDetokenizer
from sgnb.engine.sampling_params import SamplingParams

if TYPE_CHECKING:
    import torch

    from sgnb.engine.constraint import Constraint
    from sgnb.engine.multimodal.processor import ImageItem
    from sgnb.engine.radix_cache import TreeNode

_ids = itertools.count()


def new_rid() -> str:
    return f"req-{next(_ids)}"


class ResultSink:
    """Thread-safe hand-off from the engine loop to the caller: stream deltas, then the final result."""

    __slots__ = ("_cond", "_deltas", "result", "error", "is_done")

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._deltas: deque[dict] = deque()
        self.result: dict | None = None
        self.error: BaseException | None = None
        self.is_done = False

    def push(self, delta: dict) -> None:
        with self._cond:
            self._deltas.append(delta)
            self._cond.notify_all()

    def finish(self, result: dict | None, error: BaseException | None = None) -> None:
        with self._cond:
            self.result, self.error, self.is_done = result, error, True
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.is_done, timeout)

    def next_delta(self, timeout: float | None = None) -> dict | None:
        """The next stream delta; None once the request is done and all deltas were taken."""
        with self._cond:
            self._cond.wait_for(lambda: self._deltas or self.is_done, timeout)
            return self._deltas.popleft() if self._deltas else None


@dataclass(slots=True, eq=False)
class Req:
    rid: str
    input_ids: list[int]
    params: SamplingParams
    return_logprob: bool = False
    logprob_start_len: int = -1        # first input position with a reported logprob; -1: none
    top_logprobs_num: int = 0
    is_score: bool = False             # prefill only: input logprobs, no generated token
    stream: bool = False
    constraint: Constraint | None = None   # regex / JSON requests
    # most tokens the output may hold: max_new_tokens, or fewer where the context leaves less room after the
    # prompt (the engine sets it); the constraint's budget rule closes outputs within it
    max_output_len: int = -1
    # images (vision-language models): item k's embedding rows sit at its spans of input_ids, which hold the
    # image token there; the prefix cache keys those rows by the item's pad id instead (`cache_key`)
    image_items: list[ImageItem] = field(default_factory=list)
    padded_input_ids: list[int] | None = field(default=None, init=False)   # None: no images

    output_ids: list[int] = field(default_factory=list)
    # forced tokens the retokenization rule held back, computed with their jump: the model's samples at the
    # rows before them confirm them one by one (into output_ids) or drop the rest (and their K/V)
    draft_ids: list[int] = field(default_factory=list)
    kv_len: int = 0                    # leading tokens of fill_ids whose K/V are in the pool
    tree_len: int = 0                  # leading tokens whose slots belong to the prefix cache (locked via last_node)
    last_node: TreeNode | None = None
    row: int | None = None             # row in the request-to-token table while admitted
    cached_tokens: int = 0             # prompt tokens served from the prefix cache (first admission)
    num_skips: int = 0                 # scheduling rounds passed over while others were admitted
    num_retractions: int = 0
    arrival: float = field(default_factory=time.monotonic)

    finish_reason: dict | None = None
    detok: IncrementalDetokenizer | None = None
    text: str = ""                     # output text, stop-trimmed once finished
    num_sent_chars: int = 0            # streamed so far
    num_sent_ids: int = 0
    input_token_logprobs: list = field(default_factory=list)
    input_top_logprobs: list = field(default_factory=list)
    output_token_logprobs: list = field(default_factory=list)
    output_top_logprobs: list = field(default_factory=list)
    generator: torch.Generator | None = None   # when a sampling_seed is set
    sink: ResultSink = field(default_factory=ResultSink)

    def __post_init__(self) -> None:
        if self.max_output_len < 0:
            self.max_output_len = self.params.max_new_tokens
        if self.image_items:
            padded = list(self.input_ids)
            for item in self.image_items:
                for start, length in item.spans:
                    padded[start:start + length] = [item.pad_id] * length
            self.padded_input_ids = padded

    @property
    def fill_ids(self) -> list[int]:
        """Every token whose K/V the request needs: prompt, output so far and the draft to verify."""
        return self._then_outputs(self.input_ids)

    @property
    def cache_key(self) -> list[int]:
        """`fill_ids` as the prefix cache keys them: each image's rows carry its pad id, so the same image
        reuses its KV and different images share none. Everything that shows or scores text uses `fill_ids`."""
        return self._then_outputs(self.input_ids if self.padded_input_ids is None else self.padded_input_ids)

    def _then_outputs(self, prompt_ids: list[int]) -> list[int]:
        ids = prompt_ids + self.output_ids
        return ids + self.draft_ids if self.draft_ids else ids

    @property
    def num_tail_rows(self) -> int:
        """Trailing fill tokens whose logits the last extend must give: the last, and one before each draft token."""
        return 1 + len(self.draft_ids)

    @property
    def is_finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def wants_input_logprobs(self) -> bool:
        return self.logprob_start_len >= 0

    def meta_info(self) -> dict:
        meta: dict[str, Any] = {
            "id": self.rid,
            "prompt_tokens": len(self.input_ids),
            "completion_tokens": len(self.output_ids),
            "cached_tokens": self.cached_tokens,
            "num_images": len(self.image_items),
            "finish_reason": self.finish_reason,
        }
        if self.return_logprob:
            meta["input_token_logprobs"] = self.input_token_logprobs
            meta["output_token_logprobs"] = self.output_token_logprobs
            if self.top_logprobs_num:
                meta["input_top_logprobs"] = self.input_top_logprobs
                meta["output_top_logprobs"] = self.output_top_logprobs
        if self.constraint is not None:
            meta["constraint"] = self.constraint.summary()
            meta["constraint_trace"] = self.constraint.trace
        return meta
