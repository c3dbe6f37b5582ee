"""Jump-forward planning: forced tokens keep token boundaries safe at both ends."""

from __future__ import annotations

import bisect
import json
import random

import jsonschema
import pytest

from sgnb.constrained import TokenFSM, TokenVocab, compile_regex, plan_jump, schema_to_regex
from tests.constrained.json_schemas import SCHEMAS
from tests.constrained.regex_strategies import distances_to_accept


_SORTED: dict[str, tuple[list[bytes], list[int]]] = {}


def _longer_legal_token(fsm: TokenFSM, vocab: TokenVocab, state: int, rest: bytes) -> bool:
    """Oracle: is some vocabulary token that starts with `rest` and goes past it allowed in `state`?
    (Scans the vocabulary's tokens with that prefix, independently of max_token_len.)"""
    if vocab.fingerprint not in _SORTED:
        pairs = sorted((data, token) for token, data in enumerate(vocab.token_bytes) if data)
        _SORTED[vocab.fingerprint] = ([p[0] for p in pairs], [p[1] for p in pairs])
    blobs, tokens = _SORTED[vocab.fingerprint]
    allowed = fsm.allowed_token_ids(state).tolist()
    allowed_set = set(allowed)
    i = bisect.bisect_left(blobs, rest)
    while i < len(blobs) and blobs[i].startswith(rest):
        if len(blobs[i]) > len(rest) and tokens[i] in allowed_set:
            return True
        i += 1
    return False


def _check_plan(fsm: TokenFSM, vocab: TokenVocab, state: int, plan, max_held_back: int = 4) -> None:
    appended = vocab.decode_bytes(plan.token_ids)
    assert plan.forced_bytes.startswith(appended)
    assert plan.end_state == fsm.advance_tokens(state, plan.token_ids) == fsm.advance_bytes(state, appended)
    if not plan.forced_bytes.isascii():
        return
    if plan.num_held_back:  # the first held-back token really could merge across the end
        assert _longer_legal_token(fsm, vocab, plan.end_state, plan.forced_bytes[len(appended):])
    elif appended == plan.forced_bytes:  # nothing held back: no token in the window could merge
        offset, current = 0, state
        for i, token in enumerate(plan.token_ids):
            if i >= len(plan.token_ids) - max_held_back:
                assert not _longer_legal_token(fsm, vocab, current, plan.forced_bytes[offset:])
            offset += len(vocab.token_bytes[token])
            current = fsm.next_state(current, token)


def test_forced_json_keys_are_appended_as_the_tokenizer_splits_them(vocab, tokenizer):
    fsm = compile_regex(schema_to_regex(SCHEMAS["person"]), vocab)
    plan = plan_jump(fsm, fsm.initial_state, [], tokenizer, vocab)
    assert plan.forced_bytes == b'{"name":"'
    expected = tokenizer.encode('{"name":"', add_special_tokens=False)
    if _longer_legal_token(fsm, vocab, fsm.advance_tokens(fsm.initial_state, expected[:-1]), b'":"'):
        assert plan.token_ids == tuple(expected[:-1]) and plan.num_held_back == 1
    else:
        assert plan.token_ids == tuple(expected) and plan.num_held_back == 0
    # what is held back is the rest of the joint tokenization: the draft the engine may verify
    assert plan.token_ids + plan.held_back_ids == tuple(expected)
    _check_plan(fsm, vocab, fsm.initial_state, plan)


def test_tokens_a_longer_legal_token_could_merge_into_are_held_back(vocab, tokenizer):
    fsm = compile_regex(r"(hello|help) world", vocab)
    plan = plan_jump(fsm, fsm.initial_state, [], tokenizer, vocab)
    assert plan.forced_bytes == b"hel"
    assert _longer_legal_token(fsm, vocab, fsm.initial_state, b"hel")  # "hello" / "help" are tokens
    assert plan.token_ids == () and plan.num_held_back == 1
    assert plan.held_back_ids == tuple(tokenizer.encode("hel", add_special_tokens=False))
    assert plan.end_state == fsm.initial_state and "held back" in plan.reason


def test_no_jump_when_a_token_would_merge_with_the_existing_output(vocab, tokenizer):
    fsm = compile_regex(r'\{"a":"[a-z]*","bc":1\}', vocab)
    quote = tokenizer.convert_tokens_to_ids('"')
    output = tokenizer.encode('{"a":"xy', add_special_tokens=False) + [quote]
    state = fsm.advance_tokens(fsm.initial_state, output)
    assert state >= 0 and fsm.forced_bytes(state)[0] == b',"bc":1}'
    assert tokenizer.encode('xy","bc', add_special_tokens=False)[1] == tokenizer.convert_tokens_to_ids('","')
    plan = plan_jump(fsm, state, output, tokenizer, vocab)
    assert plan.token_ids == () and plan.end_state == state
    assert "merge across the end of the existing output" in plan.reason


def test_jump_after_a_clean_boundary_keeps_the_output_tokens(vocab, tokenizer):
    fsm = compile_regex(r'\{"name":"[A-Za-z]+","age":[0-9]+\}', vocab)
    output = tokenizer.encode('{"name":"John', add_special_tokens=False) + [tokenizer.convert_tokens_to_ids('","')]
    state = fsm.advance_tokens(fsm.initial_state, output)
    plan = plan_jump(fsm, state, output, tokenizer, vocab)
    assert plan.forced_bytes == b'age":'
    joint = tokenizer.encode('John","age":', add_special_tokens=False)
    forced_part = joint[joint.index(tokenizer.convert_tokens_to_ids('","')) + 1 :]
    assert list(plan.token_ids) == forced_part[: len(forced_part) - plan.num_held_back]
    assert plan.num_tokens >= 1
    _check_plan(fsm, vocab, state, plan)


def test_forced_bytes_inside_a_character_are_not_jumped(vocab, tokenizer):
    fsm = compile_regex(r"(é|è)x", vocab)
    assert fsm.forced_bytes(fsm.initial_state)[0] == b"\xc3"
    plan = plan_jump(fsm, fsm.initial_state, [], tokenizer, vocab)
    assert plan.token_ids == () and "inside a UTF-8 character" in plan.reason


def test_no_forced_bytes_means_no_plan(vocab, tokenizer):
    fsm = compile_regex(r"[ab]c", vocab)
    plan = plan_jump(fsm, fsm.initial_state, [], tokenizer, vocab)
    assert plan == type(plan)((), 0, b"", fsm.initial_state, "no forced bytes")


@pytest.mark.parametrize("name", ["character", "city", "nested", "pydantic_customer", "one_of", "enum_strings"])
def test_decoding_with_jumps_stays_valid(name, vocab, tokenizer):
    schema = SCHEMAS[name]
    fsm = compile_regex(schema_to_regex(schema), vocab)
    dist = distances_to_accept(fsm)
    eos = set(vocab.eos_token_ids)
    totals = {"forced": 0, "sampled": 0, "held_back": 0}
    for seed in range(3):
        rng = random.Random(seed)
        state, output = fsm.initial_state, []
        for step in range(300):
            plan = plan_jump(fsm, state, output, tokenizer, vocab)
            if plan.token_ids:
                _check_plan(fsm, vocab, state, plan)
                output.extend(plan.token_ids)
                state = plan.end_state
                totals["forced"] += plan.num_tokens
                totals["held_back"] += plan.num_held_back
                continue
            allowed = fsm.allowed_token_ids(state)
            nexts = fsm.allowed_next_states(state)
            if step >= 10:  # steer to the end
                closer = allowed[(dist[nexts] < dist[state]) | [t in eos for t in allowed.tolist()]]
                allowed = closer if closer.size else allowed
            token = int(allowed[rng.randrange(allowed.size)])
            if token in eos:
                break
            output.append(token)
            state = fsm.next_state(state, token)
            totals["sampled"] += 1
        assert fsm.is_accepting(state)
        value = json.loads(vocab.decode_bytes(output).decode("utf-8"))
        schema_dict = schema.model_json_schema() if isinstance(schema, type) else schema
        jsonschema.Draft202012Validator(schema_dict).validate(value)
    assert totals["forced"] > 0
