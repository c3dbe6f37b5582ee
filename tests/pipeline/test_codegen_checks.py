"""Cells whose structure plain statements cannot express are refused, with the reason."""

from __future__ import annotations

import pytest

from tests.pipeline.codegen_cells import refusal

NOT_READABLE = {  # case -> (header, body, part of the reason)
    "role_inside_a_loop": ("f(xs)", "{for x in xs}\n@user {x}\n@assistant ok\n{end}", "role line inside"),
    "loop_variable_outlives_its_loop": ("f(xs)", "@user {for x in xs}{x}{end} and {x}", "used outside its loop"),
}


@pytest.mark.parametrize("case", sorted(NOT_READABLE))
def test_cells_that_depend_on_run_time_are_refused_with_the_reason(case):
    header, body, reason = NOT_READABLE[case]
    assert reason in refusal(header, body)


def test_a_generated_name_that_is_also_a_notebook_name_is_refused():
    assert "also a notebook" in refusal("f", "@user {answer} {gen('answer')}", {"answer"})
