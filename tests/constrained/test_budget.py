"""Token budgets on real SmolLM2 FSMs: distances to acceptance and the tokens a tight budget still allows."""

from __future__ import annotations

import numpy as np
import pytest

from sgnb.constrained import compile_regex, distances_to_accept, schema_to_regex, within_budget
from sgnb.constrained.budget import UNREACHABLE

OPEN_OBJECT_LIST = {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}},
                                               "required": ["name"]}}

PATTERNS = {
    "digits": r"[0-9]{3,12}",
    "open_object_list": schema_to_regex(OPEN_OBJECT_LIST),
    "long_string": schema_to_regex({"type": "string", "minLength": 20}),
}


@pytest.fixture(params=list(PATTERNS), scope="module")
def fsm(request, vocab):
    return compile_regex(PATTERNS[request.param], vocab, use_disk_cache=False)


def test_each_distance_is_one_more_than_the_best_next_state(fsm):
    dist = distances_to_accept(fsm)
    for state in range(fsm.num_states):
        nxt = dist[fsm.allowed_next_states(state)]
        if fsm.is_accepting(state):
            assert dist[state] == 0
        elif nxt.size:
            assert dist[state] == nxt.min() + 1    # a shortest completion exists, and none is shorter
    assert dist[fsm.initial_state] < UNREACHABLE


def test_within_budget_keeps_exactly_the_tokens_that_can_still_finish(fsm):
    dist = distances_to_accept(fsm)
    for state in range(fsm.num_states):
        need = int(dist[state])
        ids, nxt = fsm.allowed_token_ids(state), fsm.allowed_next_states(state)
        for left in (max(need, 1), need + 1, need + 3):    # left counts the next token: at least 1
            kept = within_budget(fsm, state, left)
            expected = ids[dist[nxt] <= left - 1]
            if kept is None:
                assert expected.size == ids.size
            else:
                assert np.array_equal(kept, expected) and kept.size > 0


def test_longest_token_walk_at_the_exact_budget_ends_accepted(fsm, vocab):
    # under the rule, even always taking the longest allowed token (the one most likely to run on)
    # reaches acceptance with the very last token of the smallest possible budget
    state, left = fsm.initial_state, int(distances_to_accept(fsm)[fsm.initial_state])
    while left:
        ids = within_budget(fsm, state, left)
        ids = fsm.allowed_token_ids(state) if ids is None else ids
        ids = ids[~np.isin(ids, fsm.eos_token_ids)]
        state = fsm.next_state(state, int(ids[np.argmax(vocab.token_lengths[ids])]))
        left -= 1
    assert fsm.is_accepting(state)
