"""Cell expressions rewritten for the generated function: state variables, `s`, primitives, local names."""

from __future__ import annotations

import ast

import pytest

from sgnb.pipeline.errors import NotReadable
from sgnb.pipeline.name_rewrite import Rewrite, Scope, classify


def _scope(module_names: frozenset[str] = frozenset()) -> Scope:
    return Scope(params=frozenset({"q"}), var_names=frozenset({"answer"}), module_names=module_names)


def test_generated_variables_read_the_state_and_primitives_get_the_module_prefix():
    rewrite = Rewrite(_scope(), "branch", {"i"})
    assert rewrite("len(answer) + i + q + gen('x')") == "len(branch['answer']) + i + q + sgnb.gen('x')"
    assert rewrite.reads_state


def test_parameters_loop_variables_and_notebook_names_keep_their_names():
    rewrite = Rewrite(_scope(frozenset({"select"})), "s", {"answer"})
    assert rewrite("select(q, answer)") == "select(q, answer)"  # a notebook `select` and a loop's `answer`
    assert not rewrite.reads_state


def test_s_means_the_current_state():
    assert Rewrite(_scope(), "branch2", set())("helper(s)") == "helper(branch2)"


def test_offsets_count_characters_after_non_ascii_text():
    assert Rewrite(_scope(), "s", set())('"é✓" + answer') == "\"é✓\" + s['answer']"


def test_multi_line_expressions_are_parenthesised():
    assert Rewrite(_scope(), "s", set())("[answer,\n q]") == "([s['answer'],\n q])"


def test_a_program_name_rebound_inside_the_expression_is_refused():
    with pytest.raises(NotReadable, match="bound inside the expression"):
        Rewrite(_scope(), "s", set())("[answer for answer in q]")


@pytest.mark.parametrize(("source", "bound", "kind"), [
    ("gen('x')", set(), "primitive"),
    ("sgl.select('x', choices=['a'])", set(), "primitive"),
    ("gen('x')", {"gen"}, "value"),  # a loop variable named like a primitive
    ("helper(s, q)", set(), "subprogram"),
    ("q", set(), "inline"),
    ("answer", set(), "inline"),
    ("len(q)", set(), "value"),
])
def test_expressions_are_classified_by_how_they_are_emitted(source, bound, kind):
    assert classify(ast.parse(source, mode="eval"), _scope(), bound) == kind


def test_fresh_names_avoid_taken_names_and_keywords():
    scope = _scope()
    scope.taken.add("forks")
    assert [scope.fresh("forks"), scope.fresh("forks"), scope.fresh("if")] == ["forks2", "forks3", "if2"]
