"""`CacheTree(engine)`: the engine's radix cache, live: nodes, hit counts, locks, LRU order, gauges.

A poller thread checks the engine a few times a second and sends a new ``cache`` trait only when the tree or
the queues changed. Clicking a node in the browser sets ``selected_node``; the kernel answers with the node's
full root-path text in ``selected_text`` (browser messages are handled when the cell is idle: fine for clicks).
"""

from __future__ import annotations

import threading
from typing import Any

import traitlets

from sgnb.widgets.base import STATIC, StaticFallbackWidget
from sgnb.widgets.cache_data import cache_data, change_key
from sgnb.widgets.poller import Poller
from sgnb.widgets.rich_text import render_cache_rich
from sgnb.widgets.static_html import render_cache_html


class CacheTree(StaticFallbackWidget):
    """Live view of ``engine``'s radix cache (anything with ``snapshot(max_nodes)``, ``tree`` and ``tokenizer``)."""

    _esm = STATIC / "cache_tree.js"

    cache = traitlets.Dict({}).tag(sync=True)
    num_updates = traitlets.Int(0).tag(sync=True)
    selected_node = traitlets.Int(-1).tag(sync=True)  # set by a click in the browser (or from Python)
    selected_text = traitlets.Unicode("").tag(sync=True)
    selected_info = traitlets.Dict({}).tag(sync=True)  # {"id", "num_tokens", "error"}

    def __init__(self, engine: Any, *, live: bool = True, max_nodes: int = 200, interval: float = 0.25,
                 **kwargs: Any) -> None:
        if not callable(getattr(engine, "snapshot", None)):
            raise ValueError(f"CacheTree needs an engine with snapshot(), got {type(engine).__name__}")
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        super().__init__(**kwargs)
        self.engine = engine
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
        """Start following the engine (``live=True`` does it at construction)."""
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
        """Snapshot the engine; set ``cache`` if the tree, pool or queues changed. Returns whether it did."""
        with self._lock:
            # cheap check first: the snapshot decodes node excerpts under the engine's lock
            quick = _activity(self.engine)
            if quick is not None and quick == self._last_activity:
                return False
            self._last_activity = quick
            snap = self.engine.snapshot(max_nodes=self.max_nodes)
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
        tree, tokenizer = getattr(self.engine, "tree", None), getattr(self.engine, "tokenizer", None)
        try:
            tokens = tree.node_tokens(node_id)
            text = tokenizer.decode(tokens)
        except ValueError as exc:  # evicted since the snapshot
            self.selected_info = {"id": node_id, "num_tokens": 0, "error": str(exc)}
            self.selected_text = ""
            return
        with self.hold_sync():
            self.selected_text = text
            self.selected_info = {"id": node_id, "num_tokens": len(tokens), "error": None}

    # ---------------------------------------------------------------- static views
    def static_version(self) -> int:
        return self.num_updates

    def static_html(self) -> str:
        return render_cache_html(self.cache)

    def __rich__(self) -> Any:
        return render_cache_rich(self.cache)


_ACTIVITY_KEYS = ("num_forward_passes", "num_finished", "num_free_slots", "num_evicted_tokens", "queried_tokens",
                  "num_running", "num_waiting", "tree_tokens")


def _activity(engine: Any) -> tuple | None:
    """Counters that move whenever the tree, the pool or the queues can have changed (None: unknown)."""
    stats = getattr(engine, "stats", None)
    if not callable(stats):
        return None
    values = stats()
    if not all(k in values for k in _ACTIVITY_KEYS):
        return None
    return tuple(values[k] for k in _ACTIVITY_KEYS)
