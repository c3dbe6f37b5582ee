"""How `select` picks a choice from token log-probabilities (shared by every backend that returns logprobs).

Each method sees, per choice, the scored tokens of that choice as `(logprob, token_id, token_text)` and returns
a `SelectResult`. Exported at the top level with SGLang's names:

- `token_length_normalized` (default): highest mean log-probability per token.
- `greedy_token_selection`: compare choices token by token, keep the best at each position until one remains
  (a choice that runs out of tokens is padded with its own mean, so short choices are not favoured for free).
- `unconditional_likelihood_normalized`: highest mean of `logprob(token | prompt) - logprob(token | nothing)`,
  which removes the prior of the choice text itself (helps against a bias towards common or long options).
"""

from __future__ import annotations

import math
from typing import Sequence

from sgnb.lang.backends.base import SelectResult

TokenLogprob = tuple  # (logprob: float, token_id: int, token_text: str | None)


def mean_logprob(token_logprobs: Sequence[TokenLogprob]) -> float:
    """Mean log-probability of the tokens whose logprob is known (None entries skipped); -inf if none."""
    values = [t[0] for t in token_logprobs if t[0] is not None]
    return sum(values) / len(values) if values else -math.inf


def _argmax(values: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


class ChoicesMethod:
    """Base of the selection methods. `requires_unconditional_logprobs` tells a backend to also score each
    choice with no prompt and pass the result as `unconditional_token_logprobs`."""

    requires_unconditional_logprobs: bool = False
    name: str = "base"

    def __call__(
        self,
        choices: list[str],
        input_token_logprobs: list[list[TokenLogprob]],
        unconditional_token_logprobs: list[list[TokenLogprob]] | None = None,
    ) -> SelectResult:
        if len(choices) == 0:
            raise ValueError("select needs at least one choice")
        if len(input_token_logprobs) != len(choices):
            raise ValueError(
                f"got logprobs for {len(input_token_logprobs)} choices but {len(choices)} choices"
            )
        normalized = [mean_logprob(lp) for lp in input_token_logprobs]
        meta = {
            "normalized_prompt_logprobs": normalized,
            "input_token_logprobs": input_token_logprobs,
        }
        if unconditional_token_logprobs is not None:
            meta["unconditional_token_logprobs"] = unconditional_token_logprobs
        index = self.pick(choices, input_token_logprobs, normalized, unconditional_token_logprobs)
        meta["choice_index"] = index
        meta["choices_method"] = self.name
        return SelectResult(decision=choices[index], meta_info=meta)

    def pick(self, choices, input_token_logprobs, normalized, unconditional) -> int:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class TokenLengthNormalized(ChoicesMethod):
    name = "token_length_normalized"

    def pick(self, choices, input_token_logprobs, normalized, unconditional) -> int:
        return _argmax(normalized)


class GreedyTokenSelection(ChoicesMethod):
    name = "greedy_token_selection"

    def pick(self, choices, input_token_logprobs, normalized, unconditional) -> int:
        rows = [[t[0] if t[0] is not None else -math.inf for t in lp] for lp in input_token_logprobs]
        max_len = max((len(r) for r in rows), default=0)
        # pad each row with its own mean so a short choice competes with its average, not -inf or 0
        padded = [r + [normalized[i]] * (max_len - len(r)) for i, r in enumerate(rows)]
        remaining = list(range(len(choices)))
        for j in range(max_len):
            best = max(padded[i][j] for i in remaining)
            remaining = [i for i in remaining if padded[i][j] == best]
            if len(remaining) == 1:
                break
        return remaining[0]


class UnconditionalLikelihoodNormalized(ChoicesMethod):
    name = "unconditional_likelihood_normalized"
    requires_unconditional_logprobs = True

    def pick(self, choices, input_token_logprobs, normalized, unconditional) -> int:
        if unconditional is None:
            raise ValueError("unconditional_likelihood_normalized needs unconditional_token_logprobs")
        scores = []
        for cond, uncond in zip(input_token_logprobs, unconditional):
            # align from the end: both lists end with the choice's tokens
            num = min(len(cond), len(uncond))
            diffs = [
                c[0] - u[0]
                for c, u in zip(cond[len(cond) - num :], uncond[len(uncond) - num :])
                if c[0] is not None and u[0] is not None
            ]
            scores.append(sum(diffs) / len(diffs) if diffs else -math.inf)
        return _argmax(scores)


token_length_normalized = TokenLengthNormalized()
greedy_token_selection = GreedyTokenSelection()
unconditional_likelihood_normalized = UnconditionalLikelihoodNormalized()

CHOICES_METHODS: dict[str, ChoicesMethod] = {
    m.name: m for m in (token_length_normalized, greedy_token_selection, unconditional_likelihood_normalized)
}


def resolve_choices_method(method: ChoicesMethod | str | None) -> ChoicesMethod:
    """Accept a method object or its name; None means the default."""
    if method is None:
        return token_length_normalized
    if isinstance(method, str):
        if method not in CHOICES_METHODS:
            raise ValueError(f"unknown choices_method {method!r}; expected one of {sorted(CHOICES_METHODS)}")
        return CHOICES_METHODS[method]
    if not isinstance(method, ChoicesMethod):
        raise ValueError(f"choices_method must be a ChoicesMethod or its name, got {method!r}")
    return method
