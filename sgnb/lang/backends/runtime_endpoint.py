"""`RuntimeEndpoint(url)`: a backend speaking SGLang's native HTTP API (an SGLang server or `sgnb serve`).

- `gen` is one `POST /generate` with SGLang `sampling_params`; regex, json_schema, dtype and choices are
  enforced by the server (dtype/choices become a regex first).
- `select` is server-side too: one prefill-only request for the prompt (it caches the prefix and gives its
  token count), then ONE batched prefill-only request scoring every `prompt + choice` from the prompt's
  last token on; the same token boundaries as the in-process backend (a boundary token merged with the
  choice is scored as part of the choice).
- The chat template comes from the server's `/get_model_info` (`chat_template`, which `sgnb serve` sends),
  or from `chat_template=` (a `ChatTemplate` or a built-in name such as "chatml").
- Images travel as `image_data` (data URLs, one list per prompt); the text holds the server's placeholder
  (`image_token` of `/get_model_info`, which `sgnb serve` sends; else "<image>") where each one sits.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Iterator

from sgnb.lang.backends.base import (
    Backend,
    generate_answer,
    GenContext,
    SamplingSpec,
    SelectResult,
)
from sgnb.lang.backends.errors import BackendError, UnsupportedFeatureError
from sgnb.lang.backends.http_json import JSONClient
from sgnb.lang.chat_template import DEFAULT_TEMPLATE, ChatTemplate, get_chat_template
from sgnb.lang.choices import ChoicesMethod
from sgnb.lang.errors import ChatTemplateError
from sgnb.lang.image_url import image_url


def _image_data(images: Sequence[Any]) -> list[str]:
    """One prompt's `image_data`: each image as a URL (files, bytes and PIL images become data URLs)."""
    return [image_url(x) for x in images]


class RuntimeEndpoint(Backend):
    """Backend for a server with SGLang's native API at `base_url` (e.g. "http://127.0.0.1:30000")."""

    is_chat_model = False

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        chat_template: ChatTemplate | str | None = None,
        timeout: float = 600.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = JSONClient(self.base_url, api_key=api_key, timeout=timeout, what="SGLang server")
        self.model_info: dict[str, Any] = self._http.get("/get_model_info")
        if not isinstance(self.model_info, dict):
            raise BackendError(f"{self.base_url}/get_model_info did not answer a JSON object: {self.model_info!r}")
        if isinstance(chat_template, str):
            chat_template = get_chat_template(chat_template)
        self._chat_template: ChatTemplate | None = chat_template
        self._lock = threading.Lock()
        self._usage = {"num_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}

    # ---------------------------------------------------------------- info
    def get_model_name(self) -> str:
        return str(self.model_info.get("served_model_name") or self.model_info.get("model_path") or self.base_url)

    def get_chat_template(self) -> ChatTemplate:
        """From the server's Jinja template when it sends one; else a built-in guessed from the model path."""
        if self._chat_template is None:
            self._chat_template = self._template_from_server()
        return self._chat_template

    def _template_from_server(self) -> ChatTemplate:
        jinja = self.model_info.get("chat_template")
        image_token = self.model_info.get("image_token")
        if jinja:
            tokens = {k: v for k in ("bos_token", "eos_token") if (v := self.model_info.get(k))}
            try:
                return ChatTemplate.from_jinja(jinja, name=self.get_model_name(), image_token=image_token, **tokens)
            except (ChatTemplateError, Exception):  # noqa: BLE001 - fall back to a guess below
                pass
        path = str(self.model_info.get("model_path", "")).lower()
        template = get_chat_template("chatml") if any(k in path for k in ("qwen", "smollm", "chatml", "hermes")) \
            else DEFAULT_TEMPLATE
        return replace(template, image_token=image_token) if image_token else template

    def get_usage(self) -> dict[str, int]:
        with self._lock:
            return dict(self._usage)

    def _account(self, meta: dict[str, Any], num_calls: int = 1) -> None:
        with self._lock:
            self._usage["num_calls"] += num_calls
            for key in ("prompt_tokens", "completion_tokens", "cached_tokens"):
                self._usage[key] += int(meta.get(key, 0) or 0)

    # ---------------------------------------------------------------- requests
    def _generate(self, body: dict[str, Any]) -> Any:
        return self._http.post("/generate", body)

    def _check_finished(self, result: dict[str, Any]) -> None:
        reason = result.get("meta_info", {}).get("finish_reason") or {}
        if isinstance(reason, dict) and reason.get("type") == "abort":
            raise BackendError(f"the server at {self.base_url} aborted the request: {reason.get('message', '')}")

    def _gen_body(self, ctx: GenContext, params: SamplingSpec) -> dict[str, Any]:
        if not ctx.text:
            raise ValueError("cannot generate from an empty prompt: append some text before gen/select")
        body: dict[str, Any] = {
            "text": ctx.text if params.n == 1 else [ctx.text] * params.n,
            "sampling_params": params.to_engine_params(),
        }
        if params.return_logprob:
            body["return_logprob"] = True
            body["return_text_in_logprobs"] = True
            if params.logprob_start_len is not None:
                body["logprob_start_len"] = params.logprob_start_len
            if params.top_logprobs_num:
                body["top_logprobs_num"] = params.top_logprobs_num
        if ctx.images:
            data = _image_data(ctx.images)
            body["image_data"] = data if params.n == 1 else [data] * params.n
        return body

    def generate(self, ctx: GenContext, params: SamplingSpec) -> tuple[str | list[str], dict]:
        if params.max_new_tokens == 0:
            self.cache_prefix(ctx.text, ctx.images)
            return ("", {"completion_tokens": 0}) if params.n == 1 else ([""] * params.n, {"choices": []})
        return generate_answer(self._generate(self._gen_body(ctx, params)), self._finish)

    def _finish(self, result: dict[str, Any]) -> None:
        self._check_finished(result)
        self._account(result["meta_info"])

    def generate_stream(self, ctx: GenContext, params: SamplingSpec) -> Iterator[tuple[str, dict]]:
        if params.n != 1:
            raise UnsupportedFeatureError("streaming gen does not support n > 1")
        if params.max_new_tokens == 0:
            yield "", {"completion_tokens": 0}
            return
        body = self._gen_body(ctx, params)
        body["stream"] = True
        num_sent = 0
        meta: dict[str, Any] = {}
        for event in self._http.stream("/generate", body):
            text = event.get("text", "")  # the text so far (SGLang streams it whole)
            meta = dict(event.get("meta_info") or {})
            self._check_finished(event)
            delta, num_sent = text[num_sent:], len(text)
            yield delta, meta
        self._account(meta)

    # ---------------------------------------------------------------- select
    def select(
        self, ctx: GenContext, choices: list[str], temperature: float, choices_method: ChoicesMethod
    ) -> SelectResult:
        if not choices:
            raise ValueError("select needs at least one choice")
        if not ctx.text:
            raise ValueError("cannot select from an empty prompt: append some text before select")
        # 1. The prompt alone, prefill only: caches the shared prefix and tells its token count (image rows
        #    included, as the server counts positions).
        images = _image_data(ctx.images)
        prefix = self._generate({"text": ctx.text, "sampling_params": {"max_new_tokens": 0},
                                 **({"image_data": images} if images else {})})
        self._account(prefix["meta_info"])
        prompt_len = int(prefix["meta_info"]["prompt_tokens"])
        start = max(prompt_len - 1, 0)
        # 2. One batch: the prompt (for its last token) and every prompt + choice, scored from the prompt's
        #    last position on. Position `start` is the prompt's last token unless the choice merged with it.
        texts = [ctx.text] + [ctx.text + c for c in choices]
        results = self._generate({
            "text": texts, "sampling_params": {"max_new_tokens": 0}, "return_logprob": True,
            "return_text_in_logprobs": True, "logprob_start_len": start,
            **({"image_data": [images] * len(texts)} if images else {}),
        })
        for r in results:
            self._check_finished(r)
        self._account(results[0]["meta_info"])
        for r in results[1:]:
            self._account(r["meta_info"], num_calls=0)
        last_token = results[0]["meta_info"]["input_token_logprobs"][-1][1]
        input_token_logprobs = []
        for r in results[1:]:
            entries = [list(e) for e in r["meta_info"]["input_token_logprobs"]]
            if len(entries) > 1 and entries[0][1] == last_token:
                entries = entries[1:]  # no merge at the boundary: the choice starts after the prompt
            input_token_logprobs.append(entries)
        unconditional = None
        if choices_method.requires_unconditional_logprobs:
            unconditional = self._unconditional_logprobs(input_token_logprobs)
        decision = choices_method(choices, input_token_logprobs, unconditional)
        decision.meta_info["prompt_tokens"] = [r["meta_info"].get("prompt_tokens", 0) for r in results[1:]]
        decision.meta_info["cached_tokens"] = [r["meta_info"].get("cached_tokens", 0) for r in results[1:]]
        return decision

    def _unconditional_logprobs(self, choice_logprobs: list[list[list[Any]]]) -> list[list[list[Any]]]:
        """Each choice's tokens scored after a neutral start token (BOS when known, else a newline)."""
        lead_text = self.model_info.get("bos_token") or "\n"
        lead = self._generate({"text": lead_text, "sampling_params": {"max_new_tokens": 0},
                               "return_logprob": True, "logprob_start_len": 0})
        self._account(lead["meta_info"])
        lead_ids = [e[1] for e in lead["meta_info"]["input_token_logprobs"]]
        results = self._generate({
            "input_ids": [lead_ids + [e[1] for e in entries] for entries in choice_logprobs],
            "sampling_params": {"max_new_tokens": 0}, "return_logprob": True,
            "return_text_in_logprobs": True, "logprob_start_len": len(lead_ids),
        })
        self._account(results[0]["meta_info"])
        return [[list(e) for e in r["meta_info"]["input_token_logprobs"]] for r in results]

    # ---------------------------------------------------------------- cache
    def cache_prefix(self, text: str, images: Sequence[Any] = ()) -> None:
        if not text:
            return
        body: dict[str, Any] = {"text": text, "sampling_params": {"max_new_tokens": 0}}
        if images:
            body["image_data"] = _image_data(images)
        result = self._generate(body)
        self._account(result["meta_info"])

    def flush_cache(self) -> bool:
        """Drop the server's prefix cache (SGLang answers plain text, `sgnb serve` JSON with `success`)."""
        answer = self._http.request("POST", "/flush_cache", {}, expect_json=False)
        return '"success":false' not in answer.replace(" ", "")

    # ---------------------------------------------------------------- server state (`sgnb serve` routes)
    def get_server_info(self) -> dict[str, Any]:
        """The server's load: running/waiting requests, pool usage, cache hit rate, engine stats."""
        return self._http.get("/get_server_info")

    def cache_snapshot(self, max_nodes: int = 200) -> dict[str, Any]:
        """The server engine's `snapshot(max_nodes)` (radix tree, queues, stats) for a remote `CacheTree`."""
        return self._http.get(f"/cache_snapshot?max_nodes={int(max_nodes)}")

    def cache_node_text(self, node_id: int) -> dict[str, Any]:
        """`{"id", "text", "num_tokens"}` of a radix node's root path (HTTP 404 when it is gone)."""
        return self._http.get(f"/cache_node_text?node_id={int(node_id)}")

    def shutdown(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"RuntimeEndpoint({self.base_url!r})"
