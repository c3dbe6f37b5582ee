"""Token marks: which characters of a program state's text came from where.

Every character of a state's text gets one segment kind:

- ``cache``: prompt tokens served from the radix cache (the first ``cached_tokens`` of a request);
- ``computed``: prompt tokens the engine had to prefill;
- ``generated``: tokens the model sampled (or, for ``select``, the chosen option);
- ``forced``: tokens appended by jump-forward of a constraint (``constraint_trace`` steps with ``forced``);
- ``prompt``: prompt text whose cache status the backend did not report (e.g. a prefix committed before a
  fork, when the state's snapshot has no ``commit`` span for it);
- ``pending``: text already sent (or being sent) to the model whose result has not arrived yet;
- ``unsent``: text after the last gen/select of a finished state, never sent to the model.

A token is marked once, by the first request that saw it: the prompt region of a gen/select is the text
between the previous gen/select's end and its own start. An image (``snap["images"]``: its placeholder's char
range and a thumbnail) is a segment of its own with ``thumbnail``, marked like the text around it; the engine
expands its placeholder into the image's rows, which it counts as prompt tokens: the rows beyond what the
tokenizer makes of the text are the images', split evenly between them. Plain functions over the JSON-safe
``ProgramState.snapshot()``; no ipywidgets, no torch.
"""

from __future__ import annotations

from typing import Any

TOKEN_KINDS = ("cache", "computed", "generated", "forced", "prompt", "pending", "unsent")
# spans whose request saw the text before them; "commit" (a prefix committed before a fork) has no output
_MODEL_SPANS = ("gen", "select", "commit")


def mark_tokens(snap: dict, tokenizer: Any = None, memo: dict | None = None) -> list[dict]:
    """Segments ``{"start", "end", "kind", "num_tokens", "span", ...}`` covering ``snap["text"]`` in order.

    ``span`` is the index of the gen/select span in ``snap["spans"]`` (None for prompt text); an image's segment
    has ``thumbnail``. Generated
    tokens are one segment each when the meta_info holds ``output_token_logprobs`` or a
    ``constraint_trace`` (then they carry ``token_id``, ``logprob`` and ``top`` = ``[[token, logprob], ...]``);
    otherwise a gen is one run. ``tokenizer`` (an HF fast tokenizer) maps cached-token counts to characters;
    without it the cache boundary is estimated proportionally and prompt segments carry ``approximate``.
    ``memo`` caches prompt tokenizations between calls (spans never change once recorded).
    """
    text = snap.get("text", "")
    if not isinstance(text, str):
        raise ValueError(f"snapshot text must be a string, got {type(text).__name__}")
    images = [im for im in snap.get("images") or [] if 0 <= im["start"] < im["end"] <= len(text)]
    segments: list[dict] = []
    cursor = 0
    for index, span in enumerate(snap.get("spans", [])):
        if span.get("kind") not in _MODEL_SPANS:
            continue
        start, end = int(span["start"]), int(span["end"])
        if start < cursor or end < start or end > len(text):
            raise ValueError(f"span {index} ({span.get('name')!r}) has offsets [{start}, {end}) that overlap "
                             f"an earlier span or leave the text ({len(text)} chars)")
        meta = _first_choice(span.get("meta_info") or {})
        segments += _prompt_segments(text, cursor, start, meta, tokenizer, memo, images)
        if span["kind"] != "commit":
            segments += _output_segments(text, start, end, span, index, meta)
            cursor = end
        else:
            cursor = start
    segments += _tail_segments(snap, text, cursor)
    return _with_images([s for s in segments if s["end"] > s["start"]], images)


def count_marks(segments: list[dict], since: int = 0) -> dict[str, int]:
    """Tokens per kind over the segments that start at or after char ``since`` (unknown counts skipped)."""
    counts = {kind: 0 for kind in TOKEN_KINDS}
    for seg in segments:
        if seg["start"] >= since and seg.get("num_tokens"):
            counts[seg["kind"]] += seg["num_tokens"]
    return counts


# ------------------------------------------------------------------ prompt regions
def _first_choice(meta: dict) -> dict:
    """`gen(n>1)` puts one meta per sample under "choices"; the first sample's prompt accounting holds for all."""
    choices = meta.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return meta


def _cached_count(meta: dict) -> int | None:
    cached = meta.get("cached_tokens")
    if isinstance(cached, list):  # select: one scoring request per choice; the prompt was computed by the worst
        cached = min(cached) if cached else None
    if isinstance(cached, bool) or not isinstance(cached, int):
        return None
    return max(cached, 0)


def _prompt_segments(text: str, lo: int, hi: int, meta: dict, tokenizer: Any, memo: dict | None,
                     images: list[dict]) -> list[dict]:
    if lo >= hi:
        return []
    cached = _cached_count(meta)
    if cached is None:
        return [{"start": lo, "end": hi, "kind": "prompt", "num_tokens": None, "span": None}]
    prompt_len = meta.get("prompt_tokens")
    offsets = _token_ends(text[:hi], tokenizer, memo) if tokenizer is not None else None
    in_prompt = [im for im in images if im["end"] <= hi]
    if offsets is not None and isinstance(prompt_len, int) and in_prompt:
        offsets = _with_image_rows(offsets, in_prompt, prompt_len)
    # select reports prompt+choice lengths (a list): nothing to cross-check against
    if offsets is not None and (not isinstance(prompt_len, int) or len(offsets) == prompt_len):
        cuts = [x for im in in_prompt for x in (im["start"], im["end"]) if lo < x < hi]
        return _exact_prompt_segments(offsets, lo, hi, cached, cuts)
    # No tokenizer (or it disagrees with the engine's count): split the characters proportionally.
    total = prompt_len if isinstance(prompt_len, int) and prompt_len > 0 else max(cached, 1)
    boundary = min(hi, round(hi * min(cached, total) / total))
    return [
        {"start": lo, "end": max(lo, boundary), "kind": "cache", "num_tokens": None, "span": None, "approximate": True},
        {"start": max(lo, boundary), "end": hi, "kind": "computed", "num_tokens": None, "span": None,
         "approximate": True},
    ]


def _exact_prompt_segments(ends: list[int], lo: int, hi: int, cached: int, cuts: list[int]) -> list[dict]:
    """The region [lo, hi) cut at the cache boundary and at `cuts` (image edges): pieces before the boundary are
    "cache", after it "computed"; each counts the tokens that end inside it (a computed token ending at the
    boundary counts in the piece after it)."""
    # ends[i]: char offset where prompt token i ends. Tokens ending at or before `lo` belong to earlier regions.
    if cached <= 0:
        boundary = lo
    elif cached >= len(ends):
        boundary = hi
    else:
        boundary = min(max(ends[cached - 1], lo), hi)
    edges = sorted({lo, boundary, hi, *cuts})
    counts = [0] * (len(edges) - 1)
    for i, e in enumerate(ends):
        if e <= lo:
            continue
        pos = e if i < cached else min(max(e, boundary + 0.5), hi)
        counts[next(k for k in range(len(counts)) if pos <= edges[k + 1])] += 1
    return [{"start": start, "end": end, "kind": "cache" if end <= boundary else "computed", "num_tokens": n,
             "span": None} for start, end, n in zip(edges, edges[1:], counts)]


def _with_image_rows(ends: list[int], images: list[dict], prompt_len: int) -> list[int]:
    """Token ends of the prompt as the engine holds it: each image's placeholder tokens replaced by its rows
    (all ending where the placeholder ends); the engine's `prompt_len` tells how many rows there are in all."""
    inside = [e for e in ends if any(im["start"] < e <= im["end"] for im in images)]
    num_rows = prompt_len - len(ends) + len(inside)
    if num_rows < len(images):  # not this prompt's count (another tokenization): leave it to the cross-check
        return ends
    share, extra = divmod(num_rows, len(images))
    rows = [im["end"] for k, im in enumerate(images) for _ in range(share + (k < extra))]
    return sorted([e for e in ends if e not in inside] + rows)


def _token_ends(prompt: str, tokenizer: Any, memo: dict | None) -> list[int] | None:
    """End char offset of every token of ``prompt`` as the engine tokenizes it (special tokens included)."""
    key = (len(prompt), hash(prompt))
    if memo is not None and key in memo:
        return memo[key]
    try:
        enc = tokenizer(prompt, return_offsets_mapping=True)
    except (TypeError, ValueError, NotImplementedError):  # a slow tokenizer has no offsets
        return None
    ends: list[int] = []
    last = 0
    for a, b in enc["offset_mapping"]:
        last = max(last, b if b > a else last)  # special tokens report (0, 0): they end where the previous did
        ends.append(last)
    if memo is not None:
        memo[key] = ends
    return ends


def _with_images(segments: list[dict], images: list[dict]) -> list[dict]:
    """Each image's placeholder as a segment of its own, with the image's ``thumbnail`` (None when the program
    could not read the image); a segment around one is cut there."""
    if not images:
        return segments
    out = []
    for seg in segments:
        edges = sorted({seg["start"], seg["end"], *(x for im in images for x in (im["start"], im["end"])
                                                    if seg["start"] < x < seg["end"])})
        for k, (start, end) in enumerate(zip(edges, edges[1:])):
            piece = dict(seg, start=start, end=end) if k == 0 else dict(seg, start=start, end=end, num_tokens=None)
            image = next((im for im in images if im["start"] == start and im["end"] == end), None)
            if image is not None:
                piece["thumbnail"] = image.get("thumbnail")
            out.append(piece)
    return out


# ------------------------------------------------------------------ outputs
def _output_segments(text: str, start: int, end: int, span: dict, index: int, meta: dict) -> list[dict]:
    name = span.get("name")
    if span["kind"] == "select":
        return [{"start": start, "end": end, "kind": "generated", "num_tokens": None, "span": index, "var": name}]
    tokens = _output_tokens(meta)
    if tokens is None:
        n = meta.get("completion_tokens")
        return [{"start": start, "end": end, "kind": "generated", "num_tokens": n if isinstance(n, int) else None,
                 "span": index, "var": name}]
    segments: list[dict] = []
    pos = start
    used = 0
    for tok in tokens:
        piece = tok["token"]
        if not isinstance(piece, str) or not text.startswith(piece, pos) or pos + len(piece) > end:
            break  # token text does not line up (partial UTF-8, trimmed stop, special token): stop splitting
        segments.append({"start": pos, "end": pos + len(piece), "kind": tok["kind"], "num_tokens": 1,
                         "span": index, "var": name, "token_id": tok["token_id"], "logprob": tok["logprob"],
                         "top": tok["top"]})
        pos += len(piece)
        used += 1
    if pos < end:
        rest = [t for t in tokens[used:]]
        kind = "forced" if rest and all(t["kind"] == "forced" for t in rest) else "generated"
        segments.append({"start": pos, "end": end, "kind": kind, "num_tokens": len(rest) or None,
                         "span": index, "var": name})
    return segments


def _output_tokens(meta: dict) -> list[dict] | None:
    """The gen's output tokens in order: from the constraint trace (forced and sampled) or the logprobs."""
    logprobs = meta.get("output_token_logprobs") or []
    tops = meta.get("output_top_logprobs") or []
    trace = meta.get("constraint_trace")
    if trace and not all(isinstance(step, dict) for step in trace):
        trace = None  # not the engine's step dicts (e.g. stringified by a lossy snapshot): use the logprobs
    if trace:
        out = []
        k = 0  # index into the logprob lists, which hold sampled tokens only
        for step in trace:
            forced = bool(step.get("forced"))
            lp = top = None
            if not forced and k < len(logprobs):
                lp = _logprob_of(logprobs[k])
                top = _top(tops[k]) if k < len(tops) else None
                k += 1
            out.append({"token": step.get("token"), "token_id": step.get("token_id"), "logprob": lp,
                        "top": top, "kind": "forced" if forced else "generated"})
        return out
    if not logprobs:
        return None
    return [{"token": entry[2] if len(entry) > 2 else None, "token_id": entry[1], "logprob": _logprob_of(entry),
             "top": _top(tops[i]) if i < len(tops) else None, "kind": "generated"}
            for i, entry in enumerate(logprobs)]


def _logprob_of(entry: Any) -> float | None:
    value = entry[0] if isinstance(entry, (list, tuple)) and entry else None
    return float(value) if isinstance(value, (int, float)) else None


def _top(entries: Any) -> list[list] | None:
    if not entries:
        return None
    return [[e[2] if len(e) > 2 else str(e[1]), float(e[0])] for e in entries if e and e[0] is not None]


# ------------------------------------------------------------------ tail
def _tail_segments(snap: dict, text: str, cursor: int) -> list[dict]:
    if cursor >= len(text):
        return []
    partial = {k: v for k, v in (snap.get("partial_variables") or {}).items() if isinstance(v, str)}
    streaming = next(((k, v) for k, v in partial.items() if v and text.endswith(v)
                      and len(text) - len(v) >= cursor), None)
    if streaming is not None:
        name, value = streaming
        split = len(text) - len(value)
        return [
            {"start": cursor, "end": split, "kind": "pending", "num_tokens": None, "span": None},
            {"start": split, "end": len(text), "kind": "generated", "num_tokens": None, "span": None, "var": name,
             "streaming": True},
        ]
    segments = []
    # text before a fork point went to the model (the fork commits it to the cache) even with no span after it
    forked_at = max((int(c.get("fork_start") or 0) for c in snap.get("children") or []), default=0)
    if forked_at > cursor:
        segments.append({"start": cursor, "end": forked_at, "kind": "prompt", "num_tokens": None, "span": None})
        cursor = forked_at
    kind = "unsent" if snap.get("is_finished") or snap.get("error") else "pending"
    segments.append({"start": cursor, "end": len(text), "kind": kind, "num_tokens": None, "span": None})
    return segments
