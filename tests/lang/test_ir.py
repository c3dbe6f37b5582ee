"""The primitives: SGLang names and arguments, concatenation, and clear errors for bad arguments."""

from __future__ import annotations

import pytest

import sgnb as sgl
from sgnb.lang.backends.base import SamplingSpec
from sgnb.lang.ir import Concat, Constant, Gen, RoleBegin, RoleEnd, Select


def test_gen_keeps_only_given_arguments_with_engine_names():
    g = sgl.gen("answer", max_tokens=7, min_tokens=2, stop="\n", temperature=0, top_k=5, return_logprob=True)
    assert isinstance(g, Gen) and g.name == "answer"
    assert g.sampling == {"max_new_tokens": 7, "min_new_tokens": 2, "stop": ["\n"], "temperature": 0,
                          "top_k": 5, "return_logprob": True}
    spec = g.resolve(SamplingSpec(max_new_tokens=128, temperature=1.0, top_p=0.9))
    assert (spec.max_new_tokens, spec.temperature, spec.top_p, spec.top_k) == (7, 0, 0.9, 5)


def test_gen_with_choices_is_a_select():
    s = sgl.gen("pick", choices=["a", "b"])
    assert isinstance(s, Select) and s.choices == ["a", "b"] and s.choices_method is sgl.token_length_normalized


def test_gen_int_and_gen_string_set_dtype():
    assert sgl.gen_int("n").sampling["dtype"] is int
    assert sgl.gen_string("s", max_tokens=3).sampling == {"dtype": str, "max_new_tokens": 3}
    assert sgl.gen().name is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_tokens": -1}, "max_tokens must be >= 0"),
        ({"temperature": -0.5}, "temperature must be >= 0"),
        ({"top_p": 0}, "top_p must be in"),
        ({"n": 0}, "n must be >= 1"),
        ({"dtype": list}, "dtype"),
        ({"regex": "a+", "json_schema": "{}"}, "at most one of"),
        ({"regex": "a+", "dtype": int}, "at most one of"),
        ({"ebnf": 'root ::= "a"', "dtype": int}, "at most one of regex, json_schema, ebnf, lark"),
        ({"lark": 'start: "a"', "regex": "a+"}, "at most one of"),
        ({"ebnf": ["root ::= x"]}, "ebnf must be a grammar string"),
    ],
)
def test_gen_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sgl.gen("x", **kwargs)


def test_select_needs_choices():
    with pytest.raises(ValueError, match=r"select\('x'\) needs a non-empty list of choices, got \[\]"):
        sgl.select("x", [])
    with pytest.raises(ValueError, match="needs a non-empty list of choices, got None"):
        sgl.select("x")
    with pytest.raises(ValueError, match="non-empty list of choices, got 'ab'"):
        sgl.select("x", "ab")
    with pytest.raises(ValueError, match="unknown choices_method 'best'"):
        sgl.select("x", ["a"], choices_method="best")
    assert sgl.select("x", ["a"], choices_method="greedy_token_selection").choices_method is sgl.greedy_token_selection


def test_names_must_be_strings():
    with pytest.raises(ValueError, match="gen name must be a non-empty string"):
        sgl.gen("")
    with pytest.raises(ValueError, match="select name"):
        sgl.select(3, ["a"])


def test_concatenation_flattens_in_order():
    expr = "Q: " + sgl.gen("a") + "\n" + sgl.select("b", ["x", "y"]) + 5
    items = expr.flatten()
    assert [type(i) for i in items] == [Constant, Gen, Constant, Select, Constant]
    assert items[0].value == "Q: " and items[-1].value == "5"


def test_roles_wrap_their_content():
    expr = sgl.user("hi" + sgl.gen("x"))
    assert isinstance(expr, Concat)
    kinds = [type(i) for i in expr.flatten()]
    assert kinds == [RoleBegin, Constant, Gen, RoleEnd]
    assert [type(i) for i in sgl.assistant().flatten()] == [RoleBegin, RoleEnd]
    assert sgl.system_begin().role == "system" and sgl.assistant_end().role == "assistant"


def test_image_and_video_validate():
    with pytest.raises(ValueError, match="image"):
        sgl.image(None)
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        sgl.video("clip.mp4", 0)
    assert sgl.video("clip.mp4", 4).num_frames == 4


def test_callables_cannot_be_appended():
    with pytest.raises(TypeError, match="only accepted by forks"):
        "x" + sgl.gen("a") + (lambda i: i)
