"""Fork and join: `s.fork(n)` makes children that continue from the parent's text; a join brings their results
back into the parent (run on the parent's worker, when the parent reaches it).

Invariants:
- A child starts with `ProgramData.fork()` of the parent's data (text, messages, roles, variables, spans) as it
  was once every item submitted before the fork had executed; `fork_start_text_pos` marks where its own text
  begins.
- Children are created under the parent's lock and only while the parent has no error, so stopping a program
  (`sgnb.lang.interrupt`) that marks the parent first can never miss a child created concurrently.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from sgnb.lang.backends.errors import UnsupportedFeatureError
from sgnb.lang.errors import ProgramError
from sgnb.lang.queue_items import CommitPrefix

if TYPE_CHECKING:
    from sgnb.lang.interpreter import StreamExecutor


def fork(parent: StreamExecutor, size: int) -> list[StreamExecutor]:
    """`size` children that continue from `parent`'s current text. With size > 1 the shared prefix is committed
    into the backend's cache first, so every child extends from cached KV."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"fork size must be a positive integer, got {size!r}")
    if parent.spec_turn is not None:
        raise UnsupportedFeatureError("cannot fork inside an assistant turn under API speculative execution")
    if size > 1:
        parent.submit(CommitPrefix())
    parent.sync()
    children = []
    with parent.cond:
        if parent.error is not None:
            raise ProgramError(
                f"cannot fork program state {parent.sid}: it failed with {parent.error}"
            ) from parent.error
        for _ in range(size):
            child = type(parent)(
                parent.backend, parent.arguments, parent.default_sampling, parent.chat_template, parent.stream,
                parent.num_api_spec_tokens, parent=parent,
            )
            child.owner_threads = set(parent.owner_threads) | {threading.get_ident()}
            child.data = parent.data.fork()
            child.fork_start_text_pos = len(parent.data.text)
            children.append(child)
        parent.children.extend(children)
        parent.changed()
    return children


def commit_prefix(executor: StreamExecutor) -> None:
    """Put the state's text into the backend's prefix cache (a fork's shared prefix)."""
    if executor.data.text:
        executor.backend.cache_prefix(executor.data.text, [p.data for p in executor.data.images])
        executor.num_cache_commits += 1


def _synced(children: list[StreamExecutor]) -> list[StreamExecutor]:
    """Wait for every child; raise the first child's failure."""
    for child in children:
        child.sync()
        if child.error is not None:
            raise ProgramError(f"forked state {child.sid} failed: {child.error}") from child.error
    return children


def gather_vars(parent: StreamExecutor, children: list[StreamExecutor]) -> None:
    """Each variable the children created (not inherited from the parent) becomes a list, in fork order."""
    _synced(children)
    with parent.cond:
        base = set(parent.data.variables)
        for child in children:
            for key, value in child.data.variables.items():
                if key in base:
                    continue
                parent.data.variables.setdefault(key, []).append(value)


def concat_and_append(parent: StreamExecutor, children: list[StreamExecutor]) -> None:
    """Append the children's own texts (after the fork point) to the parent, one after another."""
    pieces = [child.data.text[child.fork_start_text_pos :] for child in _synced(children)]
    parent.fill("".join(pieces))


__all__ = ["fork", "commit_prefix", "gather_vars", "concat_and_append"]
