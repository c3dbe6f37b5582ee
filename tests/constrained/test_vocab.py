"""TokenVocab: raw token bytes, EOS and special tokens, fingerprint, the vocabulary trie."""

from __future__ import annotations

import random
import re
import time

import pytest
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers

from sgnb.constrained import ConstraintError, TokenVocab, compile_regex
from sgnb.constrained.vocab import _vocab_from_tokenizer
from tests.constrained.regex_strategies import check_walk, walk_fsm

TEXTS = ["Hello, world!", "  indented\n\tcode()", '{"name": "Jöhn", "日本": [1, 2.5e-3]}', "emoji 😀👍🏽 ok",
         "Ünïcödé — “quotes” ‘single’", "\u00a0nbsp\u2028sep", "x" * 40]


@pytest.mark.parametrize("text", TEXTS)
def test_token_bytes_concatenate_to_the_encoded_text(text, tokenizer, vocab):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert vocab.decode_bytes(ids) == text.encode("utf-8")


def test_every_token_decodes_like_the_tokenizer(tokenizer, vocab):
    decoded = tokenizer.batch_decode([[i] for i in range(vocab.vocab_size)], skip_special_tokens=False)
    checked = 0
    for token, text in enumerate(decoded):
        data = vocab.token_bytes[token]
        if data is None:
            continue
        try:
            expected = data.decode("utf-8")
        except UnicodeDecodeError:  # partial UTF-8: the tokenizer shows a replacement char
            assert "\ufffd" in text
            continue
        assert text == expected
        checked += 1
    assert checked > 45_000


def test_special_tokens_have_no_bytes_and_eos_is_im_end(tokenizer, vocab):
    assert vocab.kind == "byte_level"
    assert vocab.vocab_size == len(tokenizer) == 49152
    assert vocab.eos_token_ids == (tokenizer.convert_tokens_to_ids("<|im_end|>"),)
    special = [i for i, t in tokenizer.added_tokens_decoder.items() if t.special]
    assert len(special) == 17
    assert all(vocab.token_bytes[i] is None for i in special)
    assert set(special) <= vocab.special_token_ids
    assert sum(b is None for b in vocab.token_bytes) == 17


def test_from_tokenizer_is_cached_and_fast(tokenizer):
    assert TokenVocab.from_tokenizer(tokenizer) is TokenVocab.from_tokenizer(tokenizer)
    start = time.perf_counter()
    fresh = _vocab_from_tokenizer(tokenizer, None)
    assert time.perf_counter() - start < 1.0
    assert fresh.fingerprint == TokenVocab.from_tokenizer(tokenizer).fingerprint


def test_fingerprint_changes_with_eos_and_bytes(tokenizer, vocab):
    other_eos = TokenVocab.from_tokenizer(tokenizer, eos_token_ids=[0])
    assert other_eos.fingerprint != vocab.fingerprint
    edited = list(vocab.token_bytes)
    edited[1000] = b"changed"
    assert TokenVocab(edited, vocab.eos_token_ids).fingerprint != vocab.fingerprint
    assert TokenVocab(vocab.token_bytes, vocab.eos_token_ids, kind="byte_level").fingerprint == vocab.fingerprint


def test_trie_holds_exactly_the_constrainable_tokens(vocab):
    trie = vocab.trie
    found: dict[int, bytes] = {}
    stack = [(0, b"")]
    while stack:
        node, prefix = stack.pop()
        for token in trie.node_tokens[trie.token_ptr[node] : trie.token_ptr[node + 1]].tolist():
            found[token] = prefix
        children = range(trie.first_child[node], trie.first_child[node] + trie.num_children[node])
        assert list(trie.node_byte[children.start : children.stop]) == sorted(set(trie.node_byte[children.start : children.stop]))
        stack.extend((c, prefix + bytes([trie.node_byte[c]])) for c in children)
    assert found == {i: b for i, b in enumerate(vocab.token_bytes) if b}
    assert trie.root_subtree_size.sum() == trie.num_nodes - 1


def test_bad_eos_ids_are_rejected(vocab):
    with pytest.raises(ConstraintError, match="outside the vocabulary"):
        TokenVocab(vocab.token_bytes, [10**6])
    with pytest.raises(ConstraintError, match="at least one EOS"):
        TokenVocab(vocab.token_bytes, [])


@pytest.fixture(scope="module")
def sentencepiece_tokenizer():
    """A real Llama-2-style tokenizer: '▁' for spaces, <0xNN> byte fallback, <s> </s> <unk>."""
    pieces = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        pieces[f"<0x{b:02X}>"] = len(pieces)
    words = ["▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "▁he", "▁hel", "▁hell", "▁hello", "▁w", "▁wo", "▁wor",
             "▁worl", "▁world"]
    for word in words:
        pieces[word] = len(pieces)
    merges = [("▁", "h"), ("▁h", "e"), ("▁he", "l"), ("▁hel", "l"), ("▁hell", "o"), ("▁", "w"), ("▁w", "o"),
              ("▁wo", "r"), ("▁wor", "l"), ("▁worl", "d")]
    backend = Tokenizer(models.BPE(vocab=pieces, merges=merges, byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>")


def test_sentencepiece_pieces_and_byte_fallback(sentencepiece_tokenizer):
    vocab = TokenVocab.from_tokenizer(sentencepiece_tokenizer)
    assert vocab.kind == "sentencepiece"
    assert vocab.eos_token_ids == (2,)
    assert vocab.token_bytes[:3] == (None, None, None)
    assert vocab.token_bytes[3 + 0x0A] == b"\n" and vocab.token_bytes[3 + 0xC3] == b"\xc3"
    assert vocab.token_bytes[sentencepiece_tokenizer.convert_tokens_to_ids("▁hello")] == b" hello"
    ids = sentencepiece_tokenizer.encode("hello wörld", add_special_tokens=False)
    assert vocab.decode_bytes(ids) == " hello wörld".encode()


def test_sentencepiece_vocab_drives_a_regex(sentencepiece_tokenizer):
    vocab = TokenVocab.from_tokenizer(sentencepiece_tokenizer)
    pattern = r"( hello| wörld)+"
    fsm = compile_regex(pattern, vocab)
    for seed in range(5):
        text = check_walk(pattern, vocab, walk_fsm(fsm, vocab, random.Random(seed), free_steps=6))
        assert re.fullmatch(pattern, text)
