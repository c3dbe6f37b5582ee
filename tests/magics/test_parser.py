"""The %%sgl cell language parser: structure, whitespace rules, escapes and error positions (no model)."""

from __future__ import annotations

import pytest

from sgnb.magics import nodes as n
from sgnb.magics.errors import SglSyntaxError
from sgnb.magics.parser import parse_cell, parse_header

JUDGE = '''@system You are a strict reviewer.
@user Judge this article:
{article}
@assistant
{fork d in ["clarity", "accuracy", "style"]}
Judgement on {d}: {gen("judgement", max_tokens=64, stop="\\n")}
{join}
Overall score (1-10): {gen("score", regex=r"10|[1-9]")}
'''


def kinds(body: list) -> list[str]:
    return [type(node).__name__ for node in body]


def syntax_error(source: str, first_line: int = 2) -> SglSyntaxError:
    with pytest.raises(SglSyntaxError) as info:
        parse_cell(source, first_line)
    return info.value


def test_parses_the_issue_example_into_roles_fork_and_gens():
    template = parse_cell(JUDGE)
    assert kinds(template.body) == ["Role", "Text", "Role", "Text", "Expr", "Text", "Role", "Text", "Fork",
                                    "Text", "Expr", "Text"]
    roles = [node.role for node in template.body if isinstance(node, n.Role)]
    assert roles == ["system", "user", "assistant"]
    fork = template.body[8]
    assert fork.target is not None and fork.count is None and fork.join_mode == "gather_variable"
    assert kinds(fork.body) == ["Text", "Expr", "Text", "Expr", "Text"]
    assert fork.body[0].text == "Judgement on "
    # the {fork} and {join} lines vanish with their newlines: the body starts right at "Judgement"
    assert template.body[7].text == "\n"  # after "@assistant" (stripped at run time as role-leading space)
    assert template.var_names == {"judgement", "score"}


def test_role_marker_takes_text_on_the_same_line_and_skips_the_space():
    template = parse_cell("@system Be brief.\n@user Hi there\n")
    assert kinds(template.body) == ["Role", "Text", "Role", "Text"]
    assert template.body[1].text == "Be brief.\n"
    assert template.body[3].text == "Hi there\n"


def test_if_elif_else_branches():
    template = parse_cell("{if a}A{elif b}B{elif c}C{else}D{end}")
    node = template.body[0]
    assert isinstance(node, n.If)
    assert [branch[1][0].text for branch in node.branches] == ["A", "B", "C"]
    assert node.orelse[0].text == "D"


def test_fork_count_and_join_concat():
    template = parse_cell("{fork 2 + 1}x{join concat}")
    fork = template.body[0]
    assert fork.target is None and eval(fork.count.code) == 3
    assert fork.join_mode == "concate_and_append"


def test_for_binds_tuples():
    template = parse_cell("{for k, (a, *rest) in items}{k}{end}")
    loop = template.body[0]
    scope: dict = {}
    exec(loop.target.code, {"__sgl_item__": ("key", (1, 2, 3))}, scope)
    assert scope == {"k": "key", "a": 1, "rest": [2, 3]}


def test_var_names_come_from_literal_gen_and_select_names():
    template = parse_cell('{gen("a")}{sgl.select("b", ["x"])}{gen_int(name="c")}{gen(f"d{i}")}{other("e")}')
    assert template.var_names == {"a", "b", "c"}


# ------------------------------------------------------------------ errors: line, column, caret
def test_parse_error_points_at_the_cell_line_and_column():
    err = syntax_error('@user hi\nScore: {gen("score", max_tokens=3}\n')
    assert (err.line, err.column) == (3, 8)
    text = str(err)
    assert "cell line 3, column 8" in text
    lines = text.split("\n")
    assert lines[-2] == '    Score: {gen("score", max_tokens=3}'
    assert lines[-1].index("^") == 4 + 7  # under the '{' that never closes


def test_python_syntax_error_inside_braces_points_into_the_expression():
    err = syntax_error("line one\n  value: {x +* 2}")
    assert err.line == 3
    assert err.source_line == "  value: {x +* 2}"
    assert err.column == 14  # the '*'
    assert "invalid Python in expression" in err.message


def test_unclosed_block_points_at_its_opener():
    err = syntax_error("a\n{fork 3}\nb\n")
    assert "unclosed {fork} block: add {join}" in err.message
    assert (err.line, err.column) == (3, 1)


@pytest.mark.parametrize("source, message, column", [
    ("{end}", "{end} without an open {for} or {if}", 1),
    ("{join}", "{join} without an open {fork}", 1),
    ("{fork 2}x{end}", "closed with {join}, not {end}", 10),
    ("{for x in y}x{join}", "close it with {end} first", 14),
    ("{else}", "{else} without an open {if}", 1),
    ("{if a}x{else}y{elif b}z{end}", "{elif} after {else}", 15),
    ("{if a}x{else b}y{end}", "{else} takes nothing", 14),
    ("{for}{end}", "{for} needs NAME in ITERABLE", 1),
    ("{for x.y in z}{end}", "can only bind names", 6),
    ("{fork 2}x{join sideways}", "unknown join mode", 16),
    ("a } b", "single '}'", 3),
    ("{}", "empty '{}'", 1),
    ("{#x", "unclosed comment", 1),
    ("{'abc}", "unterminated string", 2),
])
def test_block_errors(source, message, column):
    err = syntax_error(source)
    assert message in err.message
    assert (err.line, err.column) == (2, column)


def test_render_traceback_is_the_snippet_without_python_frames():
    err = syntax_error("{end}")
    lines = err._render_traceback_()
    assert lines[0] == "SglSyntaxError: {end} without an open {for} or {if}"
    assert lines[1] == "  cell line 2, column 1:"
    assert not any("Traceback" in line or "File " in line for line in lines)


# ------------------------------------------------------------------ NAME(params) headers
def test_header_with_params_and_defaults():
    header = parse_header("judge(article, n=3, *, style='short')")
    assert header.name == "judge" and header.params == "article, n=3, *, style='short'"
    scope: dict = {}
    exec(header.signature_code, scope)
    assert list(scope["__sgl_signature__"].__code__.co_varnames[:4]) == ["s", "article", "n", "style"]


def test_header_without_params():
    assert parse_header("qa").params is None


@pytest.mark.parametrize("header, message", [
    ("9lives", "must be a Python identifier"),
    ("class", "Python keyword"),
    ("f(a, a)", "invalid parameter list"),
    ("f(a b)", "invalid parameter list"),
    ("f(s)", "reserved for the program state"),
    ("f[a]", "expected f(param, ...)"),
])
def test_bad_headers(header, message):
    line = f"%%sgl {header} --temperature 0"
    with pytest.raises(SglSyntaxError) as info:
        parse_header(header, line, len("%%sgl "))
    assert message in info.value.message
    assert info.value.line == 1 and info.value.source_line == line
    assert info.value.column >= len("%%sgl ") + 1
