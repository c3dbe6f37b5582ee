"""Token budgets: how many tokens each FSM state needs, at least, to reach an accepting state.

With these distances a constrained request can always finish a valid output inside its
`max_new_tokens`: near the end of the budget, only tokens that keep completion reachable stay
allowed (JSON gets closed instead of being cut off mid-value).
"""

from __future__ import annotations

import weakref
from collections import deque

import numpy as np

from sgnb.constrained.token_fsm import TokenFSM

UNREACHABLE = np.iinfo(np.int32).max
_DISTANCES: weakref.WeakKeyDictionary[TokenFSM, np.ndarray] = weakref.WeakKeyDictionary()


def distances_to_accept(fsm: TokenFSM) -> np.ndarray:
    """[num_states] int32: fewest tokens from each state to an accepting one (UNREACHABLE if none). Cached."""
    cached = _DISTANCES.get(fsm)
    if cached is not None:
        return cached
    num_states = fsm.num_states
    src_parts, dst_parts = [], []
    for state in range(num_states):
        nxt = np.unique(fsm.allowed_next_states(state))
        src_parts.append(np.full(nxt.size, state, dtype=np.int64))
        dst_parts.append(nxt.astype(np.int64))
    src = np.concatenate(src_parts) if src_parts else np.zeros(0, np.int64)
    dst = np.concatenate(dst_parts) if dst_parts else np.zeros(0, np.int64)
    order = np.argsort(dst, kind="stable")                 # reverse adjacency: predecessors grouped by target
    preds, targets = src[order], dst[order]
    bounds = np.searchsorted(targets, np.arange(num_states + 1))
    dist = np.full(num_states, UNREACHABLE, dtype=np.int32)
    queue: deque[int] = deque()
    for state in range(num_states):
        if fsm.is_accepting(state):
            dist[state] = 0
            queue.append(state)
    while queue:                                           # BFS backwards from the accepting states
        state = queue.popleft()
        for pred in preds[bounds[state]:bounds[state + 1]].tolist():
            if dist[pred] == UNREACHABLE:
                dist[pred] = dist[state] + 1
                queue.append(pred)
    dist.setflags(write=False)
    _DISTANCES[fsm] = dist
    return dist


def within_budget(fsm: TokenFSM, state: int, num_tokens_left: int) -> np.ndarray | None:
    """Token ids allowed in `state` that still leave an accepting state reachable after them.

    num_tokens_left counts this token too. Returns None when every allowed token qualifies.
    """
    dist = distances_to_accept(fsm)
    nxt = fsm.allowed_next_states(state)
    ok = dist[nxt] <= num_tokens_left - 1
    if ok.all():
        return None
    return fsm.allowed_token_ids(state)[ok]
