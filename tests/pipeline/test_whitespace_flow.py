"""The cell language's whitespace rules, resolved at export: what a literal keeps, and cells refused because
what it keeps depends on run time."""

from __future__ import annotations

import pytest

from tests.pipeline.codegen_cells import CELLS, readable, refusal

NOT_READABLE = {  # case -> (header, body, part of the reason)
    "value_then_whitespace_at_role_start": (
        "f(ctx, q)", "@user\n{ctx}\n\nQuestion: {q}\n@assistant {gen('a')}", "may or may not start a role"),
    "whitespace_stripped_on_some_paths_only": (
        "f(c)", "@user Hello {if c}there{end} \n@assistant hi", "some paths only"),
    "loop_may_run_zero_times_before_a_role": (
        "f(xs)", "@user Items:\n{for x in xs}\n- {x}\n{end}\n@assistant ok", "some paths only"),
}


def test_the_whitespace_rules_are_resolved_at_export():
    code = readable(*CELLS["whitespace_at_role_edges"][:2])
    assert '    s += sgnb.system("Lots of space.")' in code
    assert '    s += sgnb.user(f"Value: {a}   and {b}")' in code
    # after a gen the literal keeps its leading spaces; the program's end strips its trailing ones
    assert '    s += sgnb.assistant(sgnb.gen("r", max_tokens=2) + "   \\n  trailing")' in code


@pytest.mark.parametrize("case", sorted(NOT_READABLE))
def test_cells_whose_whitespace_depends_on_run_time_are_refused_with_the_reason(case):
    header, body, reason = NOT_READABLE[case]
    assert reason in refusal(header, body)
