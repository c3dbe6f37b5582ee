"""compile_cell / CellFunction: signatures, namespaces, defaults, run and run_batch, error positions."""

from __future__ import annotations

import inspect

import pytest

from sgnb.magics import SglSyntaxError, compile_cell
from tests.magics.trace_helpers import describe, traced


# ------------------------------------------------------------------ signatures and namespaces
def test_header_declares_the_signature_with_defaults_from_the_namespace():
    f = compile_cell("{a}-{b}-{c}", "f(a, b=default_b, *, c='z')", {"default_b": 5})
    assert str(f.params_signature) == "(a, b=5, *, c='z')"
    assert list(inspect.signature(f.func).parameters) == ["s", "a", "b", "c"]
    assert describe(traced(f, a=1, b=2, c="y")) == ["1", "-", "2", "-", "y"]
    assert describe(traced(f.bind(c="x"), a=0, b=0)) == ["0", "-", "0", "-", "x"]


def test_anonymous_program_takes_any_keywords():
    f = compile_cell("{x}{y}")
    assert describe(traced(f, x=1, y=2)) == ["1", "2"]


def test_namespace_is_read_live_and_parameters_win():
    ns = {"who": "notebook", "shout": str.upper}
    f = compile_cell("{shout(who)} {[who + s for s in suffixes]}", "f(suffixes)", ns)
    assert describe(traced(f, suffixes=["!"]))[0] == "NOTEBOOK"
    ns["who"] = "changed"
    assert describe(traced(f, suffixes=["?"])) == ["CHANGED", " ", "['changed?']"]
    g = compile_cell("{who}", "g(who)", ns)
    assert describe(traced(g, who="param")) == ["param"]


def test_failing_default_is_a_header_error():
    with pytest.raises(SglSyntaxError) as info:
        compile_cell("x", "f(n=missing_name)", {})
    assert "a parameter default failed: NameError" in info.value.message


# ------------------------------------------------------------------ on the engine
@pytest.mark.slow
def test_defaults_and_bound_arguments_apply_when_running(engine):
    f = compile_cell("{a}-{b}-{c}", "f(a, b=default_b, *, c='z')", {"default_b": 5})
    assert f.run(a=1, backend=engine).text() == "1-5-z"
    assert f.bind(c="y").run(a=0, backend=engine).text() == "0-5-y"


@pytest.mark.slow
def test_run_batch_and_defaults(engine):
    f = compile_cell('Say {word}: {gen("echo", stop="\\n")}', "echo(word)",
                     run_defaults={"temperature": 0, "max_new_tokens": 2}, backend_factory=lambda: engine)
    states = f.run_batch([{"word": "a"}, {"word": "b"}])
    assert [s.get_meta_info("echo")["completion_tokens"] <= 2 for s in states] == [True, True]
    assert f.run(word="a").text() == states[0].text()  # greedy: same result as in the batch
