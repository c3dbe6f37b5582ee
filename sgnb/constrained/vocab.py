"""The tokenizer as the constrained decoder sees it: raw bytes per token id, EOS, specials.

Byte-level BPE vocabularies (GPT-2 style, SmolLM2, Llama-3, Qwen) spell bytes with the
GPT-2 bytes-to-unicode table; SentencePiece-style vocabularies (Llama-2) spell spaces as
`▁` and use `<0xNN>` byte-fallback tokens. Special tokens never appear under a constraint;
EOS is allowed only in accepting states by the token index.
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sgnb.constrained.errors import ConstraintError

_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def gpt2_unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: printable bytes stand for themselves, the
    others are shifted to code points 256 + n in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {chr(b): b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in printable:
            mapping[chr(256 + shifted)] = b
            shifted += 1
    return mapping


# str.translate table: GPT-2 unicode char -> the latin-1 char with the same byte value.
_GPT2_TRANSLATE = {ord(ch): b for ch, b in gpt2_unicode_to_byte().items()}


def _decoder_kinds(tokenizer) -> str:
    """The tokenizers-library decoder description, e.g. 'ByteLevel' or 'Sequence(...)'."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        return ""
    try:
        return decoder.__getstate__().decode("utf-8", "replace")
    except Exception:
        return type(decoder).__name__


@dataclass(frozen=True, slots=True)
class VocabTrie:
    """A trie of the constrainable tokens' bytes, nodes numbered breadth-first.

    Children of a node are contiguous ids: first_child[n] .. first_child[n] + num_children[n].
    node_byte[n] is the byte on the edge into n (root: 0). Token ids ending at node n are
    node_tokens[token_ptr[n]:token_ptr[n + 1]] (several ids may share the same bytes).
    root_subtree_size[k] counts the nodes under the root's k-th child (for work estimates).
    """

    node_byte: np.ndarray  # [num_nodes] uint8
    first_child: np.ndarray  # [num_nodes] int32
    num_children: np.ndarray  # [num_nodes] int32
    token_ptr: np.ndarray  # [num_nodes + 1] int64
    node_tokens: np.ndarray  # [num_trie_tokens] int32
    root_subtree_size: np.ndarray  # [num_root_children] int64
    token_count: np.ndarray  # [num_nodes] int32 token ids ending at each node
    single_token: np.ndarray  # [num_nodes] int32 the id when exactly one ends there, else -1
    max_tokens_per_node: int

    @property
    def num_nodes(self) -> int:
        return int(self.node_byte.shape[0])



def build_vocab_trie(token_bytes: Sequence[bytes | None]) -> VocabTrie:
    """Vectorized trie construction: sort the byte strings, then open a node at depth d for
    every sorted row whose d-prefix differs from the previous row's."""
    usable = [i for i, b in enumerate(token_bytes) if b]
    if not usable:
        raise ConstraintError("the vocabulary has no token usable under a constraint")
    usable.sort(key=token_bytes.__getitem__)  # bytes order: a prefix sorts before its extensions
    ids = np.array(usable, dtype=np.int64)
    blobs = [token_bytes[i] for i in usable]
    lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
    max_len = int(lengths.max())
    flat = np.frombuffer(b"".join(blobs), dtype=np.uint8).astype(np.int16)
    rows = np.repeat(np.arange(ids.size), lengths)
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(flat.size) - np.repeat(starts, lengths)
    padded = np.full((ids.size, max_len), -1, dtype=np.int16)  # [num_tokens, max_len], -1 = past the end
    padded[rows, cols] = flat

    # lcp[i]: common prefix length of sorted rows i-1 and i (lcp[0] = -1 opens every node)
    differs = np.concatenate([padded[1:] != padded[:-1], np.ones((ids.size - 1, 1), dtype=bool)], axis=1)
    lcp = np.concatenate([[-1], np.minimum(np.argmax(differs, axis=1), np.minimum(lengths[1:], lengths[:-1]))])

    node_of_row = np.zeros(ids.size, dtype=np.int64)  # node of each row at the current depth
    root_child_of_row = np.zeros(ids.size, dtype=np.int64)  # index of each row's depth-1 node
    ancestors = []  # per depth: the root child above each new node
    node_bytes = [np.zeros(1, dtype=np.uint8)]
    parents = [np.full(1, -1, dtype=np.int64)]
    token_nodes, token_ids = [], []
    num_nodes = 1
    for depth in range(1, max_len + 1):
        present = lengths >= depth
        opens = present & (lcp < depth)
        local = np.cumsum(opens) - 1
        new_rows = np.flatnonzero(opens)
        node_bytes.append(padded[new_rows, depth - 1].astype(np.uint8))
        parents.append(node_of_row[new_rows])
        node_of_row = np.where(present, num_nodes + local, -1)
        if depth == 1:
            root_child_of_row = local.copy()
        ancestors.append(root_child_of_row[new_rows])
        ends = np.flatnonzero(lengths == depth)
        token_nodes.append(node_of_row[ends])
        token_ids.append(ids[ends])
        num_nodes += new_rows.size

    node_byte = np.concatenate(node_bytes)
    parent = np.concatenate(parents)
    num_children = np.bincount(parent[1:], minlength=num_nodes).astype(np.int64)
    first_child = np.zeros(num_nodes, dtype=np.int64)
    child_ids = np.arange(1, num_nodes)
    # children are contiguous and parents appear in increasing order: first child via reverse scan
    first_child[parent[1:][::-1]] = child_ids[::-1]

    token_nodes_all = np.concatenate(token_nodes)
    token_ids_all = np.concatenate(token_ids)
    by_node = np.argsort(token_nodes_all, kind="stable")
    token_ptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(token_nodes_all, minlength=num_nodes), out=token_ptr[1:])

    subtree = np.bincount(np.concatenate(ancestors), minlength=int(num_children[0])).astype(np.int64)

    node_tokens = token_ids_all[by_node].astype(np.int32)
    token_count = np.diff(token_ptr).astype(np.int32)
    single_token = np.full(num_nodes, -1, dtype=np.int32)
    single = token_count == 1
    single_token[single] = node_tokens[token_ptr[:-1][single]]
    return VocabTrie(
        node_byte=node_byte,
        first_child=first_child.astype(np.int32),
        num_children=num_children.astype(np.int32),
        token_ptr=token_ptr,
        node_tokens=node_tokens,
        root_subtree_size=subtree,
        token_count=token_count,
        single_token=single_token,
        max_tokens_per_node=int(token_count.max()),
    )


class TokenVocab:
    """Raw bytes per token id plus the ids the constraint machinery treats specially.

    token_bytes[i] is None for ids that can never be emitted under a constraint (special and
    control tokens, and tokens that decode to nothing). eos_token_ids are allowed exactly in
    accepting states. fingerprint is a stable hash of all of it, used as a cache key.
    """

    __slots__ = ("token_bytes", "eos_token_ids", "special_token_ids", "vocab_size", "kind",
                 "fingerprint", "token_lengths", "single_byte_tokens", "_trie", "_lock", "__weakref__")

    def __init__(self, token_bytes: Sequence[bytes | None], eos_token_ids: Iterable[int],
                 special_token_ids: Iterable[int] = (), kind: str = "bytes") -> None:
        self.token_bytes: tuple[bytes | None, ...] = tuple(token_bytes)
        self.vocab_size = len(self.token_bytes)
        self.eos_token_ids: tuple[int, ...] = tuple(sorted(set(int(t) for t in eos_token_ids)))
        if not self.eos_token_ids:
            raise ConstraintError("TokenVocab needs at least one EOS token id")
        for token in self.eos_token_ids:
            if not 0 <= token < self.vocab_size:
                raise ConstraintError(f"EOS token id {token} is outside the vocabulary (size {self.vocab_size})")
        self.special_token_ids = frozenset(int(t) for t in special_token_ids) | frozenset(self.eos_token_ids)
        self.kind = kind
        self.token_lengths = np.fromiter((len(b) if b else 0 for b in self.token_bytes), dtype=np.int32,
                                         count=self.vocab_size)
        self.single_byte_tokens = np.zeros(256, dtype=bool)  # [256] bytes that are a token by themselves
        for data in self.token_bytes:
            if data is not None and len(data) == 1:
                self.single_byte_tokens[data[0]] = True
        digest = hashlib.sha256()
        digest.update(f"{kind}|{self.vocab_size}|{self.eos_token_ids}|".encode())
        digest.update(self.token_lengths.tobytes())
        digest.update(b"".join(b for b in self.token_bytes if b))
        self.fingerprint = digest.hexdigest()[:32]
        self._trie: VocabTrie | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenVocab(kind={self.kind!r}, vocab_size={self.vocab_size}, eos={self.eos_token_ids})"

    @property
    def trie(self) -> VocabTrie:
        """The byte trie of the constrainable tokens, built once on first use."""
        if self._trie is None:
            with self._lock:
                if self._trie is None:
                    self._trie = build_vocab_trie(self.token_bytes)
        return self._trie

    def decode_bytes(self, token_ids: Iterable[int]) -> bytes:
        """Concatenated raw bytes of token_ids (special tokens contribute nothing)."""
        return b"".join(self.token_bytes[t] or b"" for t in token_ids)

    @classmethod
    def from_tokenizer(cls, tokenizer, eos_token_ids: Iterable[int] | None = None) -> TokenVocab:
        """Build (or fetch the cached) view of a Hugging Face tokenizer.

        eos_token_ids defaults to the tokenizer's eos_token_id; pass the model's generation
        config EOS ids when they differ.
        """
        eos = tuple(sorted(set(eos_token_ids))) if eos_token_ids is not None else None
        key = eos
        try:
            per_tokenizer = _VOCAB_CACHE.setdefault(tokenizer, {})
        except TypeError:  # not weak-referenceable / hashable: no caching
            per_tokenizer = {}
        cached = per_tokenizer.get(key)
        if cached is not None:
            return cached
        vocab = _vocab_from_tokenizer(tokenizer, eos)
        per_tokenizer[key] = vocab
        return vocab


_VOCAB_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _vocab_from_tokenizer(tokenizer, eos: tuple[int, ...] | None) -> TokenVocab:
    if eos is None:
        if tokenizer.eos_token_id is None:
            raise ConstraintError("the tokenizer has no eos_token_id; pass eos_token_ids explicitly")
        eos = (int(tokenizer.eos_token_id),)
    vocab: dict[str, int] = tokenizer.get_vocab()
    size = max(len(tokenizer), max(vocab.values()) + 1)
    added = dict(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    special = {int(t) for t in (getattr(tokenizer, "all_special_ids", None) or [])}
    special |= {int(t) for t, tok in added.items() if getattr(tok, "special", False)}

    decoder = _decoder_kinds(tokenizer)
    if "ByteLevel" in decoder:
        kind = "byte_level"
    elif "ByteFallback" in decoder or "\u2581" in decoder or any(_BYTE_FALLBACK.fullmatch(t) for t in
                                                                  ("<0x00>", "<0x0A>") if t in vocab):
        kind = "sentencepiece"
    else:
        kind = "bytes"

    token_bytes: list[bytes | None] = [None] * size
    if kind == "byte_level":
        for text, token in vocab.items():
            try:
                token_bytes[token] = text.translate(_GPT2_TRANSLATE).encode("latin-1")
            except UnicodeEncodeError:  # not spelled with the byte alphabet (an added token)
                token_bytes[token] = text.encode("utf-8")
    elif kind == "sentencepiece":
        for text, token in vocab.items():
            fallback = _BYTE_FALLBACK.fullmatch(text)
            token_bytes[token] = bytes([int(fallback.group(1), 16)]) if fallback else text.replace(
                "\u2581", " ").encode("utf-8")
    else:
        for text, token in vocab.items():
            token_bytes[token] = text.encode("utf-8")
    for token, added_token in added.items():  # added tokens are literal text, not byte-spelled
        if int(token) not in special:
            token_bytes[int(token)] = str(getattr(added_token, "content", added_token)).encode("utf-8")
    for token in special | set(eos):
        if 0 <= token < size:
            token_bytes[token] = None
    token_bytes = [b if b else None for b in token_bytes]
    return TokenVocab(token_bytes, eos, special, kind)
