"""Splitting one speculative reply into a turn's variables, and reusing text generated ahead (pure logic).

The calls to a real API are covered in test_openai_backend.py (character generation against `sgnb serve`).
"""

from __future__ import annotations

import pytest

from sgnb.lang.backends.api_speculative import ChatSpecTurn, CompletionSpeculator, SpecGen, match_turn
from sgnb.lang.backends.base import SamplingSpec
from sgnb.lang.backends.errors import UnsupportedFeatureError

CHARACTER = ["Name:", SpecGen("name", ["\n"]), "\nBirthday:", SpecGen("birthday", ["\n"]), "\nJob:",
             SpecGen("job", ["\n"])]


def test_reply_in_the_turns_format_splits_into_its_variables():
    reply = "Name: Ada Lovelace\nBirthday: December 10, 1815\nJob: Mathematician\n\nShe wrote the first program."
    assert match_turn(CHARACTER, reply) == [
        (None, "Name:"), ("name", " Ada Lovelace"), (None, "\nBirthday:"), ("birthday", " December 10, 1815"),
        (None, "\nJob:"), ("job", " Mathematician"),
    ]


def test_reply_missing_a_constant_does_not_match():
    assert match_turn(CHARACTER, "Name: Ada\nBirthdate: 1815\nJob: Mathematician") is None
    assert match_turn(CHARACTER, "Sure! Name: Ada\nBirthday: 1815\nJob: x") is None


def test_last_gen_takes_the_rest_when_the_reply_ends_without_its_stop():
    matched = match_turn(CHARACTER, "Name: Ada\nBirthday: 1815\nJob: Mathematician and writer")
    assert matched[-1] == ("job", " Mathematician and writer")


def test_trailing_constant_cut_off_by_the_end_of_the_reply_still_matches():
    pieces = ["A:", SpecGen("a", ["\n"]), "\nThe end."]
    assert match_turn(pieces, "A: yes\nThe") == [(None, "A:"), ("a", " yes"), (None, "\nThe end.")]
    assert match_turn(pieces, "A: yes\nNot the end") is None


def test_gen_without_stop_ends_where_the_next_constant_starts():
    pieces = [SpecGen("city"), " is in ", SpecGen("country", ["."])]
    assert match_turn(pieces, "Paris is in France. Yes.") == [
        ("city", "Paris"), (None, " is in "), ("country", "France")]


def test_earliest_of_several_stop_strings_ends_a_gen():
    pieces = [SpecGen("x", ["\n", "."]), "\nY:", SpecGen("y", ["\n"])]
    assert match_turn(pieces, "one.\nY: two") is None  # stops at ".", and "\nY:" does not follow
    assert match_turn(pieces, "one\nY: two") == [("x", "one"), (None, "\nY:"), ("y", " two")]


def test_a_gen_whose_end_is_not_found_cannot_place_later_gens():
    assert match_turn([SpecGen("a", ["\n"]), "|", SpecGen("b")], "no newline here") is None


def test_chat_turn_records_pieces_in_program_order():
    turn = ChatSpecTurn(num_api_spec_tokens=64)
    turn.add_text("Name:")
    turn.add_gen("name", SamplingSpec(stop=["\n"], temperature=0.5, max_new_tokens=8))
    turn.add_text("")  # empty constants are dropped
    turn.add_text("\nJob:")
    turn.add_gen("job", SamplingSpec(stop=["\n"], temperature=0.5))
    assert turn.pieces == ["Name:", SpecGen("name", ["\n"]), "\nJob:", SpecGen("job", ["\n"])]
    call = turn.call_spec()
    assert call.stop == [] and call.max_new_tokens == 64 and call.temperature == 0.5


@pytest.mark.parametrize("kwargs", [{"regex": "[0-9]+"}, {"choices": ["a", "b"]}, {"dtype": int}, {"n": 2},
                                    {"json_schema": '{"type": "object"}'}])
def test_chat_turn_refuses_gens_it_cannot_split(kwargs):
    with pytest.raises(UnsupportedFeatureError):
        ChatSpecTurn(num_api_spec_tokens=16).add_gen("x", SamplingSpec(**kwargs))


def test_chat_turn_rejects_a_repeated_variable_and_bad_budgets():
    turn = ChatSpecTurn(num_api_spec_tokens=16)
    turn.add_gen("x", SamplingSpec())
    with pytest.raises(ValueError, match="twice"):
        turn.add_gen("x", SamplingSpec())
    with pytest.raises(ValueError, match="num_api_spec_tokens"):
        ChatSpecTurn(num_api_spec_tokens=0)
    with pytest.raises(ValueError, match="num_api_spec_tokens"):
        CompletionSpeculator(0)


def test_completion_speculation_is_consumed_by_matching_constants_and_dropped_otherwise():
    spec = CompletionSpeculator(64)
    spec.speculated_text = "\nBirthday: 1815\nJob: x"
    spec.fill("\nBirthday:")
    assert spec.speculated_text == " 1815\nJob: x"
    assert spec.take(["\n"]) == " 1815"
    assert spec.speculated_text == "\nJob: x"  # the stop string stays for the program's next constant
    spec.fill("\nAge:")
    assert spec.speculated_text == ""


def test_speculation_without_the_gens_stop_is_reused_only_if_the_model_ended_there():
    spec = CompletionSpeculator(64)
    spec.speculated_text = " Apple CEO."
    assert spec.take(["\n"]) is None  # cut by the token budget: the value may go on
    spec.is_model_done = True
    assert spec.take(["\n"]) == " Apple CEO." and spec.speculated_text == ""
    assert spec.take(["\n"]) is None  # nothing left: a new call decides
