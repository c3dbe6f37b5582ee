"""Where a ``CacheTree`` reads its radix cache from: an in-process engine, or a `sgnb serve` over HTTP.

A source answers three questions, in plain data:

- ``snapshot(max_nodes) -> dict``: ``Engine.snapshot()``'s shape (``cache`` tree, ``running``, ``waiting``, ``stats``);
- ``node_text(node_id) -> {"id", "text", "num_tokens"}``: the decoded root path down to a node (a click);
  ``ValueError`` when the node is gone;
- ``activity() -> tuple | None``: cheap counters that move whenever the tree, pool or queues can have changed,
  so an idle engine is not snapshotted again (None: unknown, always snapshot).

A remote source fails with ``BackendError`` (unreachable server, HTTP error); the widget shows it and retries.
``cache_source(target)`` picks the source for what the user passed (see its docstring).
"""

from __future__ import annotations

from typing import Any, Protocol

from sgnb.lang.backends.base import Backend
from sgnb.lang.backends.errors import HTTPStatusError

# polling timeout for a server given as a URL: a hung server delays the widget, never the notebook for minutes
REMOTE_TIMEOUT = 10.0

_ACTIVITY_KEYS = ("num_forward_passes", "num_finished", "num_free_slots", "num_evicted_tokens", "queried_tokens",
                  "num_running", "num_waiting", "tree_tokens")


class CacheSource(Protocol):
    label: str

    def snapshot(self, max_nodes: int) -> dict[str, Any]: ...

    def node_text(self, node_id: int) -> dict[str, Any]: ...

    def activity(self) -> tuple | None: ...


class EngineCacheSource:
    """The radix cache of an in-process ``Engine`` (its ``snapshot()``, ``stats()``, ``tree``, ``tokenizer``)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        config = getattr(engine, "config", None)
        self.label = f"engine {getattr(config, 'model', None) or type(engine).__name__}"

    def snapshot(self, max_nodes: int) -> dict[str, Any]:
        return self.engine.snapshot(max_nodes=max_nodes)

    def node_text(self, node_id: int) -> dict[str, Any]:
        return self.engine.node_text(node_id)          # ValueError when evicted since the snapshot

    def activity(self) -> tuple | None:
        stats = getattr(self.engine, "stats", None)
        if not callable(stats):
            return None
        values = stats()
        if not all(k in values for k in _ACTIVITY_KEYS):
            return None
        return tuple(values[k] for k in _ACTIVITY_KEYS)


class ServerCacheSource:
    """The radix cache of a `sgnb serve` behind a ``RuntimeEndpoint`` (its API key, if any, goes along)."""

    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint
        self.label = endpoint.base_url

    def snapshot(self, max_nodes: int) -> dict[str, Any]:
        return self.endpoint.cache_snapshot(max_nodes)

    def node_text(self, node_id: int) -> dict[str, Any]:
        try:
            return self.endpoint.cache_node_text(node_id)
        except HTTPStatusError as exc:
            if exc.status_code == 404:  # evicted since the snapshot: like the local tree's ValueError
                raise ValueError(exc.server_message) from exc
            raise

    def activity(self) -> tuple | None:
        return None  # the server throttles its snapshots instead


def cache_source(target: Any = None) -> CacheSource:
    """The source for ``target``.

    - None: the default backend's engine, created on first use like ``%%sgl`` cells do (``get_default_backend()``);
    - an ``EngineBackend`` (what ``sgnb.Runtime(...)`` returns) or an ``Engine``: its radix cache, in process;
    - an ``http(s)://`` URL or a ``RuntimeEndpoint``: that `sgnb serve`'s cache over HTTP.
    """
    from sgnb.lang.backends.engine_backend import EngineBackend
    from sgnb.lang.backends.runtime_endpoint import RuntimeEndpoint

    if target is None:
        from sgnb.lang.api import get_default_backend

        target = get_default_backend()
    if isinstance(target, str) and target.startswith(("http://", "https://")):
        target = RuntimeEndpoint(target, timeout=REMOTE_TIMEOUT)
    if isinstance(target, RuntimeEndpoint):
        return ServerCacheSource(target)
    if isinstance(target, EngineBackend):
        target = target.engine
    if callable(getattr(target, "snapshot", None)) and not isinstance(target, Backend):
        return EngineCacheSource(target)
    raise ValueError(
        "CacheTree needs an engine with snapshot() (an sgnb.Engine), an EngineBackend or sgnb.Runtime(...), "
        f"a RuntimeEndpoint or an http(s):// server URL; got {_describe(target)}"
    )


def _describe(target: Any) -> str:
    if isinstance(target, str):
        return f"the string {target!r}"
    if isinstance(target, Backend):
        return f"{type(target).__name__} (its cache is not visible)"
    return type(target).__name__
