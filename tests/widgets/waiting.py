"""Waiting for a streamed program (and every fork it made) to finish."""

from __future__ import annotations

import time


def all_finished(snap: dict) -> bool:
    return bool(snap["is_finished"]) and all(all_finished(c) for c in snap["children"])


def wait_finished(state, timeout: float = 120.0) -> dict:
    """Block until the state and its forks finished; returns the final snapshot. Raises on error or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = state.snapshot()
        if snap["error"]:
            raise AssertionError(f"program failed: {snap['error']}")
        if all_finished(snap):
            return snap
        time.sleep(0.02)
    raise AssertionError(f"program did not finish within {timeout} s")
