"""The sampler on synthetic logits: filters keep exactly the expected tokens, penalties hit the right logits."""

from __future__ import annotations

import math

import pytest
import torch

from sgnb.engine import sampler
from sgnb.engine.request import Req
from sgnb.engine.sampling_params import SamplingParams

# probabilities of tokens 0..5, largest first: top-p and min-p boundaries fall between them
PROBS = [0.5, 0.25, 0.12, 0.08, 0.04, 0.01]


def make_req(input_ids=(1, 2, 3), output_ids=(), seed: int | None = None, **params) -> Req:
    req = Req(rid="r", input_ids=list(input_ids), params=SamplingParams(**params))
    req.output_ids = list(output_ids)
    if seed is not None:
        req.generator = torch.Generator().manual_seed(seed)
    return req


def logits_of(probs: list[float]) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float32).log().unsqueeze(0)  # [1, vocab]


def kept_tokens(probs: list[float], **params) -> set[int]:
    out = sampler._filtered_probs(logits_of(probs), [SamplingParams(**params)])
    return set(out[0].nonzero().flatten().tolist())


def sampled_tokens(probs: list[float], num_draws: int = 400, **params) -> set[int]:
    """Tokens `sample` actually draws from `num_draws` identical rows."""
    logits = logits_of(probs).repeat(num_draws, 1)
    reqs = [make_req(**params) for _ in range(num_draws)]
    return set(sampler.sample(logits, reqs))


@pytest.mark.parametrize(("top_k", "expected"), [(2, {0, 1}), (3, {0, 1, 2}), (6, set(range(6))),
                                                 (100, set(range(6))), (-1, set(range(6)))])
def test_top_k_keeps_the_k_most_likely_tokens(top_k, expected):
    assert kept_tokens(PROBS, top_k=top_k) == expected


@pytest.mark.parametrize(("top_p", "expected"), [
    (0.4, {0}),               # the most likely token always stays
    (0.6, {0, 1}),            # 0.5 before token 1 is below 0.6
    (0.8, {0, 1, 2}),         # 0.75 before token 2
    (0.9, {0, 1, 2, 3}),      # 0.87 before token 3
    (1.0, set(range(6))),
])
def test_top_p_keeps_the_smallest_prefix_reaching_the_mass(top_p, expected):
    assert kept_tokens(PROBS, top_p=top_p) == expected


@pytest.mark.parametrize(("min_p", "expected"), [
    (0.2, {0, 1, 2}),        # threshold 0.1: 0.12 stays, 0.08 goes
    (0.1, {0, 1, 2, 3}),     # threshold 0.05
    (0.6, {0}),              # threshold 0.3
    (0.0, set(range(6))),
])
def test_min_p_keeps_tokens_above_a_fraction_of_the_top_probability(min_p, expected):
    assert kept_tokens(PROBS, min_p=min_p) == expected


def test_filters_combine_as_an_intersection():
    assert kept_tokens(PROBS, top_k=3, top_p=0.9, min_p=0.1) == {0, 1, 2}
    assert kept_tokens(PROBS, top_k=5, top_p=0.6) == {0, 1}


def test_filtered_probabilities_are_a_renormalizable_slice_of_the_tempered_softmax():
    out = sampler._filtered_probs(logits_of(PROBS), [SamplingParams(temperature=0.5, top_k=3)])[0]
    tempered = torch.softmax(logits_of(PROBS)[0] / 0.5, dim=-1)
    assert torch.allclose(out[:3], tempered[:3])
    assert torch.all(out[3:] == 0)


def test_each_row_uses_its_own_filters():
    logits = logits_of(PROBS).repeat(3, 1)
    params = [SamplingParams(top_k=2), SamplingParams(top_p=0.8), SamplingParams(min_p=0.6)]
    out = sampler._filtered_probs(logits, params)
    assert [set(row.nonzero().flatten().tolist()) for row in out] == [{0, 1}, {0, 1, 2}, {0}]


def test_sample_draws_only_kept_tokens_and_all_of_them():
    assert sampled_tokens(PROBS, top_k=2) == {0, 1}
    assert sampled_tokens(PROBS, top_p=0.8) == {0, 1, 2}
    assert sampled_tokens(PROBS, min_p=0.6) == {0}


def test_greedy_rows_take_the_argmax_next_to_sampled_rows():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0], [0.0, 0.0, 5.0]])
    reqs = [make_req(temperature=0), make_req(temperature=1.0, top_k=1), make_req(temperature=1.0, seed=3)]
    tokens = sampler.sample(logits, reqs)
    assert tokens[:2] == [1, 0]
    assert 0 <= tokens[2] < 3


def test_same_seed_draws_the_same_tokens_and_other_seeds_differ():
    logits = torch.zeros(1, 1000)          # uniform: a seed fully determines the draw

    def draws(seed: int) -> list[int]:
        req = make_req(seed=seed)
        return [sampler.sample(logits, [req])[0] for _ in range(8)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_seeded_draw_does_not_depend_on_the_other_rows_in_the_batch():
    logits = torch.zeros(3, 1000)
    alone = sampler.sample(logits[:1], [make_req(seed=11)])[0]
    batched = sampler.sample(logits, [make_req(seed=5), make_req(seed=11), make_req()])[1]
    assert alone == batched


def test_frequency_and_presence_penalties_lower_only_generated_tokens():
    logits = torch.zeros(1, 8)
    req = make_req(input_ids=[6, 7], output_ids=[3, 3, 5], frequency_penalty=0.5, presence_penalty=0.25)
    sampler.apply_penalties(logits, [req])
    expected = torch.zeros(8)
    expected[3] = -(2 * 0.5 + 0.25)
    expected[5] = -(1 * 0.5 + 0.25)
    assert torch.allclose(logits[0], expected)          # prompt tokens 6, 7 untouched


def test_negative_presence_penalty_raises_generated_tokens():
    logits = torch.zeros(1, 4)
    sampler.apply_penalties(logits, [make_req(output_ids=[2], presence_penalty=-1.0)])
    assert logits[0].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_repetition_penalty_shrinks_seen_positive_logits_and_grows_negative_ones():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    sampler.apply_penalties(logits, [make_req(input_ids=[0], output_ids=[1], repetition_penalty=2.0)])
    assert logits[0].tolist() == [1.0, -4.0, 2.0, -2.0]


def test_penalties_leave_rows_without_penalties_alone():
    logits = torch.ones(2, 4)
    reqs = [make_req(output_ids=[1]), make_req(output_ids=[1], frequency_penalty=1.0)]
    sampler.apply_penalties(logits, reqs)
    assert logits[0].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert logits[1].tolist() == [1.0, 0.0, 1.0, 1.0]


def test_min_new_tokens_bans_eos_and_stop_ids_until_reached():
    eos = (2,)
    req = make_req(output_ids=[5], min_new_tokens=2, max_new_tokens=4, stop_token_ids=[4])
    logits = torch.zeros(1, 6)
    sampler.apply_masks(logits, [req], eos)
    assert [i for i, v in enumerate(logits[0].tolist()) if v == -math.inf] == [2, 4]
    req.output_ids.append(5)                        # min_new_tokens reached
    logits = torch.zeros(1, 6)
    sampler.apply_masks(logits, [req], eos)
    assert torch.all(logits == 0)


def test_token_logprobs_are_log_softmax_and_top_lists_are_sorted():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.0, 0.0, 0.0, 5.0]])
    chosen, tops = sampler.token_logprobs(logits, [2, 0], top_k=3)
    logp = torch.log_softmax(logits, dim=-1)
    assert chosen == pytest.approx([logp[0, 2].item(), logp[1, 0].item()])
    assert [t for _, t in tops[0]] == [1, 2, 0]
    assert tops[1][0][1] == 3
    for row in tops:
        values = [lp for lp, _ in row]
        assert values == sorted(values, reverse=True)
    assert sampler.token_logprobs(logits, [2, 0], top_k=0)[1] == []


@pytest.mark.parametrize("params, output_ids", [
    ({"frequency_penalty": 0.5}, (4, 4)),
    ({"presence_penalty": 0.5}, (4,)),
    ({"repetition_penalty": 1.3}, ()),
    ({"min_new_tokens": 3, "stop_token_ids": [5]}, (4,)),
], ids=["frequency", "presence", "repetition", "min-new-tokens"])
def test_edits_logits_is_true_whenever_penalties_or_masks_change_a_row(params, output_ids) -> None:
    plain = make_req()
    edited = make_req(input_ids=(1, 2, 4), output_ids=output_ids, **params)
    assert not sampler.edits_logits([plain])
    assert sampler.edits_logits([plain, edited])
    logits = logits_of(PROBS).repeat(2, 1)
    before = logits.clone()
    sampler.apply_penalties(logits, [plain, edited])
    sampler.apply_masks(logits, [plain, edited], eos_ids=(0,))
    assert torch.equal(logits[0], before[0]) and not torch.equal(logits[1], before[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_top_logprobs_are_each_rows_best_log_softmax_entries(dtype):
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(3)).to(dtype)
    logps, ids = sampler.top_logprobs(logits, 4)
    expected = torch.log_softmax(logits.float(), dim=-1).topk(4, dim=-1)
    assert logps.dtype == torch.float32 and logps.shape == ids.shape == (3, 4)
    torch.testing.assert_close(logps, expected.values)
    assert torch.equal(ids, expected.indices)
    assert sampler.top_logprobs(logits, 500)[1].shape == (3, 50)        # never more than the vocabulary


def test_top_p_below_float32_range_keeps_the_most_likely_token():
    assert kept_tokens(PROBS, top_p=1e-300) == {0}
    assert sampled_tokens(PROBS, num_draws=50, top_p=1e-300) == {0}


def test_tiny_temperature_samples_greedily_instead_of_overflowing():
    assert SamplingParams(temperature=1e-300).is_greedy
    assert sampled_tokens(PROBS, num_draws=50, temperature=1e-300) == {0}


def test_a_row_with_every_token_masked_takes_its_greedy_token_and_spares_the_others():
    logits = logits_of(PROBS).repeat(2, 1)
    logits[0] = float("-inf")           # nothing allowed: softmax gives NaN
    reqs = [make_req(seed=1), make_req(seed=2)]
    out = sampler.sample(logits, reqs)
    assert out[0] == 0 and 0 <= out[1] < len(PROBS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_tokens_pick_the_first_maximum_as_argmax_does(dtype):
    from sgnb.engine.sampler import greedy_tokens

    logits = torch.randn(5, 300)
    logits[1, 7] = logits[1, 40] = 1e4                 # a tie: the first one
    logits[2, 9] = logits[2, 11] = float("nan")        # a NaN counts as the maximum, the first one
    logits[3] = float("-inf")                          # every token masked
    logits[4, 299] = float("inf")
    logits = logits.to(dtype)
    tokens = greedy_tokens(logits)
    assert tokens.dtype == torch.int64
    assert tokens.tolist() == logits.argmax(dim=-1).tolist()
    assert tokens.tolist()[1:] == [7, 9, 0, 299]
    assert greedy_tokens(logits[:, ::2]).tolist() == logits[:, ::2].argmax(dim=-1).tolist()   # strided rows
