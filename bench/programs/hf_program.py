"""The transformers baseline: what a plain Python program does with `AutoModelForCausalLM`, one call at a time.

Every call re-encodes its whole prompt (no cache shared between calls, forks run one after another):
- `gen`: greedy `model.generate`, stopping at EOS, at a stop string (`stop_strings`) or at `max_tokens`;
  with `regex`, a logits processor masks the tokens that the same token FSM sgnb uses forbids (what outlines
  does for transformers; there is no jump-forward, so every forced token costs a forward pass);
- `select`: one forward pass per choice over `prompt + choice`, highest mean log-probability of the choice's
  tokens wins (sgnb's default `token_length_normalized`);
- `chat_prompt`: the tokenizer's own chat template.
"""

from __future__ import annotations

from typing import Any

import torch

from sgnb.lang.backends.base import common_prefix_len


class HFProgram:
    """Toolbox for the transformers versions of the workloads; counts the tokens it computes."""

    def __init__(self, model: str = "smollm2-135m", dtype: str = "float32") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from sgnb.engine.model_store import resolve_model

        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
        path = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
        eos = self.model.generation_config.eos_token_id
        self.eos_token_ids: list[int] = sorted(set(eos if isinstance(eos, list) else [eos]) - {None}) or [
            self.tokenizer.eos_token_id]
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None \
            else self.eos_token_ids[0]
        self._fsms: dict[str, Any] = {}
        self.reset_counters()

    def reset_counters(self) -> None:
        self.num_calls = 0
        self.num_prompt_tokens = 0       # tokens run through the model as prompt (every call, from scratch)
        self.num_generated_tokens = 0

    # ---------------------------------------------------------------- calls
    def gen(self, prompt: str, max_tokens: int, stop: str | list[str] | None = None, regex: str | None = None) -> str:
        """Greedy continuation of `prompt` (the stop string is not included)."""
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        input_ids = self._encode(prompt)
        kwargs: dict[str, Any] = {}
        if stops:
            kwargs.update(stop_strings=stops, tokenizer=self.tokenizer)
        if regex is not None:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList([_FSMLogitsProcessor(self.compile(regex),
                                                                                  self.eos_token_ids)])
        with torch.no_grad():
            out = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_tokens,
                                      do_sample=False, eos_token_id=self.eos_token_ids,
                                      pad_token_id=self.pad_token_id, **kwargs)
        new_ids = out[0, input_ids.shape[1]:].tolist()
        self.num_calls += 1
        self.num_prompt_tokens += input_ids.shape[1]
        self.num_generated_tokens += len(new_ids)
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        for s in stops:
            cut = text.find(s)
            if cut >= 0:
                text = text[:cut]
        return text

    def select(self, prompt: str, choices: list[str]) -> str:
        """The choice with the highest mean token log-probability after `prompt` (one forward per choice)."""
        if not choices:
            raise ValueError("select needs at least one choice")
        prompt_ids = self.tokenizer.encode(prompt)
        best, best_score = choices[0], -float("inf")
        for choice in choices:
            ids = self.tokenizer.encode(prompt + choice)
            start = max(1, min(common_prefix_len(prompt_ids, ids), len(ids) - 1))   # first token of the choice
            with torch.no_grad():
                logits = self.model(torch.tensor([ids])).logits[0].float()          # [num_tokens, vocab]
            logprobs = torch.log_softmax(logits[start - 1:-1], dim=-1)               # predicts ids[start:]
            score = logprobs.gather(1, torch.tensor(ids[start:]).unsqueeze(1)).mean().item()
            self.num_calls += 1
            self.num_prompt_tokens += len(ids)
            if score > best_score:
                best, best_score = choice, score
        return best

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The conversation rendered by the model's chat template, ready for the assistant's next turn."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    # ---------------------------------------------------------------- helpers
    def compile(self, regex: str) -> Any:
        """The token FSM for `regex` (compiled once per pattern)."""
        fsm = self._fsms.get(regex)
        if fsm is None:
            from sgnb.constrained import TokenVocab, compile_regex

            vocab = TokenVocab.from_tokenizer(self.tokenizer, eos_token_ids=self.eos_token_ids)
            fsm = self._fsms[regex] = compile_regex(regex, vocab)
        return fsm

    def _encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.tokenizer.encode(text)])          # [1, num_tokens]


class _FSMLogitsProcessor:
    """Masks every token the FSM forbids; batch of one, state advanced by the last token generated."""

    def __init__(self, fsm: Any, eos_token_ids: list[int]) -> None:
        self.fsm = fsm
        self.eos_token_ids = eos_token_ids
        self.state = fsm.initial_state
        self.prompt_len: int | None = None
        self.masks: dict[int, torch.Tensor] = {}

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        else:
            self.state = self.fsm.next_state(self.state, int(input_ids[0, -1]))
        mask = self.masks.get(self.state)
        if mask is None:
            mask = torch.ones(scores.shape[-1], dtype=torch.bool)              # True = forbidden
            if self.fsm.is_finished(self.state) or self.fsm.num_allowed(self.state) == 0:
                mask[self.eos_token_ids] = False
            else:
                ids = torch.from_numpy(self.fsm.allowed_token_ids(self.state).astype("int64"))
                mask[ids[ids < scores.shape[-1]]] = False
            self.masks[self.state] = mask
        return scores.masked_fill(mask, -float("inf"))

