"""The in-process backend: programs run on an `sgnb.engine.Engine` in this Python process.

- `gen` passes SGLang sampling params straight to `Engine.generate` (regex / json_schema are compiled by the
  engine; dtype and choices become a regex first).
- `select` scores every `prompt + choice` with one batched `Engine.score` call (input-token logprobs).
- `cache_prefix` runs a prefill-only request, so the prefix lands in the radix cache.
- Images (`ctx.images`, video frames included) go to the engine as `image_data`, in order; the state text holds
  the model's placeholder (`engine.image_token`, as the chat template writes it) where each one sits.
- Every request made for a program state carries a request id `sgl-<state id>-<n>`, so `abort(state_ids)`
  (Ctrl-C, `sgnb.lang.interrupt`) aborts exactly that program's running requests and refuses its new ones.
  Prefix commits (`cache_prefix`) have no state: they are single prefills that finish on their own.
The engine is thread-safe and batches concurrent calls, so many program states can share one backend.
"""

from __future__ import annotations

import itertools
import threading
import time
from contextlib import contextmanager
from collections.abc import Sequence
from typing import Any, Collection, Iterator

from sgnb.lang.backends.base import (
    Backend,
    common_prefix_len,
    generate_answer,
    GenContext,
    SamplingSpec,
    SelectResult,
)
from sgnb.lang.backends.errors import BackendError, UnsupportedFeatureError
from sgnb.lang.chat_template import ChatTemplate
from sgnb.lang.choices import ChoicesMethod

_request_numbers = itertools.count()


class EngineBackend(Backend):
    """Backend over an in-process engine. Pass an existing `engine`, or a `model` (name or path) and
    Engine keyword arguments to create one (then `shutdown()` stops it)."""

    is_chat_model = False

    def __init__(self, engine: Any = None, model: str | None = None, **engine_kwargs: Any) -> None:
        if engine is None:
            from sgnb.engine import Engine
            from sgnb.lang.global_config import global_config

            engine = Engine(model or global_config.default_model, **engine_kwargs)
            self._owns_engine = True
        else:
            if model is not None or engine_kwargs:
                raise ValueError("pass either an existing engine or model/engine arguments, not both")
            self._owns_engine = False
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self._chat_template: ChatTemplate | None = None
        self._lock = threading.Lock()
        self._usage = {"num_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
        self._is_shut_down = False
        self._in_flight: dict[str, set[str]] = {}  # state id -> rids of its requests now in the engine
        self._aborted_states: set[str] = set()  # states whose new requests are refused

    # ---------------------------------------------------------------- info
    def get_model_name(self) -> str:
        config = getattr(self.engine, "config", None)
        return str(getattr(config, "model", None) or getattr(self.engine, "model_path", "engine"))

    def get_chat_template(self) -> ChatTemplate:
        if self._chat_template is None:
            self._chat_template = ChatTemplate.from_hf_tokenizer(
                self.tokenizer, name=self.get_model_name(), image_token=self._image_token())
        return self._chat_template

    def get_usage(self) -> dict[str, int]:
        with self._lock:
            return dict(self._usage)

    def _account(self, meta: dict) -> None:
        with self._lock:
            self._usage["num_calls"] += 1
            self._usage["prompt_tokens"] += int(meta.get("prompt_tokens", 0) or 0)
            self._usage["completion_tokens"] += int(meta.get("completion_tokens", 0) or 0)
            self._usage["cached_tokens"] += int(meta.get("cached_tokens", 0) or 0)

    def _image_token(self) -> str | None:
        """The model's image placeholder text; None for a text-only model."""
        return getattr(self.engine, "image_token", None)

    def _check(self, ctx: GenContext) -> None:
        if self._is_shut_down:
            raise BackendError(f"engine backend for {self.get_model_name()} was shut down")
        self._image_args(ctx.images)
        if not ctx.text:
            raise ValueError("cannot generate from an empty prompt: append some text before gen/select")

    def _image_args(self, images: list[Any], num_prompts: int | None = None) -> dict[str, Any]:
        """`image_data` for one prompt (`num_prompts` None) or for each of `num_prompts` equal prompts; {} when
        there are no images. A text-only model refuses them."""
        if not images:
            return {}
        if self._image_token() is None:
            raise UnsupportedFeatureError(
                f"model {self.get_model_name()} is text-only: it cannot take images or videos"
            )
        return {"image_data": list(images) if num_prompts is None else [list(images)] * num_prompts}

    @staticmethod
    def _raise_if_aborted(result: dict) -> None:
        reason = result["meta_info"].get("finish_reason") or {}
        if reason.get("type") == "abort":
            raise BackendError(f"the engine aborted the request: {reason.get('message', 'no reason given')}")

    # ---------------------------------------------------------------- request ids, abort
    @contextmanager
    def _requests(self, ctx: GenContext, count: int) -> Iterator[list[str]]:
        """`count` request ids for calls made for `ctx.state_id`, registered while the block runs."""
        state_id = ctx.state_id
        with self._lock:
            if state_id in self._aborted_states:
                raise BackendError(f"program state {state_id} was aborted: {self.get_model_name()} takes no new "
                                   "requests from it")
            rids = [f"sgl-{state_id}-{next(_request_numbers)}" for _ in range(count)]
            self._in_flight.setdefault(state_id, set()).update(rids)
        try:
            yield rids
        finally:
            with self._lock:
                live = self._in_flight.get(state_id, set())
                live.difference_update(rids)
                if not live:
                    self._in_flight.pop(state_id, None)

    def abort(self, state_ids: Collection[str]) -> int:
        """Abort the engine requests of these program states and refuse their new ones (until they end)."""
        with self._lock:
            self._aborted_states.update(state_ids)
            rids = [rid for sid in state_ids for rid in self._in_flight.get(sid, ())]
        for rid in rids:
            self.engine.abort(rid, "interrupted")
        return len(rids)

    def end_program(self, state_id: str) -> None:
        with self._lock:
            self._aborted_states.discard(state_id)

    # ---------------------------------------------------------------- gen
    def _request_args(self, params: SamplingSpec) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if params.return_logprob:
            args["return_logprob"] = True
            if params.logprob_start_len is not None and params.logprob_start_len >= 0:
                args["logprob_start_len"] = params.logprob_start_len
            if params.top_logprobs_num:
                args["top_logprobs_num"] = params.top_logprobs_num
        return args

    def generate(self, ctx: GenContext, params: SamplingSpec) -> tuple[str | list[str], dict]:
        self._check(ctx)
        if params.max_new_tokens == 0:
            self.cache_prefix(ctx.text, ctx.images)
            return ("", {"completion_tokens": 0}) if params.n == 1 else ([""] * params.n, {"choices": []})
        sampling = params.to_engine_params()
        args = self._request_args(params)
        try:
            with self._requests(ctx, params.n) as rids:
                if params.n == 1:
                    result = self.engine.generate(prompt=ctx.text, sampling_params=sampling, rid=rids[0], **args,
                                                  **self._image_args(ctx.images))
                else:
                    result = self.engine.generate(prompt=[ctx.text] * params.n, sampling_params=[sampling] * params.n,
                                                  rid=rids, **args, **self._image_args(ctx.images, params.n))
        except (BackendError, ValueError):
            raise
        except Exception as exc:  # noqa: BLE001 - EngineError and friends, named
            raise BackendError(f"engine {self.get_model_name()} failed: {exc}") from exc
        return generate_answer(result, self._finish)

    def _finish(self, result: dict) -> None:
        self._raise_if_aborted(result)
        self._account(result["meta_info"])

    def generate_stream(self, ctx: GenContext, params: SamplingSpec) -> Iterator[tuple[str, dict]]:
        self._check(ctx)
        if params.n != 1:
            raise UnsupportedFeatureError("streaming gen does not support n > 1")
        if params.max_new_tokens == 0:
            yield from [("", {"completion_tokens": 0})]
            return
        sampling = params.to_engine_params()
        meta: dict = {}
        try:
            with self._requests(ctx, 1) as rids:
                for delta in self.engine.generate(
                    prompt=ctx.text, sampling_params=sampling, stream=True, rid=rids[0], **self._request_args(params),
                    **self._image_args(ctx.images),
                ):
                    meta = dict(delta.get("meta_info") or {})
                    reason = meta.get("finish_reason") or {}
                    if delta.get("finished") and reason.get("type") == "abort":
                        raise BackendError(f"the engine aborted the request: {reason.get('message')}")
                    yield delta.get("text", ""), meta
        except (BackendError, ValueError):
            raise
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"engine {self.get_model_name()} failed: {exc}") from exc
        self._account(meta)

    # ---------------------------------------------------------------- select
    def select(
        self, ctx: GenContext, choices: list[str], temperature: float, choices_method: ChoicesMethod
    ) -> SelectResult:
        self._check(ctx)
        if not choices:
            raise ValueError("select needs at least one choice")
        prompt_ids = self.tokenizer.encode(ctx.text)
        full_ids = [self.tokenizer.encode(ctx.text + c) for c in choices]
        starts = []
        choice_ids = []
        for ids in full_ids:
            # the choice's tokens start where the tokenizations diverge (a boundary token may merge with it)
            k = common_prefix_len(prompt_ids, ids)
            start = min(k, len(ids) - 1)
            starts.append(start)
            choice_ids.append(ids[start:] if start >= 1 else ids)
        try:
            with self._requests(ctx, len(choices) + bool(ctx.images)) as rids:
                if ctx.images:  # the engine counts positions after expanding each placeholder into image rows
                    shift = self._num_image_rows(prompt_ids, ctx.images, rids[-1])
                    starts = [start + shift for start in starts]
                results = self.engine.score(input_ids=full_ids, logprob_start_len=starts, rid=rids[:len(choices)],
                                            **self._image_args(ctx.images, len(choices)))
            unconditional = None
            if choices_method.requires_unconditional_logprobs:
                # the choice on its own, after a neutral start (BOS when the model has one, else a newline)
                bos = getattr(self.tokenizer, "bos_token_id", None)
                lead = [bos] if bos is not None else self.tokenizer.encode("\n")
                uncond_ids = [lead + ids for ids in choice_ids]
                with self._requests(ctx, len(choices)) as rids:
                    uncond_results = self.engine.score(
                        input_ids=uncond_ids, logprob_start_len=[len(lead)] * len(choices), rid=rids
                    )
                unconditional = [list(r["meta_info"]["input_token_logprobs"]) for r in uncond_results]
        except (BackendError, ValueError):
            raise
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"engine {self.get_model_name()} failed while scoring choices: {exc}") from exc
        for r in results:
            self._raise_if_aborted(r)
            self._account(r["meta_info"])
        input_token_logprobs = [list(r["meta_info"]["input_token_logprobs"]) for r in results]
        decision = choices_method(choices, input_token_logprobs, unconditional)
        decision.meta_info["prompt_tokens"] = [r["meta_info"].get("prompt_tokens", 0) for r in results]
        decision.meta_info["cached_tokens"] = [r["meta_info"].get("cached_tokens", 0) for r in results]
        return decision

    def _num_image_rows(self, prompt_ids: list[int], images: list[Any], rid: str) -> int:
        """How many positions the engine adds to `prompt_ids` when it expands the image placeholders; scoring the
        prompt alone tells it, and caches the prompt (images included) for the choices that follow."""
        result = self.engine.score(input_ids=prompt_ids, logprob_start_len=len(prompt_ids) - 1, rid=rid,
                                   **self._image_args(images))
        self._raise_if_aborted(result)
        self._account(result["meta_info"])
        return int(result["meta_info"]["prompt_tokens"]) - len(prompt_ids)

    # ---------------------------------------------------------------- cache
    def cache_prefix(self, text: str, images: Sequence[Any] = ()) -> None:
        if not text or self._is_shut_down:
            return
        ids = self.tokenizer.encode(text)
        if not ids:
            return
        # prefill only; ask for the logprobs from the last text token on to keep the projection small
        result = self.engine.score(input_ids=ids, logprob_start_len=len(ids) - 1, **self._image_args(list(images)))
        self._raise_if_aborted(result)
        self._account(result["meta_info"])

    def flush_cache(self) -> bool:
        """Drop the radix cache; waits up to 5 s for running requests to finish."""
        deadline = time.monotonic() + 5.0
        while True:
            if self.engine.flush_cache() is not False:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def shutdown(self) -> None:
        if self._owns_engine and not self._is_shut_down:
            self.engine.shutdown()
        self._is_shut_down = True

    def __repr__(self) -> str:
        return f"EngineBackend({self.get_model_name()!r})"

