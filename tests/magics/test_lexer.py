"""The %%sgl lexer: roles, braces, comments, strings inside expressions, standalone tag lines (no model)."""

from __future__ import annotations

import pytest

from sgnb.magics import nodes as n
from sgnb.magics.errors import SglSyntaxError
from sgnb.magics.lexer import tokenize_cell
from sgnb.magics.parser import parse_cell


def kinds(body: list) -> list[str]:
    return [type(node).__name__ for node in body]


def syntax_error(source: str, first_line: int = 2) -> SglSyntaxError:
    with pytest.raises(SglSyntaxError) as info:
        parse_cell(source, first_line)
    return info.value


def test_tokens_carry_kinds_and_offsets():
    src = "@user Hi {name}{# c #}\n{if x}\n{{ok}}"
    toks = tokenize_cell(src)
    assert [(t.kind, t.value) for t in toks] == [("role", "user"), ("text", "Hi "), ("expr", "name"),
                                                 ("comment", ""), ("text", "\n"), ("block", "if"),
                                                 ("text", "{ok}")]
    assert src[toks[2].start:toks[2].end] == "{name}"
    assert toks[5].rest == "x" and src[toks[5].rest_start] == "x"


def test_at_sign_that_is_not_a_role_is_text():
    template = parse_cell("@everyone look\nmail me @home")
    assert kinds(template.body) == ["Text"]
    assert template.body[0].text == "@everyone look\nmail me @home"


@pytest.mark.parametrize("line, hint", [("@asistant hello", "did you mean '@assistant'"),
                                        ("@User hello", "did you mean '@user'"),
                                        ("@user: hello", "must be followed by a space")])
def test_misspelt_role_is_an_error_at_the_marker(line, hint):
    err = syntax_error("intro\n" + line)
    assert hint in err.message
    assert (err.line, err.column) == (3, 1)


def test_literal_braces_and_comments():
    template = parse_cell('JSON: {{"a": 1}} {# not sent #}done')
    assert kinds(template.body) == ["Text"]
    assert template.body[0].text == 'JSON: {"a": 1} done'


def test_comment_may_span_lines_and_contain_braces():
    template = parse_cell("a{# one }\ntwo { #}b")
    assert template.body[0].text == "ab"


def test_expression_may_contain_braces_strings_and_newlines():
    template = parse_cell('{gen("n", regex=r"\\d{3}", stop=["}"])} and {\n  {"k": 1}["k"]\n}')
    exprs = [node for node in template.body if isinstance(node, n.Expr)]
    assert len(exprs) == 2
    assert eval(exprs[1].expr.code) == 1
    assert exprs[0].expr.text.startswith('gen("n", regex=r"\\d{3}"')


def test_standalone_block_lines_disappear_but_inline_blocks_keep_their_text():
    template = parse_cell("a\n  {for x in xs}\nitem {x}\n  {end}  \nb {if y}yes{end}\n")
    assert kinds(template.body) == ["Text", "For", "Text", "If", "Text"]
    assert template.body[0].text == "a\n"
    loop = template.body[1]
    assert [getattr(node, "text", None) for node in loop.body] == ["item ", None, "\n"]
    assert template.body[2].text == "b "
    assert template.body[4].text == "\n"


def test_several_tags_on_one_line_are_one_standalone_line():
    template = parse_cell("x\n{if a}{# why #} {end}\ny")
    assert kinds(template.body) == ["Text", "If", "Text"]
    assert template.body[0].text == "x\n" and template.body[2].text == "y"


def test_keyword_like_names_are_still_expressions():
    template = parse_cell("{end_time} {format(x)} {iffy}")
    assert kinds(template.body) == ["Expr", "Text", "Expr", "Text", "Expr"]


def test_error_caret_keeps_tabs_aligned():
    err = syntax_error("\t\t{end}")
    assert str(err).split("\n")[-1] == "    \t\t^^^^^"


def test_crlf_sources_parse_like_lf():
    assert [getattr(x, "text", None) for x in parse_cell("a\r\n{if x}\r\nb\r\n{end}\r\n").body] == \
        [getattr(x, "text", None) for x in parse_cell("a\n{if x}\nb\n{end}\n").body]
