"""The token index against independent oracles, token-level liveness, and the FSM caches."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
import regex as partial_re

from sgnb.constrained import ConstraintError, TokenVocab, clear_memory_cache, compile_regex
from sgnb.constrained.fsm_cache import fsm_cache_dir, fsm_cache_key, load_arrays, save_arrays


def _oracle_allowed(pattern: str, prefix: str, vocab: TokenVocab) -> set[int]:
    """Tokens whose text keeps `prefix` a prefix of a match, by the `regex` module's partial
    matching over the whole vocabulary (tokens that are not whole UTF-8 text are skipped)."""
    compiled = partial_re.compile(pattern)
    allowed = set()
    for token, data in enumerate(vocab.token_bytes):
        if not data:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if compiled.fullmatch(prefix + text, partial=True):
            allowed.add(token)
    return allowed


def _utf8_tokens(ids, vocab: TokenVocab) -> set[int]:
    out = set()
    for token in ids:
        data = vocab.token_bytes[token]
        if not data:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        out.add(token)
    return out


@pytest.mark.parametrize(
    "pattern, prefix",
    [
        (r"[a-z]+ [0-9]{2}", ""),
        (r"[a-z]+ [0-9]{2}", "abc"),
        (r'"[^"]*",', '"x'),
        (r"(é|日本)+!", "日"),
        (r"\d+\.\d", "12"),
        (r"(?:true|false|null)", "n"),
    ],
)
def test_allowed_tokens_equal_partial_match_oracle_over_the_whole_vocab(pattern, prefix, vocab):
    fsm = compile_regex(pattern, vocab)
    state = fsm.advance_bytes(fsm.initial_state, prefix.encode())
    assert state >= 0
    got = _utf8_tokens(fsm.allowed_token_ids(state).tolist(), vocab)
    assert got == _oracle_allowed(pattern, prefix, vocab)


def test_next_states_equal_byte_walks_for_every_allowed_token(vocab):
    fsm = compile_regex(r'\{"k":"[^"]{0,3}"\}', vocab)
    for state in range(fsm.num_states):
        for token, nxt in zip(fsm.allowed_token_ids(state).tolist(), fsm.allowed_next_states(state).tolist()):
            if token in vocab.eos_token_ids:
                assert nxt == state and fsm.is_accepting(state)
            else:
                assert fsm.advance_bytes(state, vocab.token_bytes[token]) == nxt


def test_tokens_leading_to_token_dead_states_are_pruned(vocab):
    # a vocabulary without any token containing 'q': "xq" can no longer be completed
    no_q = TokenVocab([None if b and b"q" in b else b for b in vocab.token_bytes], vocab.eos_token_ids)
    fsm = compile_regex(r"xq|xyz", no_q)
    state = fsm.initial_state
    for token in fsm.allowed_token_ids(state).tolist():
        data = no_q.token_bytes[token]
        assert b"xyz".startswith(data) or data.startswith(b"xyz")
    with pytest.raises(ConstraintError, match=re.escape("no sequence of tokens in the vocabulary can complete 'a+q'")):
        compile_regex(r"a+q", no_q)


def test_eos_ids_come_from_the_vocab(tokenizer):
    vocab = TokenVocab.from_tokenizer(tokenizer, eos_token_ids=[0, 2])
    fsm = compile_regex(r"a", vocab)
    end = fsm.advance_bytes(fsm.initial_state, b"a")
    assert fsm.allowed_token_ids(end).tolist() == [0, 2]
    assert fsm.is_finished(end)


def test_memory_cache_returns_the_same_fsm(vocab):
    first = compile_regex(r"[xyz]{2,4}", vocab)
    assert compile_regex(r"[xyz]{2,4}", vocab) is first


def test_disk_cache_reloads_an_identical_fsm(vocab):
    pattern = r"disk-[0-9]{1,3}"
    fresh = compile_regex(pattern, vocab)
    path = fsm_cache_dir() / f"{fsm_cache_key(pattern, vocab.fingerprint)}.npz"
    assert path.is_file()
    clear_memory_cache()
    loaded = compile_regex(pattern, vocab)
    assert loaded is not fresh and loaded.stats["loaded_from_disk"]
    assert loaded.num_states == fresh.num_states and loaded.initial_state == fresh.initial_state
    for state in range(fresh.num_states):
        assert np.array_equal(loaded.allowed_token_ids(state), fresh.allowed_token_ids(state))
        assert np.array_equal(loaded.allowed_next_states(state), fresh.allowed_next_states(state))
        assert loaded.forced_bytes(state) == fresh.forced_bytes(state)


def test_corrupt_cache_file_is_recompiled_and_rewritten(vocab):
    pattern = r"corrupt-[ab]+"
    path = fsm_cache_dir() / f"{fsm_cache_key(pattern, vocab.fingerprint)}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an npz file")
    clear_memory_cache()
    fsm = compile_regex(pattern, vocab)
    assert not fsm.stats["loaded_from_disk"]
    assert load_arrays(path) is not None


def test_concurrent_writers_never_expose_a_partial_file(tmp_path):
    path = tmp_path / "fsm" / "shared.npz"
    payloads = [np.full(200_000, i, dtype=np.int32) for i in range(6)]
    errors: list[str] = []

    def writer(i: int) -> None:
        for _ in range(5):
            save_arrays(path, {"data": payloads[i]})

    def reader() -> None:
        for _ in range(40):
            arrays = load_arrays(path)
            if arrays is None:
                continue
            data = arrays["data"]
            if data.size != 200_000 or len(np.unique(data)) != 1:
                errors.append("torn read")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"], "temporary files left behind"
    assert load_arrays(path)["data"].size == 200_000


def test_concurrent_compiles_of_one_pattern_share_one_result(vocab):
    clear_memory_cache()
    results = []
    threads = [threading.Thread(target=lambda: results.append(compile_regex(r"thread-[0-9]+", vocab)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r is results[0] for r in results)


def test_lru_cache_evicts_by_count_and_weight():
    from sgnb.constrained.fsm_cache import LRUCache

    cache: LRUCache[str, int] = LRUCache(max_entries=3, max_weight=10, weigh=lambda v: v)
    for key, value in [("a", 1), ("b", 2), ("c", 3)]:
        cache.put(key, value)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("d", 1)  # over 3 entries: evicts b, the least recent
    assert cache.get("b") is None and len(cache) == 3
    cache.put("e", 8)  # 4 entries: evicts c; a + d + e weigh 10, within the budget
    assert cache.get("c") is None and len(cache) == 3
    cache.put("f", 2)  # evicts a (count), then d (weight 11 > 10)
    assert [cache.get(k) for k in "adef"] == [None, None, 8, 2]
    cache.put("huge", 50)  # heavier than the budget alone: kept, everything else goes
    assert len(cache) == 1 and cache.get("huge") == 50


def test_empty_string_pattern_finishes_at_once(vocab):
    fsm = compile_regex("", vocab)
    assert fsm.is_finished(fsm.initial_state)
    assert fsm.allowed_token_ids(fsm.initial_state).tolist() == list(vocab.eos_token_ids)
