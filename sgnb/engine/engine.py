"""The in-process engine: an SGLang-shaped `Engine` whose loop runs on its own thread.

Each loop iteration reads top to bottom: take new requests and aborts -> schedule one
batch -> run the model -> postprocess (sample, detokenize, stop, stream, finish).
Callers block on per-request sinks, so a notebook stays responsive and Ctrl-C aborts.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import Any

import torch

from sgnb.engine import postprocess
from sgnb.engine.counters import Counters, engine_stats
from sgnb.engine.engine_config import EngineConfig
from sgnb.engine.errors import EngineError, PoolExhausted
from sgnb.engine.image_embedding_cache import ImageEmbeddingCache
from sgnb.engine.image_prompts import decode_with_images, images_per_prompt, num_image_tokens
from sgnb.engine.kv_cache import KVPool, ReqToTokenPool
from sgnb.engine.model_runner import ModelRunner
from sgnb.engine.no_prefix_cache import NoPrefixCache
from sgnb.engine.postprocess import PostprocessContext
from sgnb.engine.prefix_cache import PrefixCache
from sgnb.engine.radix_cache import RadixCache
from sgnb.engine.request import Req, new_rid
from sgnb.engine.sampling_params import SamplingParams
from sgnb.engine.scheduler import ScheduleBatch, Scheduler
from sgnb.engine.slot_allocator import SlotAllocator
from sgnb.engine.tokenizer import load_tokenizer


class Engine:
    """Offline engine with RadixAttention, shaped like SGLang's `sgl.Engine`.

    >>> engine = Engine("smollm2-135m")
    >>> engine.generate("The capital of France is", {"max_new_tokens": 8, "temperature": 0})["text"]
    """

    def __init__(self, model: str = "smollm2-135m", **kwargs: Any):
        try:
            self.config = EngineConfig(model=model, **kwargs)
        except TypeError as exc:
            raise ValueError(f"unknown Engine option: {exc}") from None
        self.counters = Counters()
        self._reqs: dict[str, Req] = {}         # unfinished requests by rid; delivery removes them
        self._inbox: list[Req] = []
        self._aborts: list[tuple[str, str]] = []
        self._inflight: ScheduleBatch | None = None
        self._cv = threading.Condition()
        self._is_stopping = False
        # All torch work (loading, KV allocation, forward passes) happens on the engine thread.
        # libgomp keeps one worker pool per thread that has run a parallel region; with two pools
        # alive on a small machine it throttles spin-waiting, and every small GEMM then pays a
        # futex wake-up (measured: 576x576 GEMV 13 us -> 74 us). Keeping the caller's thread free of
        # torch compute leaves the engine thread the only pool.
        self._ready = threading.Event()
        self._init_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sgnb-engine", daemon=True)
        self._thread.start()
        try:
            while not self._ready.wait(0.1):
                pass
        except KeyboardInterrupt:
            self.shutdown()
            raise
        if self._init_error is not None:
            self._thread.join()
            raise self._init_error

    def _setup(self) -> None:
        from sgnb.engine.model_store import resolve_gguf, resolve_model
        from sgnb.engine.weights import load_model
        from sgnb.kernels.backend import get_attention_ops
        from sgnb.kernels.cpu_extension import load_cpu_extension

        cfg = self.config
        self.model_path = resolve_model(cfg.model)
        self.dtype = cfg.torch_dtype
        self.device = cfg.device
        # the C++ CPU kernels, where asked for and built (else the torch path: the builder said why, once)
        cpu_ext = load_cpu_extension() if cfg.cpu_kernels and cfg.device == "cpu" else None
        weights = resolve_gguf(cfg.model) if cfg.quantization == "gguf" else self.model_path
        self.model, self.model_config = load_model(weights, self.dtype, cfg.device, cfg.prepack_weights,
                                                   cfg.quantization, cpu_kernels=cpu_ext is not None)
        self.tokenizer = load_tokenizer(self.model_path)
        mc = self.model_config
        self.max_context_len = min(mc.max_context_len, cfg.max_context_len or mc.max_context_len)
        num_slots = cfg.max_total_tokens or KVPool.slots_for_budget(mc, int(cfg.kv_cache_gb * 2**30), self.dtype)
        self.kv_pool = KVPool(mc, num_slots, self.dtype, cfg.device)
        self.allocator = SlotAllocator(num_slots)
        self.tree: PrefixCache = self._make_prefix_cache()
        self.req_pool = ReqToTokenPool(cfg.max_running_requests + 1, self.max_context_len + 1, cfg.device)
        self.scheduler = Scheduler(cfg.scheduler_config(), self.allocator, self.tree, self.req_pool)
        self.ops = get_attention_ops(cfg.attention_backend, cfg.device, cpu_kernels=cpu_ext is not None)
        packed = self.model.packed_weights.values()
        self._kernel_stats = {
            "quantization": cfg.quantization,
            "weights": "packed" if packed else "dense",        # dense: no quantization, or dequantized at load
            "packed_weight_bytes": sum(w.nbytes for w in packed),
            "kernels": "torch" if cpu_ext is None else cpu_ext.cpu_isa(),   # the C++ kernels' vector path
            "attention_backend": self.ops.name,
        }
        self.image_processor = None                 # vision-language models: expands prompts with images
        image_cache = None
        if self.model.is_multimodal:
            from sgnb.engine.multimodal.processor import get_image_processor

            self.image_processor = get_image_processor(self.model_path, self.tokenizer)
            image_cache = ImageEmbeddingCache(self.model, int(cfg.image_cache_mb * 2**20), self.counters)
        self.runner = ModelRunner(self.model, self.kv_pool, self.req_pool, self.ops, cfg.device,
                                  cfg.cuda_graph_batch_sizes(), image_cache)
        self.eos_ids = tuple(sorted(set(mc.eos_token_ids) | ({self.tokenizer.eos_token_id} - {None})))
        self._post = PostprocessContext(self.tokenizer, self.eos_ids, self.max_context_len, self.counters,
                                        self.scheduler, self._reqs)

    def _make_prefix_cache(self) -> PrefixCache:
        """The prefix cache the options ask for: none, the radix tree, or the tiered radix tree."""
        cfg = self.config
        if not cfg.radix_cache:
            return NoPrefixCache(self.allocator)
        if not cfg.enable_hierarchical_cache:
            return RadixCache(self.allocator)
        from sgnb.engine.disk_kv_tier import DiskKVTier
        from sgnb.engine.kv_page_io import KVPageIO
        from sgnb.engine.page_keys import kv_namespace
        from sgnb.engine.tiered_radix_cache import TieredRadixCache

        mc = self.model_config
        page_io = KVPageIO(self.kv_pool)
        namespace = kv_namespace(self.model_path, cfg.dtype, mc.num_layers, mc.num_kv_heads, mc.head_dim)
        disk = None
        if cfg.hicache_storage_dir is not None:
            disk = DiskKVTier(cfg.hicache_storage_dir, namespace, int(cfg.hicache_storage_size * 2**30),
                              page_io.encode, page_io.decode)
        return TieredRadixCache(self.allocator, page_io, namespace, int(cfg.hicache_size * 2**30), disk)

    # ------------------------------------------------------------------ public API

    def generate(self, prompt: str | list[str] | None = None, sampling_params: dict | list[dict] | None = None,
                 input_ids: list[int] | list[list[int]] | None = None, return_logprob: bool = False,
                 logprob_start_len: int | list[int] | None = None, top_logprobs_num: int | None = None,
                 stream: bool = False, rid: str | list[str] | None = None, image_data: Any = None):
        """Generate for one prompt (-> dict) or a list (-> list of dicts); `stream=True` -> iterator of deltas.

        Each result is {"text", "output_ids", "meta_info"}; see ARCHITECTURE.md for meta_info.
        image_data (a vision-language model): an image or a list of images for one prompt, one such entry per
        prompt for a batch; each fills one `engine.image_token` placeholder of its prompt, in order.
        """
        reqs, is_single = self._build(prompt, input_ids, sampling_params, return_logprob, logprob_start_len,
                                      top_logprobs_num, stream, rid, image_data, is_score=False)
        if stream:
            if not is_single:
                raise ValueError("stream=True takes a single prompt, not a list")
            return self._stream(reqs[0])
        results = self._wait(reqs)
        return results[0] if is_single else results

    def score(self, prompt: str | list[str] | None = None, input_ids: list[int] | list[list[int]] | None = None,
              logprob_start_len: int | list[int] = 0, top_logprobs_num: int = 0, rid: str | list[str] | None = None,
              image_data: Any = None):
        """Prefill only: log-probabilities of the input tokens from `logprob_start_len` on (what `select` uses)."""
        reqs, is_single = self._build(prompt, input_ids, None, True, logprob_start_len, top_logprobs_num,
                                      False, rid, image_data, is_score=True)
        results = self._wait(reqs)
        return results[0] if is_single else results

    @property
    def image_token(self) -> str | None:
        """The placeholder text an image takes in a prompt (e.g. "<image>"); None for a text-only model."""
        return None if self.image_processor is None else self.image_processor.image_token

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def abort(self, rid: str, message: str = "aborted by the caller") -> None:
        with self._cv:
            self._aborts.append((rid, message))
            self._cv.notify_all()

    def flush_cache(self) -> bool:
        """Drop every cached prefix; refused (False) while requests are running."""
        with self._cv:
            if self.scheduler.has_work() or self._inbox:
                return False
            self.tree.flush()
            if self.runner.image_cache is not None:
                self.runner.image_cache.clear()
            return True

    def check_integrity(self) -> None:
        """Free + cached + in-use slots == all slots; the tree's own invariants hold. Raises AssertionError."""
        with self._cv:
            used = self.scheduler.used_slots()
            if self._inflight is not None:
                used += self.scheduler.pending_slots(self._inflight)
            elif self.runner.image_cache is not None:      # the loop thread uses it only inside a batch
                self.runner.image_cache.check_integrity()
            self.tree.check_integrity(used)

    def stats(self) -> dict:
        """Cache, pool, queue and throughput figures, and the weights and kernels in use (`_kernel_stats`)."""
        with self._cv:
            return engine_stats(self.counters, self.tree, self.allocator, self.scheduler) | self._kernel_stats

    def snapshot(self, max_nodes: int = 500) -> dict:
        """Plain data for widgets: the radix tree, the queues, the stats (and each tier's usage, with tiers)."""
        with self._cv:
            tiers = self.tree.tier_usage()
            return {
                "cache": self.tree.snapshot(decode=self._decode, max_nodes=max_nodes, node_fields=self._node_fields),
                "stats": engine_stats(self.counters, self.tree, self.allocator, self.scheduler),
                "waiting": [r.rid for r in self.scheduler.waiting],
                "running": [r.rid for r in self.scheduler.admitted],
            } | ({} if tiers is None else {"tiers": tiers})

    def node_text(self, node_id: int) -> dict:
        """{"id", "text", "num_tokens"}: the decoded root path down to radix node `node_id` (a widget click).
        Raises ValueError when the cache holds no such node (evicted since the snapshot)."""
        with self._cv:
            tokens = self.tree.node_tokens(node_id)
        return {"id": node_id, "text": self._decode(tokens), "num_tokens": len(tokens)}

    def shutdown(self) -> None:
        with self._cv:
            self._is_stopping = True
            self._cv.notify_all()
        self._thread.join(timeout=30)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ submission

    def _build(self, prompt, input_ids, sampling_params, return_logprob, logprob_start_len, top_logprobs_num,
               stream, rid, image_data, is_score) -> tuple[list[Req], bool]:
        if (prompt is None) == (input_ids is None):
            raise ValueError("pass exactly one of prompt or input_ids")
        if prompt is not None and not isinstance(prompt, (str, list, tuple)):
            raise ValueError(f"prompt must be a string or a list of strings, got {type(prompt).__name__}")
        if input_ids is not None and not isinstance(input_ids, (list, tuple)):
            raise ValueError(f"input_ids must be a list of token ids or a list of such lists, "
                             f"got {type(input_ids).__name__}")
        is_single = isinstance(prompt, str) or (input_ids is not None and input_ids and isinstance(input_ids[0], int))
        if is_single:
            items = [prompt] if prompt is not None else [input_ids]
        else:
            items = list(prompt if prompt is not None else input_ids)
        if not items:
            raise ValueError("empty batch: no prompts given")
        n = len(items)
        params = _per_item(sampling_params, n, "sampling_params")
        starts = _per_item(logprob_start_len, n, "logprob_start_len")
        rids = _per_item(rid, n, "rid")
        images = images_per_prompt(image_data, n, is_single)
        if self.image_processor is None and any(images):
            raise ValueError(f"image_data was given, but model {self.config.model!r} is text-only: it takes no images")
        reqs = []
        for i, item in enumerate(items):
            ids, image_items = self._prompt_ids(item, prompt is not None, images[i])
            reqs.append(self._make_req(ids, params[i], return_logprob, starts[i], top_logprobs_num or 0,
                                       stream, rids[i], is_score, image_items))
        seen: set[str] = set()
        for req in reqs:
            if req.rid in seen:
                raise ValueError(f"request id {req.rid!r} appears more than once in the batch")
            seen.add(req.rid)
        with self._cv:
            for req in reqs:
                if req.rid in self._reqs:
                    raise ValueError(f"request id {req.rid!r} is already in use")
            for req in reqs:
                self._reqs[req.rid] = req
                self.counters.num_forced_tokens += len(req.output_ids)
            self._inbox += reqs
            self._cv.notify_all()
        return reqs, is_single

    def _prompt_ids(self, item: Any, is_text: bool, images: list) -> tuple[list[int], list]:
        """A prompt's token ids and its images' items: each image placeholder expanded for its image (a text
        prompt as text, then tokenized, as the HF processor does), or the text tokenized, or the ids as given."""
        if not is_text and not isinstance(item, (list, tuple)):
            raise ValueError(f"input_ids must be a list of token ids or a list of such lists, got {item!r}")
        if is_text:
            self._check_text_len(item)
        source = item if is_text else list(item)
        if images:
            expanded = self.image_processor.expand(source, images)
            return expanded.input_ids, expanded.items
        return (self.tokenizer.encode(source) if is_text else source), []

    def _check_text_len(self, text: Any) -> None:
        if not isinstance(text, str):
            raise ValueError(f"prompt must be a string, got {type(text).__name__}")
        # exact bound, checked before tokenizing (megabytes take seconds): no token covers more characters
        # than its own vocabulary string has (one per byte, or more), so a longer text needs too many tokens
        if len(text) > self.max_context_len * self._longest_token_chars:
            raise ValueError(f"prompt is {len(text)} characters: more than the context ({self.max_context_len} "
                             f"tokens of at most {self._longest_token_chars} characters) can hold")

    @functools.cached_property
    def _longest_token_chars(self) -> int:
        return max(map(len, self.tokenizer.get_vocab()))

    def _make_req(self, ids: list[int], params: dict | None, return_logprob: bool, start: int | None,
                  top_logprobs_num: int, stream: bool, rid: str | None, is_score: bool,
                  image_items: list) -> Req:
        if not ids:
            raise ValueError("empty prompt: nothing to generate from")
        if any(not isinstance(t, int) or not 0 <= t < self.model_config.vocab_size for t in ids):
            raise ValueError(f"input_ids must be ints in [0, {self.model_config.vocab_size})")
        if not image_items and self.image_processor is not None and self.image_processor.image_token_id in ids:
            raise ValueError(f"the prompt has {ids.count(self.image_processor.image_token_id)} image placeholder "
                             f"token(s) but no image_data was given")
        sp = SamplingParams.from_dict(params)
        if any(t >= self.model_config.vocab_size for t in sp.stop_token_ids):
            raise ValueError(f"stop_token_ids must be in [0, {self.model_config.vocab_size}), got {sp.stop_token_ids}")
        if len(ids) >= self.max_context_len:
            expanded = f" with its {len(image_items)} image(s) expanded" if image_items else ""
            raise ValueError(f"prompt is {len(ids)} tokens{expanded}, longer than the context ({self.max_context_len} "
                             f"tokens including at least one generated token)")
        if len(ids) + 1 > self.allocator.num_usable:
            raise ValueError(f"prompt is {len(ids)} tokens but the KV pool holds only {self.allocator.num_usable}")
        if start is not None and not 0 <= start < len(ids):
            raise ValueError(f"logprob_start_len must be in [0, {len(ids)}), got {start}")
        if not 0 <= top_logprobs_num <= self.model_config.vocab_size:
            raise ValueError(f"top_logprobs_num must be in [0, {self.model_config.vocab_size}], got {top_logprobs_num}")
        req = Req(rid=rid or new_rid(), input_ids=ids, params=sp, return_logprob=return_logprob or is_score,
                  logprob_start_len=-1 if start is None else start, top_logprobs_num=top_logprobs_num,
                  is_score=is_score, stream=stream, image_items=image_items,
                  max_output_len=min(sp.max_new_tokens, self.max_context_len - len(ids)))
        if sp.sampling_seed is not None:
            req.generator = torch.Generator().manual_seed(sp.sampling_seed)
        if sp.is_constrained:
            from sgnb.engine.constraint import build_constraint

            req.constraint = build_constraint(sp, self, req.max_output_len)
        req.detok = postprocess.make_detokenizer(self.tokenizer, sp)
        if req.constraint is not None and not is_score:
            # text every output must start with goes straight into the prompt's prefill
            forced, req.draft_ids = req.constraint.jump_forward(req)
            req.output_ids += forced
            req.detok.update(req.output_ids)
            req.text = req.detok.text
        return req

    # ------------------------------------------------------------------ waiting

    def _wait(self, reqs: list[Req]) -> list[dict]:
        try:
            for req in reqs:
                while not req.sink.wait(0.1):
                    pass
        except KeyboardInterrupt:
            for req in reqs:
                self.abort(req.rid, "interrupted")
            raise
        errors = [r.sink.error for r in reqs if r.sink.error is not None]
        if errors:
            raise EngineError(f"{len(errors)} of {len(reqs)} request(s) failed: {errors[0]}") from errors[0]
        return [r.sink.result for r in reqs]

    def _stream(self, req: Req) -> Iterator[dict]:
        try:
            while True:
                delta = req.sink.next_delta(0.1)
                if delta is not None:
                    yield delta
                elif req.sink.is_done:
                    break
            if req.sink.error is not None:
                raise EngineError(str(req.sink.error)) from req.sink.error
        except (KeyboardInterrupt, GeneratorExit):
            if not req.sink.is_done:
                self.abort(req.rid, "interrupted")
            raise

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        try:
            self._setup()
        except BaseException as exc:           # handed to the constructor, which raises it
            self._init_error = exc
            return
        finally:
            self._ready.set()
        self._loop()

    def _loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._is_stopping or self._inbox or self._aborts
                                  or self.scheduler.has_work())
                if self._is_stopping:
                    break
                self._take_inbox()
                batch = self._schedule()
                self._inflight = batch
            if batch is not None:
                self._run_batch(batch)
        with self._cv:
            for req in list(self._reqs.values()):
                self._abort_req(req, "engine shut down")
        self.tree.close()                       # pending disk writes of the tiered cache

    def _run_batch(self, batch: ScheduleBatch) -> None:
        """Run the model on `batch` (without the lock: callers may submit meanwhile), then postprocess it."""
        keep_all = [postprocess.wants_input_rows(r, n) for r, n in zip(batch.reqs, batch.extend_lens)]
        try:
            out = self.runner.forward(batch, keep_all)
            with self._cv:
                self._inflight = None
                postprocess.process_batch(self._post, batch, out, keep_all)
        except Exception as exc:            # a bug or a bad model: fail this batch, keep serving
            with self._cv:
                self._inflight = None
                for req in batch.reqs:
                    if not req.sink.is_done:
                        self._fail(req, exc)

    def _take_inbox(self) -> None:
        for req in self._inbox:
            self.scheduler.add(req)
        self._inbox.clear()
        for rid, message in self._aborts:
            req = self._reqs.get(rid)
            if req is not None:
                self._abort_req(req, message)
        self._aborts.clear()

    def _schedule(self) -> ScheduleBatch | None:
        while True:
            try:
                return self.scheduler.schedule()
            except PoolExhausted as exc:
                self._abort_req(exc.req, str(exc))

    def _abort_req(self, req: Req, message: str) -> None:
        self.scheduler.remove(req)
        req.finish_reason = {"type": "abort", "message": message}
        postprocess.deliver(self._post, req)

    def _fail(self, req: Req, exc: BaseException) -> None:
        self.scheduler.remove(req)
        req.finish_reason = {"type": "abort", "message": f"engine error: {exc!r}"}
        self._reqs.pop(req.rid, None)
        req.sink.finish(None, exc)

    def _decode(self, ids: list[int]) -> str:
        """Cache-key ids as text; an image's rows read as one placeholder."""
        if self.image_processor is None:
            return self.tokenizer.decode(ids)
        return decode_with_images(self.tokenizer, ids, self.model_config.vocab_size)

    def _node_fields(self, key: list[int]) -> dict:
        """Extra fields of a cache node's view: how many image rows its tokens hold, where it holds any."""
        num = num_image_tokens(key, self.model_config.vocab_size) if self.image_processor is not None else 0
        return {"num_image_tokens": num} if num else {}


def _per_item(value: Any, n: int, name: str) -> list:
    if isinstance(value, list) and not (name == "sampling_params" and n == 1 and not value):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries for {n} prompts")
        return value
    return [value] * n
