"""Scheduling policies: the order in which waiting requests are considered for admission.

Each policy is one function registered under its name (`schedule_policy=` of the engine):

    policy(queue, match, cache) -> the same requests, reordered

`queue` is in arrival order; `match(req)` is req's current prefix-cache match (without counting a hit);
`cache` is the prefix cache whose tree the matches end in. The scheduler applies aging on top.
Plain Python, no torch.
"""

from __future__ import annotations

from collections.abc import Callable

from sgnb.engine.prefix_cache import MatchResult, PrefixCache
from sgnb.engine.radix_cache import TreeNode
from sgnb.engine.request import Req

Policy = Callable[[list[Req], Callable[[Req], MatchResult], PrefixCache], list[Req]]

_REGISTRY: dict[str, Policy] = {}


def register(name: str) -> Callable[[Policy], Policy]:
    """Decorator: make `policy` available as `schedule_policy=name`."""
    def add(policy: Policy) -> Policy:
        if name in _REGISTRY:
            raise ValueError(f"scheduling policy {name!r} is registered twice")
        _REGISTRY[name] = policy
        return policy
    return add


def get_policy(name: str) -> Policy:
    if name not in _REGISTRY:
        raise ValueError(f"schedule_policy must be one of {policy_names()}, got {name!r}")
    return _REGISTRY[name]


def policy_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


@register("lpm")
def longest_prefix_match(queue: list[Req], match: Callable[[Req], MatchResult], cache: PrefixCache) -> list[Req]:
    """Longest cached prefix first (ties keep arrival order)."""
    lens = {id(r): match(r).prefix_len for r in queue}
    return sorted(queue, key=lambda r: -lens[id(r)])


@register("dfs-weight")
def dfs_weight(queue: list[Req], match: Callable[[Req], MatchResult], cache: PrefixCache) -> list[Req]:
    """Depth-first over the tree, heaviest subtree (most waiting requests) first (SGLang paper, DFS-weight)."""
    at_node: dict[int, list[Req]] = {}
    weight: dict[int, int] = {}
    for req in queue:
        node = match(req).last_node
        at_node.setdefault(id(node), []).append(req)
        while node is not None:
            weight[id(node)] = weight.get(id(node), 0) + 1
            node = node.parent
    order: list[Req] = []
    stack: list[tuple[TreeNode, bool]] = [(cache.root, False)]
    while stack:
        node, is_expanded = stack.pop()
        if is_expanded:     # a node's own requests come after its subtrees (the root's: no cached prefix)
            order += at_node.get(id(node), [])
            continue
        stack.append((node, True))
        children = [c for c in node.children.values() if id(c) in weight]
        stack += [(c, False) for c in sorted(children, key=lambda c: weight[id(c)])]   # heaviest popped first
    return order


@register("fcfs")
def first_come_first_served(queue: list[Req], match: Callable[[Req], MatchResult], cache: PrefixCache) -> list[Req]:
    """Arrival order."""
    return list(queue)
