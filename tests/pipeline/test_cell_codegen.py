"""`%%sgl` cells written as plain Python: the generated program does exactly what the cell does.

Each cell runs twice on SmolLM2 at temperature 0: as the magic runs it (`compile_cell`) and as the exported
`@sgnb.function`; the texts and variables must be identical. Cells whose whitespace or names depend on run
time are refused (`NotReadable`), and the exporter embeds them instead.
"""

from __future__ import annotations

import pytest

import sgnb
from sgnb.magics import compile_cell, parse_cell
from sgnb.pipeline.cell_codegen import NotReadable, readable_program

EXAMPLES = [("2+2?", "4"), ("Capital of France?", "Paris")]

CELLS = {
    "judge": ("judge(article)", """\
@system You are a strict reviewer.
@user Judge this article:
{article}
@assistant
{fork d in ["clarity", "accuracy"]}
Judgement on {d}: {gen("judgement", max_tokens=3, stop="\\n")}
{join}
Overall score (1-10): {gen("score", regex=r"10|[1-9]")}""", {"article": "Cats are mammals."}),
    "fewshot": ("fewshot(question)", """\
@user
Answer briefly.
{for q, a in EXAMPLES}
Q: {q}
A: {a}
{end}
Q: {question}
@assistant
A: {gen("answer", max_tokens=4)}
{if len(answer) > 3}
Sure? {select("sure", choices=["yes", "no"])}
{else}
Short.
{end}""", {"question": "3+3?"}),
    "nested_forks": ("nested(topic)", """\
@user Ideas about {topic}.
@assistant
Plan: {gen("plan", max_tokens=3)}
{fork i in range(2)}
Idea {i}: {gen("idea", max_tokens=2)}
{fork 2}
 - detail {gen("detail", max_tokens=2)}
{join}
{join}
Done: {plan}""", {"topic": "tea"}),
    "quotes_and_braces": ("quote(x)", """\
@user Say "hi" to {x} with {{braces}}, a \\ backslash and 'single' quotes
@assistant {gen("r", max_tokens=2)}""", {"x": "Bob"}),
    "whitespace_at_role_edges": ("edges(a, b=2)", """\


@system    Lots of space.   \t

@user
  Value: {a}   and {b}  {# a comment #}   

@assistant   {gen("r", max_tokens=2)}   
  trailing   """, {"a": "x"}),
    "loop_between_texts": ("listing(items)", """\
@user Items:
{for it in items}
- {it}
{end}
That is all.
@assistant {gen("r", max_tokens=2)}""", {"items": ["pen", "ink"]}),
    "join_concat_and_dynamic_fork": ("concat(names)", """\
@user Greet them.
@assistant
{fork n in names}
Hello {n}!{gen("g", max_tokens=2)}
{join concat}
End.""", {"names": ["Ann", "Bo"]}),
}

NOT_READABLE = {
    "value_then_whitespace_at_role_start": ("f(ctx, q)", "@user\n{ctx}\n\nQuestion: {q}\n@assistant {gen('a')}"),
    "role_inside_a_loop": ("f(xs)", "{for x in xs}\n@user {x}\n@assistant ok\n{end}"),
    "loop_variable_outlives_its_loop": ("f(xs)", "@user {for x in xs}{x}{end} and {x}"),
    "whitespace_stripped_on_some_paths_only": ("f(c)", "@user Hello {if c}there{end} \n@assistant hi"),
    "loop_may_run_zero_times_before_a_role": ("f(xs)", "@user Items:\n{for x in xs}\n- {x}\n{end}\n@assistant ok"),
}


@pytest.fixture(scope="module")
def backend(engine):
    return sgnb.EngineBackend(engine=engine)


def _both(header, body, namespace):
    name, _, params = header.partition("(")
    params = params[:-1] if params else None
    code = readable_program(parse_cell(body, first_line=2), name, params, frozenset(namespace))
    module = {"sgnb": sgnb, **namespace}
    exec(compile(code, f"<export of {name}>", "exec"), module)  # noqa: S102 - the generated program
    return compile_cell(body, header, dict(namespace), first_line=2), module[name], code


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CELLS))
def test_generated_program_does_what_the_cell_does(case, backend, engine):
    header, body, args = CELLS[case]
    cell, generated, code = _both(header, body, {"EXAMPLES": EXAMPLES})
    assert "compile_cell" not in code and code.startswith("@sgnb.function\ndef ")
    a = cell.run(backend=backend, temperature=0, max_new_tokens=4, **args)
    b = generated.run(backend=backend, temperature=0, max_new_tokens=4, **args)
    assert b.text() == a.text()
    assert b.messages() == a.messages()
    assert b.stream_executor.variables == a.stream_executor.variables
    engine.check_integrity()


def test_generated_code_reads_like_a_hand_written_program():
    _, _, code = _both(*CELLS["judge"][:2], {})
    assert code.splitlines()[:4] == [
        "@sgnb.function",
        "def judge(s, article):",
        '    s += sgnb.system("You are a strict reviewer.")',
        '    s += sgnb.user(f"Judge this article:\\n{article}")',
    ]
    assert "    with s.assistant():" in code
    assert '            branch += f"Judgement on {d}: " + sgnb.gen("judgement", max_tokens=3, stop="\\n") + "\\n"' \
        in code
    _, _, fewshot = _both(*CELLS["fewshot"][:2], {"EXAMPLES": EXAMPLES})
    assert "        if len(s['answer']) > 3:" in fewshot  # a generated variable reads the state


def test_the_whitespace_rules_are_resolved_at_export():
    _, _, code = _both(*CELLS["whitespace_at_role_edges"][:2], {})
    assert '    s += sgnb.system("Lots of space.")' in code
    assert '    s += sgnb.user(f"Value: {a}   and {b}")' in code
    # after a gen the literal keeps its leading spaces; the program's end strips its trailing ones
    assert '    s += sgnb.assistant(sgnb.gen("r", max_tokens=2) + "   \\n  trailing")' in code


@pytest.mark.parametrize("case", sorted(NOT_READABLE))
def test_cells_that_depend_on_run_time_are_refused_with_the_reason(case):
    header, body = NOT_READABLE[case]
    name, _, params = header.partition("(")
    with pytest.raises(NotReadable) as info:
        readable_program(parse_cell(body, first_line=2), name, params[:-1], frozenset())
    expected = {"value_then_whitespace_at_role_start": "may or may not start a role",
                "role_inside_a_loop": "role line inside",
                "loop_variable_outlives_its_loop": "used outside its loop",
                "whitespace_stripped_on_some_paths_only": "some paths only",
                "loop_may_run_zero_times_before_a_role": "some paths only"}[case]
    assert expected in str(info.value)


def test_a_generated_name_that_is_also_a_notebook_name_is_refused():
    with pytest.raises(NotReadable, match="also a notebook"):
        readable_program(parse_cell("@user {answer} {gen('answer')}"), "f", None, frozenset({"answer"}))
