"""Incremental detokenization and stop-string matching for one request."""

from __future__ import annotations

from typing import Any


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text without re-decoding everything.

    Keeps a small window of already-decoded tokens so byte-level BPE pieces that
    only form valid UTF-8 together (or merge spaces) decode correctly; text that
    ends in an incomplete character is held back until the next token.
    """

    __slots__ = ("tokenizer", "skip_special_tokens", "text", "_prefix_offset", "_read_offset")

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.text = ""
        self._prefix_offset = 0
        self._read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def update(self, ids: list[int]) -> str:
        """`ids` is the full output so far; returns the newly readable text (also appended to .text)."""
        prefix_text = self._decode(ids[self._prefix_offset:self._read_offset])
        full_text = self._decode(ids[self._prefix_offset:])
        if len(full_text) <= len(prefix_text) or full_text.endswith("\ufffd"):
            return ""
        delta = full_text[len(prefix_text):]
        self.text += delta
        self._prefix_offset = self._read_offset
        self._read_offset = len(ids)
        return delta

    def flush(self, ids: list[int]) -> str:
        """At the end of a request: emit whatever is left, incomplete characters included."""
        rest = self._decode(ids[self._prefix_offset:])[len(self._decode(ids[self._prefix_offset:self._read_offset])):]
        self.text += rest
        self._prefix_offset = self._read_offset = len(ids)
        return rest


def find_stop(text: str, stops: list[str], new_len: int) -> tuple[int, str] | None:
    """First stop string in `text` that overlaps its last `new_len` chars: (start index, stop)."""
    best: tuple[int, str] | None = None
    for stop in stops:
        start = max(0, len(text) - new_len - len(stop) + 1)
        idx = text.find(stop, start)
        if idx != -1 and (best is None or idx < best[0]):
            best = (idx, stop)
    return best


def held_back_len(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string.

    Streaming must not emit it yet: the next token might complete the stop string.
    """
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest
