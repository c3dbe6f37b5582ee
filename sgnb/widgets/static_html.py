"""Static HTML for the three views, for places without a widget frontend (nbconvert, GitHub, exported pages).

Each view has a function over the raw snapshot (``program_html(state.snapshot(), tokenizer)``,
``cache_html(engine.snapshot())``, ``constraint_html(meta_info)``) and one over the prepared view model
(``render_*``), which the widgets use. Inline styles only (no <style>, no script), every user string escaped;
hover details go into ``title`` attributes, facts into ``data-*`` attributes.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from sgnb.widgets.cache_data import TIER_LABELS, cache_data
from sgnb.widgets.constraint_data import constraint_data
from sgnb.widgets.program_data import program_data

KIND_STYLES = {
    "cache": "background:#c9f0d3",
    "computed": "background:#ffe1b8",
    "generated": "background:#cfe0ff",
    "forced": "background:#e6d2ff;text-decoration:underline dotted",
    "prompt": "background:#eeeeee",
    "pending": "background:#f6f6f6;color:#777",
    "unsent": "color:#888",
}
KIND_LABELS = {
    "cache": "prompt from cache", "computed": "prompt computed", "generated": "generated",
    "forced": "forced (jump-forward)", "prompt": "prompt", "pending": "pending", "unsent": "not sent",
}
_BOX = "font-family:ui-sans-serif,system-ui,sans-serif;font-size:13px;color:#222"
_MONO = "font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px"


# ------------------------------------------------------------------ program
def program_html(snapshot: dict, tokenizer: Any = None) -> str:
    """Static HTML of a ``ProgramState.snapshot()``."""
    return render_program_html(program_data(snapshot, tokenizer))


def render_program_html(data: dict) -> str:
    states = data["states"]
    by_id = {s["id"]: s for s in states}
    root = by_id[data["root"]]
    status = "error" if data["error"] else ("finished" if data["is_finished"] else "running")
    parts = [f'<div class="sgnb-program" data-status="{status}" data-num-states="{len(states)}" style="{_BOX}">']
    parts.append(_legend(data["totals"]))
    parts.append('<div style="display:flex;gap:16px;align-items:flex-start">')
    parts.append('<div style="flex:3;min-width:0">')
    parts.append(_state_text_html(root, 0))
    for state in states[1:]:
        parts.append(f'<div style="margin-top:8px;{_MONO};color:#555">state {escape(state["id"])} '
                     f'(fork of {escape(str(state["parent_id"]))} at char {state["fork_start"]})</div>')
        parts.append(_state_text_html(state, state["fork_start"]))
    parts.append("</div>")
    parts.append(f'<div style="flex:2;min-width:0">{_fork_tree_html(states)}</div>')
    parts.append("</div>")
    if data["error"]:
        parts.append(f'<div style="color:#b00020;margin-top:6px">{escape(data["error"])}</div>')
    parts.append("</div>")
    return "".join(parts)


def _legend(totals: dict) -> str:
    items = []
    for kind in ("cache", "computed", "generated", "forced"):
        n = totals.get(kind, 0)
        items.append(f'<span data-kind="{kind}" data-tokens="{n}" style="{KIND_STYLES[kind]};padding:1px 6px;'
                     f'border-radius:3px;margin-right:6px">{KIND_LABELS[kind]}: {n} tok</span>')
    return f'<div class="sgnb-legend" style="margin-bottom:6px">{"".join(items)}</div>'


def _state_text_html(state: dict, since: int) -> str:
    text = state["text"]
    spans = state["spans"]
    out = [f'<div class="sgnb-text" data-state="{escape(state["id"])}" style="{_MONO};white-space:pre-wrap;'
           'word-break:break-word;line-height:1.6;border:1px solid #ddd;border-radius:4px;padding:6px">']
    open_span = None
    for seg in state["segments"]:
        if seg["end"] <= since:
            continue
        start = max(seg["start"], since)
        span_index = seg.get("span")
        if span_index != open_span:
            if open_span is not None:
                out.append("</span>")
            if span_index is not None:
                span = spans[span_index]
                out.append(f'<span class="sgnb-span" data-var="{escape(str(span["name"]))}" '
                           f'data-span-kind="{escape(str(span["kind"]))}" title="{escape(_span_title(span))}" '
                           'style="outline:1px solid #6b8fd6;border-radius:2px">'
                           f'<sup style="color:#3358a8;font-size:10px">{escape(str(span["name"]))}</sup>')
            open_span = span_index
        piece = text[start:seg["end"]]
        if since and seg["start"] <= since and piece.startswith("\n"):
            piece = piece[1:]  # a fork's block starts on its own line already
        if seg.get("thumbnail"):  # an image: its thumbnail in place of the placeholder text
            piece_html = (f'<img src="{escape(seg["thumbnail"])}" alt="{escape(piece)}" '
                          'style="max-width:64px;max-height:64px;vertical-align:middle">')
        else:
            piece_html = escape(piece)
        out.append(f'<span class="sgnb-tok" data-kind="{seg["kind"]}" title="{escape(_segment_title(seg))}" '
                   f'style="{KIND_STYLES[seg["kind"]]}">{piece_html}</span>')
    if open_span is not None:
        out.append("</span>")
    out.append("</div>")
    return "".join(out)


def _segment_title(seg: dict) -> str:
    bits = [KIND_LABELS[seg["kind"]]]
    if seg.get("num_tokens"):
        bits.append(f'{seg["num_tokens"]} token' + ("s" if seg["num_tokens"] != 1 else ""))
    if seg.get("approximate"):
        bits.append("boundary estimated")
    if seg.get("token_id") is not None:
        bits.append(f'id {seg["token_id"]}')
    if seg.get("logprob") is not None:
        bits.append(f'logprob {seg["logprob"]:.3f}')
    if seg.get("top"):
        bits.append("top: " + ", ".join(f"{json.dumps(t)} {lp:.2f}" for t, lp in seg["top"]))
    return " · ".join(bits)


def _span_title(span: dict) -> str:
    bits = [f'{span["kind"]} {span["name"]}']
    for key in ("prompt_tokens", "cached_tokens", "completion_tokens"):
        if span.get(key) is not None:
            bits.append(f"{key}={span[key]}")
    if span.get("num_forced"):
        bits.append(f'forced={span["num_forced"]}')
    if span.get("choices"):
        bits.append("choices: " + ", ".join(
            f"{json.dumps(c)} {s:.2f}" if isinstance(s, (int, float)) else json.dumps(c) for c, s in span["choices"]))
    return " · ".join(bits)


def _fork_tree_html(states: list[dict]) -> str:
    rows = ['<div class="sgnb-fork-tree"><div style="font-weight:600;margin-bottom:4px">fork tree</div>']
    for state in states:
        status = "error" if state["error"] else ("done" if state["is_finished"] else "running")
        own = dict(state.get("own_variables", state["variables"]))
        own.update({k: v + "…" for k, v in state["partial_variables"].items()})
        var_rows = "".join(
            f'<div style="{_MONO};margin-left:12px"><b>{escape(k)}</b> = {escape(_short(v))}</div>'
            for k, v in own.items())
        rows.append(f'<div class="sgnb-fork-node" data-state="{escape(state["id"])}" data-depth="{state["depth"]}" '
                    f'data-num-vars="{len(own)}" style="margin-left:{16 * state["depth"]}px;'
                    'border-left:2px solid #9ab;padding-left:6px;margin-bottom:4px">'
                    f'<span style="{_MONO}">{escape(state["id"])}</span> <i style="color:#777">{status}</i>'
                    f'{var_rows}</div>')
    rows.append("</div>")
    return "".join(rows)


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


# ------------------------------------------------------------------ cache
def cache_html(snapshot: dict) -> str:
    """Static HTML of an ``Engine.snapshot()``."""
    return render_cache_html(cache_data(snapshot))


def render_cache_html(data: dict) -> str:
    children: dict[Any, list[dict]] = {}
    for node in data["nodes"]:
        children.setdefault(node["parent"], []).append(node)
    parts = [f'<div class="sgnb-cache" data-num-nodes="{data["num_nodes"]}" data-num-shown="{data["num_shown"]}" '
             f'style="{_BOX}">']
    parts.append('<div style="display:flex;gap:16px;flex-wrap:wrap;margin-bottom:6px">')
    parts.append(_gauge("pool usage", data["pool_usage"],
                        f'{data["num_slots"] - data["num_free_slots"]}/{data["num_slots"]} slots'))
    parts.append(_gauge("hit rate", data["hit_rate"], f'{data["hit_rate"]:.1%}'))
    for tier, usage in (data["tiers"] or {}).items():  # the tiered cache's host memory and disk
        if tier != "device":
            parts.append(_gauge(TIER_LABELS[tier], usage["usage"], f'{usage["used_bytes"] / 2**20:.1f}/'
                                f'{usage["capacity_bytes"] / 2**20:.0f} MB'))
    parts.append(f'<div style="{_MONO}">{data["cached_tokens"]} cached tok ({data["evictable_tokens"]} evictable, '
                 f'{data["protected_tokens"]} locked) · {data["num_evicted_tokens"]} evicted · '
                 f'{data["num_running"]} running · {data["num_waiting"]} waiting</div>')
    parts.append("</div>")
    roots = children.get(None, [])
    parts.append(f'<div style="{_MONO}">')
    for root in roots:
        parts.append(_cache_node_html(root, children, 0, data["tiers"] is not None))
    if data["truncated"]:
        parts.append(f'<div style="color:#777">… {data["num_nodes"] - data["num_shown"]} more nodes not shown</div>')
    parts.append("</div></div>")
    return "".join(parts)


def _gauge(label: str, fraction: float, caption: str) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    return (f'<div class="sgnb-gauge" data-label="{escape(label)}" data-value="{fraction:.4f}" style="min-width:160px">'
            f'<div>{escape(label)}: {escape(caption)}</div>'
            '<div style="height:8px;background:#eee;border-radius:4px;overflow:hidden">'
            f'<div style="width:{pct:.1f}%;height:100%;background:#4a7bd0"></div></div></div>')


def _cache_node_html(node: dict, children: dict, depth: int, show_tier: bool) -> str:
    if node["parent"] is None:
        label = "root"
    else:
        label = escape(json.dumps(node["text"], ensure_ascii=False))
    badges = [f'{node["num_tokens"]} tok', f'hits {node["hit_count"]}']
    if node["num_image_tokens"]:
        badges.insert(0, f'image: {node["num_image_tokens"]} tok')
    if node["lock_ref"] > 0:
        badges.append(f'locked×{node["lock_ref"]}')
    elif node["lru_rank"] is not None:
        badges.append(f'evict #{node["lru_rank"]}')
    elif node["is_evictable"]:
        badges.append("evictable")
    if show_tier and node["parent"] is not None:
        badges.insert(0, TIER_LABELS[node["tier"]])
    style = "color:#b05000" if node["lock_ref"] > 0 else ""
    row = (f'<div class="sgnb-cache-node" data-node="{node["id"]}" data-tokens="{node["num_tokens"]}" '
           f'data-hits="{node["hit_count"]}" data-lock="{node["lock_ref"]}" data-tier="{node["tier"]}" '
           f'style="margin-left:{14 * depth}px;white-space:pre-wrap;{style}">'
           f'{label} <span style="color:#667">[{" · ".join(badges)}]</span></div>')
    return row + "".join(_cache_node_html(c, children, depth + 1, show_tier) for c in children.get(node["id"], []))


# ------------------------------------------------------------------ constraint
def constraint_html(source: Any) -> str:
    """Static HTML of a constrained gen's trace (its meta_info, or the trace list)."""
    return render_constraint_html(constraint_data(source))


def render_constraint_html(data: dict) -> str:
    parts = [f'<div class="sgnb-constraint" data-num-steps="{data["num_steps"]}" '
             f'data-num-forced="{data["num_forced"]}" data-kind="{data["kind"]}" style="{_BOX}">']
    parts.append(f'<div style="margin-bottom:4px">{data["num_steps"]} tokens, {data["num_forced"]} forced by '
                 f'jump-forward, {escape(data["summary"])}</div>')
    parts.append(f'<div style="{_MONO};white-space:pre-wrap;border:1px solid #ddd;padding:4px;margin-bottom:6px">')
    for seg in data["segments"]:
        kind = "forced" if seg["forced"] else "generated"
        parts.append(f'<span data-kind="{kind}" data-tokens="{seg["num_tokens"]}" style="{KIND_STYLES[kind]}">'
                     f'{escape(seg["text"])}</span>')
    parts.append("</div>")
    parts.append(f'<table style="border-collapse:collapse;{_MONO}"><tr>'
                 + "".join(f'<th style="text-align:left;padding:1px 8px">{h}</th>'
                           for h in ("#", escape(data["state_label"]), "allowed", "token", "masked top"))
                 + "</tr>")
    for step in data["steps"]:
        kind = "forced" if step["forced"] else "generated"
        masked = ", ".join(f"{escape(json.dumps(t))} {lp:.2f}" for t, lp in step["masked_top"])
        parts.append(f'<tr class="sgnb-step" data-forced="{str(step["forced"]).lower()}">'
                     f'<td style="padding:1px 8px">{step["index"]}</td>'
                     f'<td style="padding:1px 8px">{escape(str(step["state"]))}</td>'
                     f'<td style="padding:1px 8px">{step["num_allowed"]}</td>'
                     f'<td style="padding:1px 8px"><span style="{KIND_STYLES[kind]}">'
                     f'{escape(json.dumps(step["token"]))}</span>{" forced" if step["forced"] else ""}</td>'
                     f'<td style="padding:1px 8px;color:#777">{masked}</td></tr>')
    parts.append("</table></div>")
    return "".join(parts)
