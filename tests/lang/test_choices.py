"""Selection methods over per-choice token logprobs."""

from __future__ import annotations

import math

import pytest

from sgnb.lang.choices import (
    greedy_token_selection,
    mean_logprob,
    resolve_choices_method,
    token_length_normalized,
    unconditional_likelihood_normalized,
)


def lp(*values):
    return [(v, i, f"t{i}") for i, v in enumerate(values)]


def test_token_length_normalized_uses_the_mean_not_the_sum():
    # "long" has the lower total but the higher per-token mean
    choices = ["short", "long"]
    logprobs = [lp(-1.5), lp(-1.0, -1.0, -1.0)]
    result = token_length_normalized(choices, logprobs)
    assert result.decision == "long"
    assert result.meta_info["normalized_prompt_logprobs"] == [-1.5, -1.0]
    assert result.meta_info["choice_index"] == 1


def test_greedy_token_selection_decides_at_the_first_difference():
    choices = ["a", "b", "c"]
    logprobs = [lp(-0.5, -9.0), lp(-0.5, -0.1), lp(-2.0, 0.0)]
    assert greedy_token_selection(choices, logprobs).decision == "b"
    # a short choice is padded with its own mean, so it does not win by running out of tokens
    assert greedy_token_selection(["x", "y"], [lp(-1.0), lp(-1.0, -0.2)]).decision == "y"


def test_unconditional_normalization_removes_the_choice_prior():
    choices = ["common", "rare"]
    conditional = [lp(-1.0, -1.0), lp(-2.0, -2.0)]
    unconditional = [lp(-0.5, -0.5), lp(-4.0, -4.0)]  # "rare" gained far more from the prompt
    result = unconditional_likelihood_normalized(choices, conditional, unconditional)
    assert result.decision == "rare"
    assert token_length_normalized(choices, conditional).decision == "common"
    with pytest.raises(ValueError, match="needs unconditional_token_logprobs"):
        unconditional_likelihood_normalized(choices, conditional)


def test_unknown_logprobs_are_skipped():
    assert mean_logprob([(None, 1, "a"), (-2.0, 2, "b")]) == -2.0
    assert mean_logprob([]) == -math.inf


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="at least one choice"):
        token_length_normalized([], [])
    with pytest.raises(ValueError, match="logprobs for 1 choices but 2 choices"):
        token_length_normalized(["a", "b"], [lp(-1.0)])
    with pytest.raises(ValueError, match="unknown choices_method"):
        resolve_choices_method("nope")
    assert resolve_choices_method(None) is token_length_normalized
