"""Terminal renderings (rich) of the three view models, for ``__rich__`` and ``sgnb run`` output."""

from __future__ import annotations

import json
from typing import Any

from sgnb.widgets.cache_data import TIER_LABELS

KIND_RICH = {
    "cache": "black on #c9f0d3",
    "computed": "black on #ffe1b8",
    "generated": "black on #cfe0ff",
    "forced": "black on #e6d2ff underline",
    "prompt": "black on #eeeeee",
    "pending": "grey50",
    "unsent": "grey50",
}


def render_program_rich(data: dict) -> Any:
    from rich.console import Group
    from rich.text import Text
    from rich.tree import Tree

    by_id = {s["id"]: s for s in data["states"]}
    legend = Text()
    for kind in ("cache", "computed", "generated", "forced"):
        legend.append(f" {kind}: {data['totals'].get(kind, 0)} tok ", style=KIND_RICH[kind])
        legend.append(" ")
    blocks: list[Any] = [legend]
    for state in data["states"]:
        since = state["fork_start"] if state["depth"] else 0
        if state["depth"]:
            blocks.append(Text(f"state {state['id']} (fork of {state['parent_id']} at char {since})", style="dim"))
        blocks.append(_marked_text(state, since))
    root = by_id[data["root"]]
    tree = Tree(_state_label(root))
    _add_children(tree, root, by_id)
    blocks.append(tree)
    if data["error"]:
        blocks.append(Text(data["error"], style="bold red"))
    return Group(*blocks)


def _marked_text(state: dict, since: int) -> Any:
    from rich.text import Text

    out = Text()
    text = state["text"]
    for seg in state["segments"]:
        if seg["end"] <= since:
            continue
        out.append(text[max(seg["start"], since):seg["end"]], style=KIND_RICH[seg["kind"]])
    return out


def _state_label(state: dict) -> Any:
    from rich.text import Text

    status = "error" if state["error"] else ("done" if state["is_finished"] else "running")
    names = list(state.get("own_variables", state["variables"])) + [f"{k}…" for k in state["partial_variables"]]
    return Text(f"{state['id']} [{status}] " + ", ".join(names))  # Text: no markup parsing of "[...]"


def _add_children(node: Any, state: dict, by_id: dict) -> None:
    for child_id in state["children"]:
        child = by_id[child_id]
        branch = node.add(_state_label(child))
        _add_children(branch, child, by_id)


def render_cache_rich(data: dict) -> Any:
    from rich.console import Group
    from rich.text import Text
    from rich.tree import Tree

    children: dict[Any, list[dict]] = {}
    for node in data["nodes"]:
        children.setdefault(node["parent"], []).append(node)
    header = Text(f"pool {data['pool_usage']:.1%} · hit rate {data['hit_rate']:.1%} · {data['cached_tokens']} cached "
                  f"tok ({data['evictable_tokens']} evictable, {data['protected_tokens']} locked) · "
                  f"{data['num_nodes']} nodes")
    roots = children.get(None, [])
    tree = Tree(Text("radix cache"))

    def add(parent: Any, node: dict) -> None:
        badges = f"{node['num_tokens']} tok, hits {node['hit_count']}"
        if node["num_image_tokens"]:
            badges = f"image: {node['num_image_tokens']} tok, " + badges
        if data["tiers"] is not None:
            badges = f"{TIER_LABELS[node['tier']]}, {badges}"
        if node["lock_ref"] > 0:
            badges += f", locked×{node['lock_ref']}"
        elif node["lru_rank"] is not None:
            badges += f", evict #{node['lru_rank']}"
        branch = parent.add(Text(f"{json.dumps(node['text'], ensure_ascii=False)} [{badges}]"))
        for child in children.get(node["id"], []):
            add(branch, child)

    for root in roots:
        for child in children.get(root["id"], []):
            add(tree, child)
    return Group(header, tree)


def render_constraint_rich(data: dict) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{data['num_steps']} tokens, {data['num_forced']} forced")
    for col in ("#", data["state_label"], "allowed", "token", "masked top"):
        table.add_column(col)
    for step in data["steps"]:
        masked = ", ".join(f"{json.dumps(t)} {lp:.2f}" for t, lp in step["masked_top"])
        table.add_row(str(step["index"]), str(step["state"]), str(step["num_allowed"]),
                      Text(json.dumps(step["token"]) + (" forced" if step["forced"] else "")), Text(masked),
                      style="magenta" if step["forced"] else None)
    return table
