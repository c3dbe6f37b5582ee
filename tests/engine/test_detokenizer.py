"""Incremental detokenization on the real SmolLM2 tokenizer, and stop-string matching."""

from __future__ import annotations

import random

import pytest

from sgnb.engine.detokenizer import IncrementalDetokenizer, find_stop, held_back_len

MULTI_BYTE_TEXTS = [
    "Hi 👋🏽 there 🎉!",
    "日本語のテキスト、中文字符。",
    "naïve café — “quoted” 🇫🇷 flag",
    "math ∑∫ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and a\u200db joiner",
    "mixed: 你好, world! 🚀🚀 end",
]


@pytest.fixture(scope="module")
def tokenizer(smollm2_path):
    from sgnb.engine.tokenizer import load_tokenizer

    return load_tokenizer(smollm2_path)


def decode_incrementally(tokenizer, ids: list[int], skip_special_tokens: bool = True) -> tuple[str, list[str]]:
    """Feed the ids one at a time as the engine does; returns (final text, deltas before the flush)."""
    detok = IncrementalDetokenizer(tokenizer, skip_special_tokens)
    deltas = [detok.update(ids[:n]) for n in range(1, len(ids) + 1)]
    detok.flush(ids)
    return detok.text, deltas


@pytest.mark.parametrize("text", MULTI_BYTE_TEXTS)
def test_incremental_text_equals_full_decode_for_multi_byte_characters(tokenizer, text):
    ids = tokenizer.encode(text)
    assert any(tokenizer.decode([i]) == "\ufffd" for i in ids)    # the text really splits characters
    final, deltas = decode_incrementally(tokenizer, ids)
    assert final == tokenizer.decode(ids, skip_special_tokens=True) == text
    assert "".join(deltas) == text


@pytest.mark.parametrize("text", MULTI_BYTE_TEXTS)
def test_deltas_never_contain_half_a_character(tokenizer, text):
    _, deltas = decode_incrementally(tokenizer, tokenizer.encode(text))
    assert all("\ufffd" not in d for d in deltas)


def test_text_so_far_is_always_a_prefix_of_the_final_text(tokenizer):
    text = " ".join(MULTI_BYTE_TEXTS)
    ids = tokenizer.encode(text)
    detok = IncrementalDetokenizer(tokenizer)
    for n in range(1, len(ids) + 1):
        detok.update(ids[:n])
        assert text.startswith(detok.text)


def test_flush_emits_an_incomplete_trailing_character(tokenizer):
    ids = tokenizer.encode("ok 🎉")[:-1]          # the emoji's last byte is missing
    detok = IncrementalDetokenizer(tokenizer)
    for n in range(1, len(ids) + 1):
        detok.update(ids[:n])
    assert detok.text == "ok"
    rest = detok.flush(ids)
    assert rest.endswith("\ufffd")
    assert detok.text == tokenizer.decode(ids)


def test_random_byte_soup_decodes_like_a_full_decode(tokenizer):
    rng = random.Random(1234)
    byte_tokens = [i for i in range(tokenizer.vocab_size) if tokenizer.decode([i]) == "\ufffd"]
    assert len(byte_tokens) > 100
    for _ in range(100):
        ids = [rng.choice(byte_tokens) if rng.random() < 0.6 else rng.randrange(tokenizer.vocab_size)
               for _ in range(rng.randint(1, 24))]
        final, _ = decode_incrementally(tokenizer, ids)
        assert final == tokenizer.decode(ids, skip_special_tokens=True), ids


def test_special_tokens_are_skipped_unless_asked_for(tokenizer):
    ids = tokenizer.encode("Done.") + [tokenizer.eos_token_id]
    assert decode_incrementally(tokenizer, ids)[0] == "Done."
    kept = decode_incrementally(tokenizer, ids, skip_special_tokens=False)[0]
    assert kept == "Done." + tokenizer.decode([tokenizer.eos_token_id])


# ---------------------------------------------------------------------------------- find_stop


@pytest.mark.parametrize(("text", "stops", "new_len", "expected"), [
    ("Hello world", ["world"], 5, (6, "world")),          # inside the new text
    ("Hello world", ["o w"], 5, (4, "o w")),              # spans the old/new boundary ("Hello " | "world")
    ("Hello world", ["o w"], 4, None),                    # already wholly in the old text: checked before
    ("abcSTOPdef", ["STOP"], 3, None),
    ("abcSTOPdef", ["STOP"], 4, (3, "STOP")),             # its last char is new
    ("a.b,c", [",", "."], 5, (1, ".")),                   # the earliest of several stops wins
    ("a.b,c", [",", "."], 2, (3, ",")),
    ("no stop here", ["\n", "###"], 12, None),
    ("x\n\ny", ["\n\n"], 2, (1, "\n\n")),
])
def test_find_stop(text, stops, new_len, expected):
    assert find_stop(text, stops, new_len) == expected


@pytest.mark.parametrize(("text", "stops", "expected"), [
    ("Hello wor", ["world"], 3),          # "wor" may still become "world"
    ("Hello w", ["world"], 1),
    ("Hello", ["world"], 0),
    ("Hello world", ["world"], 0),        # a whole stop is find_stop's job, not held back
    ("ab", ["abc", "bcd"], 2),            # the longest partial match over all stops
    ("xab", ["abc", "b"], 2),
    ("x.", ["."], 0),                     # a one-character stop never needs holding
    ("", ["abc"], 0),
    ("a", ["abc"], 1),
    ("aXa", ["aXaXb"], 3),
    ("abc", [], 0),
])
def test_held_back_len(text, stops, expected):
    assert held_back_len(text, stops) == expected
