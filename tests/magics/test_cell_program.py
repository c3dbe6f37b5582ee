"""Cells as programs without IPython: the IR they emit (traced, no model), signatures, and runs on the engine."""

from __future__ import annotations

import pytest

import sgnb as sgl
from sgnb.magics import SglEvalError, SglRuntimeError, compile_cell
from tests.magics.trace_helpers import describe, traced


# ------------------------------------------------------------------ emitted IR (tracing, no model)
def test_roles_become_begin_end_pairs_with_edge_whitespace_stripped():
    f = compile_cell("@system   Be brief.  \n\n@user\n  Hi {name}!\n\n@assistant {gen('reply', max_tokens=4)}\n",
                     "chat(name)")
    assert describe(traced(f, name="Ann")) == [
        "<system>", "Be brief.", "</system>", "<user>", "Hi ", "Ann", "!", "</user>", "<assistant>", "gen:reply",
        "</assistant>",
    ]


def test_leading_and_trailing_literal_whitespace_of_the_program_is_dropped():
    f = compile_cell("\n\n  Q: {q}\nA:\n\n", "f(q)")
    assert describe(traced(f, q=" x ")) == ["Q: ", " x ", "\nA:"]


def test_expression_values_are_never_stripped():
    f = compile_cell("@user {pad}x", "f(pad)")
    assert describe(traced(f, pad="  ")) == ["<user>", "  ", "x", "</user>"]


def test_unknown_parameters_are_placeholders_that_end_the_constant_prefix():
    f = compile_cell("Rules: be nice.\nArticle: {article}\n{gen('v')}", "judge(article)")
    nodes = traced(f)
    assert describe(nodes)[:2] == ["Rules: be nice.\nArticle: ", "Placeholder(arg:article)"]


def test_fork_and_generated_variable_reads_stop_the_trace():
    f = compile_cell("Intro\n{fork 2}{gen('x')}{join}", "f")
    trace = f.trace()
    assert describe(trace.nodes) == ["Intro\n"] and trace.stopped_by == "fork"
    g = compile_cell("A {gen('v', max_tokens=1)} {if v == 'y'}yes{end}", "g")
    assert "'v' in s" in g.trace().stopped_by


def test_loops_and_conditions_unroll_at_run_time():
    f = compile_cell("{for i in range(n)}{if i % 2}odd{else}even{end},{end}", "f(n)")
    assert "".join(describe(traced(f, n=3))) == "even,odd,even,"


def test_role_switches_inside_a_loop_build_a_conversation():
    f = compile_cell("@system S\n{for q in qs}\n@user {q}\n@assistant {gen('a')}\n{end}", "f(qs)")
    assert describe(traced(f, qs=["one", "two"])) == [
        "<system>", "S", "</system>", "<user>", "one", "</user>", "<assistant>", "gen:a", "</assistant>",
        "<user>", "two", "</user>", "<assistant>", "gen:a", "</assistant>",
    ]


# ------------------------------------------------------------------ on the engine
@pytest.mark.slow
def test_run_raises_evaluation_errors_with_positions(engine):
    f = compile_cell("ok\n{1 / zero}", "f(zero)", first_line=2)
    with pytest.raises(SglEvalError) as info:
        f.run(zero=0, backend=engine)
    assert (info.value.line, info.value.column) == (3, 2)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


@pytest.mark.slow
def test_generated_variables_are_visible_inside_comprehensions(engine):
    f = compile_cell('Sky blue? {select("v", ["yes", "no"])} {[v + suffix for suffix in "!?"]}', "f")
    state = f.run(backend=engine)
    assert state.text() == f"Sky blue? {state['v']} " + repr([state["v"] + "!", state["v"] + "?"])


@pytest.mark.slow
def test_sub_program_calls_append_to_the_same_state(engine):
    @sgl.function
    def signature_line(s, name):
        s += "-- " + name

    f = compile_cell("Dear {who},\nthanks.\n{signature_line(s, 'Bo')}", "letter(who)",
                     {"signature_line": signature_line})
    assert f.run(who="Al", backend=engine).text() == "Dear Al,\nthanks.\n-- Bo"


@pytest.mark.slow
def test_runtime_error_in_a_fork_child_points_at_the_childs_primitive(engine):
    f = compile_cell('Start\n{fork r in ["((", "(("]}\nPick: {gen("x", regex=r, max_tokens=2)}\n{join}\n',
                     "f", first_line=2, backend_factory=lambda: engine)
    state = f.run(stream=True)
    state.stream_executor.wait_finished()
    err = f.program.runtime_error(state)
    assert isinstance(err, SglRuntimeError)
    assert (err.line, err.column) == (4, 7)
    assert err.__cause__ is not None


@pytest.mark.slow
def test_runtime_error_is_not_blamed_on_a_primitive_when_something_else_failed(engine):
    ns = {"sgl": sgl}
    f = compile_cell('@user Hi {sgl.user_begin()} there {gen("x", max_tokens=1)}', "f", ns,
                     backend_factory=lambda: engine)
    state = f.run(stream=True)
    state.stream_executor.wait_finished()
    err = f.program.runtime_error(state)
    assert isinstance(err, SglRuntimeError) and "cannot open role 'user'" in err.message
    assert err.line is None  # the role expression failed, not the gen after it
