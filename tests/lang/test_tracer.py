"""Tracing programs on placeholders: structure and constant prefix (no model needed)."""

from __future__ import annotations

import sgnb as sgl
from sgnb.lang.chat_template import CHATML_TEMPLATE, DEFAULT_TEMPLATE
from sgnb.lang.ir import Gen


def test_prefix_stops_at_the_first_argument():
    @sgl.function
    def prog(s, question):
        s += "Examples.\n"
        s += "Q: " + question + "\nA:" + sgl.gen("a")

    traced = prog.trace()
    assert traced.prefix(DEFAULT_TEMPLATE) == "Examples.\nQ: "
    assert any(isinstance(n, Gen) for n in traced.nodes)


def test_f_strings_and_method_calls_on_arguments_end_the_prefix():
    @sgl.function
    def fstring(s, topic):
        s += "Intro. "
        s += f"Topic: {topic}!"

    assert fstring.trace().prefix(DEFAULT_TEMPLATE) == "Intro. Topic: "

    @sgl.function
    def method(s, topic):
        s += "Intro. "
        s += topic.upper()  # needs the real value: tracing stops here
        s += "never traced"

    traced = method.trace()
    assert traced.prefix(DEFAULT_TEMPLATE) == "Intro. "
    assert "upper" in traced.stopped_by


def test_given_arguments_are_part_of_the_prefix():
    @sgl.function
    def prog(s, a, b):
        s += "A=" + a + " B=" + b

    assert prog.trace(a="1").prefix(DEFAULT_TEMPLATE) == "A=1 B="
    assert prog.bind(a="2").trace().prefix(DEFAULT_TEMPLATE) == "A=2 B="


def test_roles_render_with_the_template():
    @sgl.function
    def chat(s, q):
        s += sgl.system("Be brief.")
        with s.user():
            s += "Question: " + q
        s += sgl.assistant(sgl.gen("a"))

    prefix = chat.trace().prefix(CHATML_TEMPLATE)
    assert prefix == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQuestion: "


def test_reading_variables_and_forks_stop_the_trace():
    @sgl.function
    def prog(s):
        s += "Start " + sgl.gen("x")
        if s["x"] == "yes":
            s += "never"

    traced = prog.trace()
    assert traced.prefix(DEFAULT_TEMPLATE) == "Start "
    assert traced.stopped_by is not None

    @sgl.function
    def forking(s):
        s += "Shared prefix. "
        s.fork(2)

    assert forking.trace().prefix(DEFAULT_TEMPLATE) == "Shared prefix. "


def test_role_methods_and_var_scope_record_role_and_scope_nodes():
    @sgl.function
    def methods(s):
        s.system("Be brief.")
        with s.user():
            with s.var_scope("q"):
                s += "Hi"
        s.assistant(sgl.gen("a"))

    kinds = [type(n).__name__ for n in methods.trace().nodes]
    assert kinds == [
        "RoleBegin", "Constant", "RoleEnd", "RoleBegin", "VarScopeBegin", "Constant", "VarScopeEnd", "RoleEnd",
        "RoleBegin", "Gen", "RoleEnd",
    ]
    assert methods.trace().prefix(CHATML_TEMPLATE) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_bad_var_scope_name_ends_the_trace_as_it_fails_the_run():
    @sgl.function
    def prog(s):
        s += "Before. "
        with s.var_scope(""):
            s += "never traced"

    traced = prog.trace()
    assert traced.prefix(DEFAULT_TEMPLATE) == "Before. "
    assert "var_scope name must be a non-empty string" in traced.stopped_by
