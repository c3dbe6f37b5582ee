"""`%%sgl` cells for the export code generator's tests, and both ways of turning one into a program."""

from __future__ import annotations

import pytest

import sgnb
from sgnb.magics import compile_cell, parse_cell
from sgnb.pipeline.cell_codegen import readable_program
from sgnb.pipeline.errors import NotReadable

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


def readable(header, body, namespace=()):
    """The exported source of the cell `%%sgl HEADER` (raises `NotReadable`)."""
    name, _, params = header.partition("(")
    return readable_program(parse_cell(body, first_line=2), name, params[:-1] if params else None,
                            frozenset(namespace))


def refusal(header, body, namespace=()):
    """Why the cell cannot be exported as plain Python (the test fails when it can)."""
    with pytest.raises(NotReadable) as info:
        readable(header, body, namespace)
    return str(info.value)


def generate(header, body, namespace):
    """(the cell as the magic compiles it, the exported function, its source)."""
    name = header.partition("(")[0]
    code = readable(header, body, namespace)
    module = {"sgnb": sgnb, **namespace}
    exec(compile(code, f"<export of {name}>", "exec"), module)  # noqa: S102 - the generated program
    return compile_cell(body, header, dict(namespace), first_line=2), module[name], code
