"""DFA minimization (Moore partition refinement, vectorized with numpy)."""

from __future__ import annotations

import numpy as np


def _refine(blocks: np.ndarray, transitions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One Moore step: new block ids from (block, successor blocks), hashed with `weights`.

    transitions == -1 indexes the appended sink entry (block -1) of `padded`."""
    padded = np.append(blocks, -1)
    successors = padded[transitions]  # [num_states, num_classes]
    with np.errstate(over="ignore"):
        signature = blocks * weights[0] + successors @ weights[1:]  # int64 arithmetic wraps
    return np.unique(signature, return_inverse=True)[1].reshape(-1)


def minimize(transitions: np.ndarray, accepting: np.ndarray, initial: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Merge equivalent states (Moore partition refinement, vectorized).

    Signatures are hashed into int64 with two random weight vectors; the final partition is
    verified exactly (every block's states must have identical successor blocks), and an
    exact row-unique refinement takes over if a hash collision ever slips through.
    States in transitions are all live, so -1 (no transition) is its own sink block.
    """
    num_states, num_classes = transitions.shape
    rng = np.random.default_rng(0x5EED)
    weights = [rng.integers(1, 1 << 62, size=num_classes + 1, dtype=np.int64) for _ in range(2)]
    blocks = np.unique(accepting, return_inverse=True)[1].reshape(-1).astype(np.int64)  # ids 0..k-1
    num_blocks = int(blocks.max()) + 1
    while True:
        first = _refine(blocks, transitions, weights[0])
        second = _refine(blocks, transitions, weights[1])
        combined = np.unique(first * (num_states + 1) + second, return_inverse=True)[1].reshape(-1)
        count = int(combined.max()) + 1
        if count == num_blocks:
            break
        blocks, num_blocks = combined, count
    exact = np.column_stack([blocks, np.append(blocks, -1)[transitions]])
    if len(np.unique(exact, axis=0)) != num_blocks:  # hash collision: refine exactly
        while True:
            rows = np.column_stack([blocks, np.append(blocks, -1)[transitions]])
            refined = np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1)
            if int(refined.max()) + 1 == num_blocks:
                break
            blocks, num_blocks = refined, int(refined.max()) + 1
    representative = np.zeros(num_blocks, dtype=np.int64)
    representative[blocks[::-1]] = np.arange(num_states)[::-1]  # lowest state id per block
    merged = transitions[representative]
    merged = np.where(merged >= 0, blocks[np.maximum(merged, 0)], -1).astype(np.int32)
    return merged, accepting[representative], int(blocks[initial])
