"""TokenFSM: the compiled constraint the sampler drives, and `compile_regex` (cached).

States are byte-DFA states. Per state the FSM knows the allowed token ids (sorted, EOS
included iff accepting), the state each token leads to, and the forced byte string
(jump-forward). Plain Python + numpy; the engine builds its torch masks from
`allowed_token_ids` / `allowed_mask` and caches them per (fsm, state).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import numpy as np

from sgnb.constrained.errors import ConstraintError
from sgnb.constrained.fsm_cache import (
    LRUCache,
    fsm_cache_dir,
    fsm_cache_key,
    load_arrays,
    save_arrays,
)
from sgnb.constrained.regex_dfa import ByteDFA, regex_to_byte_dfa
from sgnb.constrained.token_index import TokenIndex, build_token_index
from sgnb.constrained.vocab import TokenVocab


class TokenFSM:
    """A compiled constraint over a tokenizer's vocabulary."""

    __slots__ = ("pattern", "vocab_size", "eos_token_ids", "initial_state", "num_states", "stats",
                 "_dfa", "_index", "_ptr", "_finished", "_single_byte", "_single_next", "_forced",
                 "_rows", "__weakref__")

    def __init__(self, pattern: str, dfa: ByteDFA, index: TokenIndex, vocab_size: int,
                 eos_token_ids: tuple[int, ...], compile_seconds: float, loaded_from_disk: bool = False) -> None:
        self.pattern = pattern
        self.vocab_size = vocab_size
        self.eos_token_ids = eos_token_ids
        self._dfa = dfa
        self._index = index
        self.initial_state = dfa.initial
        self.num_states = dfa.num_states
        self._ptr = index.state_ptr.tolist()
        counts = np.diff(index.state_ptr)
        self._finished = dfa.accepting & (counts == len(eos_token_ids))

        # single outgoing byte per state (jump-forward): count the bytes each state allows
        transitions, classes = dfa.transitions, dfa.byte_classes
        num_classes = transitions.shape[1]
        class_size = np.bincount(classes, minlength=num_classes)
        class_byte = np.full(num_classes, 256, dtype=np.int64)
        np.minimum.at(class_byte, classes, np.arange(256))
        allowed = transitions >= 0  # [num_states, num_classes]
        single = (allowed @ class_size == 1) & ~dfa.accepting
        only_class = np.argmax(allowed, axis=1)
        self._single_byte = np.where(single, class_byte[only_class], -1).tolist()
        self._single_next = np.where(single, transitions[np.arange(self.num_states), only_class], -1).tolist()
        self._forced: dict[int, tuple[bytes, int]] = {}
        self._rows: list[list[int]] | None = None

        self.stats = {
            "num_states": self.num_states,
            "num_edges": int(index.token_ids.size),
            "num_byte_classes": int(num_classes),
            "compile_seconds": compile_seconds,
            "loaded_from_disk": loaded_from_disk,
        }

    def __repr__(self) -> str:
        return f"TokenFSM({self.pattern[:60]!r}, num_states={self.num_states}, num_edges={self.stats['num_edges']})"

    @property
    def nbytes(self) -> int:
        """Memory held by the DFA and index arrays."""
        dfa, index = self._dfa, self._index
        return sum(a.nbytes for a in (dfa.transitions, dfa.accepting, index.state_ptr, index.token_ids,
                                      index.next_states, index.max_token_len, index.live))

    def _check(self, state: int) -> None:
        if not 0 <= state < self.num_states:
            raise ValueError(f"invalid FSM state {state} (this FSM has {self.num_states} states)")

    def allowed_token_ids(self, state: int) -> np.ndarray:
        """Sorted int32 token ids allowed in `state` (read-only view); EOS iff accepting."""
        self._check(state)
        return self._index.token_ids[self._ptr[state] : self._ptr[state + 1]]

    def allowed_next_states(self, state: int) -> np.ndarray:
        """int32 next states, parallel to allowed_token_ids(state) (read-only view)."""
        self._check(state)
        return self._index.next_states[self._ptr[state] : self._ptr[state + 1]]

    def allowed_mask(self, state: int) -> np.ndarray:
        """[vocab_size] bool mask of the allowed token ids."""
        mask = np.zeros(self.vocab_size, dtype=bool)
        mask[self.allowed_token_ids(state)] = True
        return mask

    def num_allowed(self, state: int) -> int:
        self._check(state)
        return self._ptr[state + 1] - self._ptr[state]

    def next_state(self, state: int, token_id: int) -> int:
        """State after emitting token_id in `state`; -1 if the token is not allowed.
        EOS (allowed only in accepting states) leaves the state unchanged."""
        self._check(state)
        lo, hi = self._ptr[state], self._ptr[state + 1]
        ids = self._index.token_ids
        pos = lo + int(np.searchsorted(ids[lo:hi], token_id))
        if pos < hi and ids[pos] == token_id:
            return int(self._index.next_states[pos])
        return -1

    def advance_tokens(self, state: int, token_ids: Iterable[int]) -> int:
        """State after emitting token_ids in order; -1 as soon as one is not allowed."""
        for token in token_ids:
            state = self.next_state(state, token)
            if state < 0:
                return -1
        return state

    def is_accepting(self, state: int) -> bool:
        self._check(state)
        return bool(self._dfa.accepting[state])

    def is_finished(self, state: int) -> bool:
        """Accepting and nothing but EOS can follow: the request must end here."""
        self._check(state)
        return bool(self._finished[state])

    def max_token_len(self, state: int) -> int:
        """Longest allowed (non-EOS) token from `state`, in bytes."""
        self._check(state)
        return int(self._index.max_token_len[state])

    def forced_bytes(self, state: int) -> tuple[bytes, int]:
        """The singular path from `state`: the bytes every continuation must start with,
        stopping at the first accepting state or branch; and the state at its end."""
        self._check(state)
        cached = self._forced.get(state)
        if cached is not None:
            return cached
        out = bytearray()
        current = state
        seen = set()
        while self._single_byte[current] >= 0 and current not in seen:
            seen.add(current)
            out.append(self._single_byte[current])
            current = self._single_next[current]
        result = (bytes(out), current)
        self._forced[state] = result
        return result

    def advance_bytes(self, state: int, data: bytes) -> int:
        """State after the raw bytes `data`, or -1 if they leave the language."""
        self._check(state)
        if self._rows is None:
            self._rows = self._dfa.transitions.tolist()
        rows, classes = self._rows, self._dfa.byte_classes.tolist()
        for byte in data:
            state = rows[state][classes[byte]]
            if state < 0:
                return -1
        return state

    def to_arrays(self) -> dict[str, np.ndarray]:
        dfa, index = self._dfa, self._index
        return {
            "transitions": dfa.transitions, "byte_classes": dfa.byte_classes, "accepting": dfa.accepting,
            "initial": np.array([dfa.initial], dtype=np.int64), "state_ptr": index.state_ptr,
            "token_ids": index.token_ids, "next_states": index.next_states,
            "max_token_len": index.max_token_len, "live": index.live,
            "eos_token_ids": np.array(self.eos_token_ids, dtype=np.int64),
            "vocab_size": np.array([self.vocab_size], dtype=np.int64),
            "pattern": np.frombuffer(self.pattern.encode("utf-8", "surrogatepass"), dtype=np.uint8),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], compile_seconds: float) -> TokenFSM:
        dfa = ByteDFA(transitions=arrays["transitions"], byte_classes=arrays["byte_classes"],
                      accepting=arrays["accepting"], initial=int(arrays["initial"][0]))
        index = TokenIndex(state_ptr=arrays["state_ptr"], token_ids=arrays["token_ids"],
                           next_states=arrays["next_states"], max_token_len=arrays["max_token_len"],
                           live=arrays["live"])
        pattern = arrays["pattern"].tobytes().decode("utf-8", "surrogatepass")
        return cls(pattern, dfa, index, int(arrays["vocab_size"][0]),
                   tuple(int(t) for t in arrays["eos_token_ids"]), compile_seconds, loaded_from_disk=True)


# at most 128 compiled FSMs and 1 GiB of index arrays in memory
_MEMORY_CACHE: LRUCache[tuple[str, str], TokenFSM] = LRUCache(max_entries=128, max_weight=2**30,
                                                               weigh=lambda fsm: fsm.nbytes)
_COMPILE_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _read_only(arrays: dict[str, np.ndarray]) -> None:
    for array in arrays.values():
        array.setflags(write=False)


def compile_regex(pattern: str, vocab: TokenVocab, *, use_disk_cache: bool = True) -> TokenFSM:
    """Compile a regex (Python syntax, fullmatch semantics) against a vocabulary.

    Cached per (pattern, vocab fingerprint) in memory (LRU) and, unless use_disk_cache is
    False, on disk under $SGNB_CACHE/fsm/. Raises ConstraintError for invalid or unsupported
    regexes and for patterns no token sequence of the vocabulary can complete.
    """
    if not isinstance(pattern, str):
        raise ConstraintError(f"regex must be a str, got {type(pattern).__name__}")
    if not isinstance(vocab, TokenVocab):
        raise TypeError(f"vocab must be a TokenVocab, got {type(vocab).__name__}")
    key = (pattern, vocab.fingerprint)
    fsm = _MEMORY_CACHE.get(key)
    if fsm is not None:
        return fsm
    with _LOCKS_GUARD:
        lock = _COMPILE_LOCKS.setdefault(key, threading.Lock())
    with lock:  # one compile per key at a time; the others wait and read the cache
        fsm = _MEMORY_CACHE.get(key)
        if fsm is not None:
            return fsm
        path = fsm_cache_dir() / f"{fsm_cache_key(pattern, vocab.fingerprint)}.npz"
        start = time.perf_counter()
        arrays = load_arrays(path) if use_disk_cache else None
        if arrays is not None and _matches(arrays, pattern, vocab):
            _read_only(arrays)
            fsm = TokenFSM.from_arrays(arrays, time.perf_counter() - start)
        else:
            dfa = regex_to_byte_dfa(pattern)
            index = build_token_index(dfa, vocab, pattern)
            fsm = TokenFSM(pattern, dfa, index, vocab.vocab_size, vocab.eos_token_ids, time.perf_counter() - start)
            arrays = fsm.to_arrays()
            _read_only(arrays)
            if use_disk_cache:
                try:
                    save_arrays(path, arrays)
                except OSError:
                    pass  # a read-only or full cache folder only costs recompiles
        _MEMORY_CACHE.put(key, fsm)
    with _LOCKS_GUARD:
        _COMPILE_LOCKS.pop(key, None)
    return fsm


def _matches(arrays: dict[str, np.ndarray], pattern: str, vocab: TokenVocab) -> bool:
    try:
        stored = arrays["pattern"].tobytes().decode("utf-8", "surrogatepass")
        return stored == pattern and int(arrays["vocab_size"][0]) == vocab.vocab_size
    except (KeyError, UnicodeDecodeError, IndexError):
        return False


def clear_memory_cache() -> None:
    """Forget the in-memory compiled FSMs (the disk cache stays)."""
    _MEMORY_CACHE.clear()
