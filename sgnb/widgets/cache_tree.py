"""`CacheTree(target)`: a radix cache, live: nodes, hit counts, locks, LRU order, gauges; with the tiered cache
on, where each node's KV sits (the pool, host memory or disk) and each tier's usage.

``target`` is what ``cache_source()`` accepts: nothing (the default backend's engine, as ``%%sgl`` cells use),
an ``Engine``, an ``EngineBackend`` / ``sgnb.Runtime(...)``, or a `sgnb serve` (its URL or a
``RuntimeEndpoint``). The widget reads only that source. A poller thread checks it every ``interval``
seconds and sends a new ``cache`` trait only when the tree or the queues changed; a remote source's
failures (server down, HTTP errors) show in ``error`` and polling goes on, so the view recovers with the
server. Clicking a node in the browser sets ``selected_node``; the kernel answers with the node's full
root-path text in ``selected_text`` (browser messages are handled when the cell is idle: fine for clicks).
"""

from __future__ import annotations

import threading
from typing import Any

import traitlets

from sgnb.lang.backends.errors import BackendError
from sgnb.widgets.base import STATIC, StaticFallbackWidget
from sgnb.widgets.cache_data import cache_data, change_key
from sgnb.widgets.cache_source import cache_source
from sgnb.widgets.poller import Poller
from sgnb.widgets.rich_text import render_cache_rich
from sgnb.widgets.static_html import render_cache_html


class CacheTree(StaticFallbackWidget):
    """Live view of a radix cache: the default backend's engine, an engine, a backend or a server (see above)."""

    _esm = STATIC / "cache_tree.js"

    cache = traitlets.Dict({}).tag(sync=True)
    num_updates = traitlets.Int(0).tag(sync=True)
    selected_node = traitlets.Int(-1).tag(sync=True)  # set by a click in the browser (or from Python)
    selected_text = traitlets.Unicode("").tag(sync=True)
    selected_info = traitlets.Dict({}).tag(sync=True)  # {"id", "num_tokens", "error"}
    source = traitlets.Unicode("").tag(sync=True)  # which engine or server this view follows
    error = traitlets.Unicode("").tag(sync=True)  # the remote source's last failure; "" once it answers again

    def __init__(self, target: Any = None, *, live: bool = True, max_nodes: int = 200, interval: float = 0.25,
                 **kwargs: Any) -> None:
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        cache = cache_source(target)
        super().__init__(source=cache.label, **kwargs)
        self.cache_source = cache
        self.max_nodes = max_nodes
        self.interval = interval
        self._last_key: tuple | None = None
        self._last_activity: tuple | None = None
        self._lock = threading.Lock()
        self._poller: Poller | None = None
        self.refresh()
        if live:
            self.start()

    # ---------------------------------------------------------------- live updates
    def start(self) -> None:
        """Start following the source (``live=True`` does it at construction)."""
        if self._poller is None or not self._poller.is_alive:
            self._poller = Poller(self._tick, self.interval, name="sgnb-cache-tree").start()

    def stop(self) -> None:
        """Stop following; the view keeps its last picture."""
        poller = getattr(self, "_poller", None)  # absent when __init__ refused its arguments
        self._poller = None
        if poller is not None:
            poller.stop()

    def close(self) -> None:
        self.stop()
        super().close()

    @property
    def is_live(self) -> bool:
        return self._poller is not None and self._poller.is_alive

    def refresh(self) -> bool:
        """Snapshot the source; set ``cache`` if the tree, pool or queues changed. Returns whether it did.

        A remote source's failure is kept in ``error`` (returns False); the next refresh tries again.
        """
        with self._lock:
            # cheap check first: the snapshot decodes node excerpts under the engine's lock
            quick = self.cache_source.activity()
            if quick is not None and quick == self._last_activity:
                return False
            try:
                snap = self.cache_source.snapshot(self.max_nodes)
            except BackendError as exc:
                self.error = str(exc)
                return False
            self._last_activity = quick
            self.error = ""
            key = change_key(snap)
            if key == self._last_key:
                return False
            data = cache_data(snap)
            self._last_key = key
            with self.hold_sync():
                self.cache = data
                self.num_updates += 1
            return True

    def _tick(self) -> bool:
        self.refresh()
        return True

    # ---------------------------------------------------------------- clicks
    @traitlets.observe("selected_node")
    def _on_select(self, change: dict) -> None:
        node_id = change["new"]
        if node_id < 0:
            self.selected_text, self.selected_info = "", {}
            return
        try:
            node = self.cache_source.node_text(node_id)
        except (ValueError, BackendError) as exc:  # evicted since the snapshot, or the server is unreachable
            self.selected_info = {"id": node_id, "num_tokens": 0, "error": str(exc)}
            self.selected_text = ""
            return
        with self.hold_sync():
            self.selected_text = node["text"]
            self.selected_info = {"id": node_id, "num_tokens": node["num_tokens"], "error": None}

    # ---------------------------------------------------------------- static views
    def static_version(self) -> int:
        return self.num_updates

    def static_html(self) -> str:
        return render_cache_html(self.cache)

    def __rich__(self) -> Any:
        return render_cache_rich(self.cache)

