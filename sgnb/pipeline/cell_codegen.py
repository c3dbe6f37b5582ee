"""Readable Python from a `%%sgl` cell: the parsed node tree becomes an `@sgnb.function` body of `s += ...`.

    @system You are a strict reviewer.            @sgnb.function
    @user Judge this article:                     def judge(s, article):
    {article}                              ->         s += sgnb.system("You are a strict reviewer.")
    @assistant                                        s += sgnb.user(f"Judge this article:\\n{article}")
    Score: {gen("score", regex=r"[1-9]")}             s += sgnb.assistant("Score: " + sgnb.gen("score", regex=r"[1-9]"))

The generated code must do exactly what `CellProgram` does. This module emits the statements; the parts it
builds on each hold one concept: `codegen_checks` (structures plain statements cannot express),
`whitespace_flow` (which literal whitespace the cell language strips, resolved at export time),
`name_rewrite` (what names mean: `{answer}` reads `s["answer"]`, primitives become `sgnb.gen`/`sgnb.select`,
`s` inside a fork is the branch) and `literals` (strings and f-strings written for a reader).

When the outcome depends on run time in a way plain statements cannot express (a role line inside a block,
trailing whitespace that a role switch strips on some paths but not others, a loop variable reused outside its
loop, ...), `readable_program` raises `NotReadable` with the reason, and the exporter embeds the cell source
instead. One documented difference: a `{param}` inlined into an f-string that is None prints as "None",
where a cell appends nothing for None.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from sgnb.magics import nodes as n
from sgnb.pipeline.cell_tree import expr_source, expressions, parse_expr, target_names, target_source
from sgnb.pipeline.code_cells import BUILTIN_NAMES
from sgnb.pipeline.codegen_checks import check_generated_names, check_loops, check_roles
from sgnb.pipeline.literals import is_literal_positive_int, literal_len, string_lines
from sgnb.pipeline.name_rewrite import Rewrite, Scope, classify
from sgnb.pipeline.whitespace_flow import resolve_whitespace

INDENT = "    "
_MAX_LINE = 88  # longest `s += ...` value kept on one line


def readable_program(template: n.CellTemplate, name: str, params: str | None,
                     module_names: frozenset[str] | set[str]) -> str:
    """The `@sgnb.function` definition of a parsed cell (no trailing newline). Raises `NotReadable`."""
    param_names = _param_names(params)
    all_names: set[str] = set()
    for expr in expressions(template.body):
        all_names |= {x.id for x in ast.walk(parse_expr(expr_source(expr))) if isinstance(x, ast.Name)}
    check_loops(template, param_names)
    scope = Scope(frozenset(param_names), template.var_names, frozenset(module_names),
                  taken=all_names | param_names | set(module_names) | {"s", "sgnb"} | set(BUILTIN_NAMES))
    check_generated_names(template, param_names, module_names, all_names)
    texts = resolve_whitespace(template, scope)
    check_roles(template.body)
    body_lines = _Body(scope, texts).top_level(template.body)
    signature = f"s, {params.strip()}" if params and params.strip() else "s"
    return "\n".join(["@sgnb.function", f"def {name}({signature}):", *body_lines])


def _param_names(params: str | None) -> set[str]:
    if not params or not params.strip():
        return set()
    args = ast.parse(f"def f(s, {params}): pass").body[0].args  # the magic already checked it parses
    return {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg) if a} - {"s"}


@dataclass(slots=True)
class _Append:
    """`state += value`; `value` is one line, or a string group `["(", literal, ..., ")"]`."""

    state: str
    value: list[str]

    def lines(self, pad: str) -> list[str]:
        if len(self.value) == 1:
            return [f"{pad}{self.state} += {self.value[0]}"]
        return [f"{pad}{self.state} += (", *[f"{pad}{INDENT}{x}" for x in self.value[1:-1]], f"{pad})"]


def _render(entries: list, pad: str) -> list[str]:
    lines: list[str] = []
    for entry in entries:
        lines += entry.lines(pad) if isinstance(entry, _Append) else [pad + line for line in entry]
    return lines


class _Body:
    """Emits statements for node lists; `texts` holds each Text node's resolved text."""

    def __init__(self, scope: Scope, texts: dict[int, str]) -> None:
        self.scope = scope
        self.texts = texts

    def top_level(self, nodes: list[n.Node]) -> list[str]:
        lines: list[str] = []
        segment: list[n.Node] = []
        role: str | None = None
        for node in [*nodes, None]:
            if node is not None and not isinstance(node, n.Role):
                segment.append(node)
                continue
            entries = self.entries(segment, "s", set())
            lines += self.role_block(role, entries) if role else _render(entries, INDENT)
            if node is not None:
                role, segment = node.role, []
        return lines or [INDENT + "pass"]

    @staticmethod
    def role_block(role: str, entries: list) -> list[str]:
        if not entries:
            return [f"{INDENT}s += sgnb.{role}()"]
        if len(entries) == 1 and isinstance(entries[0], _Append):
            value = entries[0].value
            if len(value) == 1:
                return [f"{INDENT}s += sgnb.{role}({value[0]})"]
            return [f"{INDENT}s += sgnb.{role}(", *[f"{INDENT * 2}{x}" for x in value[1:-1]], f"{INDENT})"]
        return [f"{INDENT}with s.{role}():", *_render(entries, INDENT * 2)]

    def entries(self, nodes: list[n.Node], state: str, bound: set[str]) -> list:
        """Statements for `nodes`: `_Append`s and lists of lines (relative indentation)."""
        out: list = []
        parts: list[tuple[str, str]] = []  # ("text", str) | ("inline", code) | ("primitive", code)

        def flush() -> None:
            if parts:
                out.extend(self.appends(state, parts))
                parts.clear()

        def nested(body: list[n.Node], inner_bound: set[str]) -> list[str]:
            return _render(self.entries(body, state, inner_bound), INDENT) or [INDENT + "pass"]

        for node in nodes:
            if isinstance(node, n.Text):
                text = self.texts[id(node)]
                if text:
                    parts.append(("text", text))
            elif isinstance(node, n.Expr):
                source = expr_source(node.expr)
                kind = classify(parse_expr(source), self.scope, bound)
                rewrite = Rewrite(self.scope, state, bound)
                code = rewrite(source)
                if rewrite.reads_state and any(k == "primitive" for k, _ in parts):
                    flush()  # the value must be read after what came before it was appended
                if kind == "primitive":
                    parts.append(("primitive", code))
                elif kind == "inline" and "\\" not in code and '"' not in code:
                    parts.append(("inline", code))
                elif kind == "subprogram":
                    flush()
                    out.append([code])
                else:
                    flush()
                    out.append(_Append(state, [code]))
            elif isinstance(node, n.If):
                flush()
                lines: list[str] = []
                for i, (cond, body) in enumerate(node.branches):
                    code = Rewrite(self.scope, state, bound)(expr_source(cond))
                    lines += [f"{'if' if i == 0 else 'elif'} {code}:", *nested(body, bound)]
                if node.orelse is not None:
                    lines += ["else:", *nested(node.orelse, bound)]
                out.append(lines)
            elif isinstance(node, n.For):
                flush()
                target = target_source(node.target)
                iterable = Rewrite(self.scope, state, bound)(expr_source(node.iterable))
                out.append([f"for {target} in {iterable}:", *nested(node.body, bound | target_names(node.target))])
            elif isinstance(node, n.Fork):
                flush()
                out.append(self.fork(node, state, bound))
        flush()
        return out

    def fork(self, node: n.Fork, state: str, bound: set[str]) -> list[str]:
        forks = self.scope.fresh("forks")
        branch = self.scope.fresh("branch")
        join = "" if node.join_mode == "gather_variable" else f'"{node.join_mode}"'
        inner_bound = bound | (target_names(node.target) if node.target is not None else set())
        body = _render(self.entries(node.body, branch, inner_bound), INDENT) or [INDENT + "pass"]
        if node.count is not None:
            count = Rewrite(self.scope, state, bound)(node.count.text)
            lines = [f"{forks} = {state}.fork({count})", f"for {branch} in {forks}:", *body, f"{forks}.join({join})"]
            if is_literal_positive_int(count):
                return lines
            return [f"if {count}:", *[INDENT + x for x in lines]]  # the cell skips a fork of 0
        target = target_source(node.target)
        iterable = Rewrite(self.scope, state, bound)(expr_source(node.iterable))
        size = literal_len(iterable)
        if size:
            return [f"{forks} = {state}.fork({size})", f"for {target}, {branch} in zip({iterable}, {forks}):",
                    *body, f"{forks}.join({join})"]
        items = self.scope.fresh("items")
        lines = [f"{forks} = {state}.fork(len({items}))", f"for {target}, {branch} in zip({items}, {forks}):",
                 *body, f"{forks}.join({join})"]
        return [f"{items} = list({iterable})", f"if {items}:", *[INDENT + x for x in lines]]

    @staticmethod
    def appends(state: str, parts: list[tuple[str, str]]) -> list[_Append]:
        """Buffered parts as appends: strings merged (f-strings for inlined names), primitives after them.
        Short pieces share one statement (`"Answer: " + sgnb.gen(...)`); long text gets its own."""
        items: list[tuple[str, object]] = []  # ("string", segments) | ("primitive", code)
        for kind, value in parts:
            if kind == "primitive":
                items.append(("primitive", value))
            elif items and items[-1][0] == "string":
                items[-1][1].append((kind, value))  # type: ignore[union-attr]
            else:
                items.append(("string", [(kind, value)]))
        rendered = [[value] if kind == "primitive" else string_lines(value) for kind, value in items]  # type: ignore[arg-type]
        if all(len(r) == 1 for r in rendered) and len(" + ".join(r[0] for r in rendered)) <= _MAX_LINE:
            return [_Append(state, [" + ".join(r[0] for r in rendered)])]
        # one statement per text and the primitive after it (`s += "Label: " + sgnb.select(...)`)
        out: list[_Append] = []
        i = 0
        while i < len(rendered):
            r = rendered[i]
            pair = i + 1 < len(rendered) and items[i][0] == "string" and items[i + 1][0] == "primitive"
            if pair and len(r) == 1 and len(r[0]) + len(rendered[i + 1][0]) + 3 <= _MAX_LINE:
                out.append(_Append(state, [f"{r[0]} + {rendered[i + 1][0]}"]))
                i += 2
                continue
            out.append(_Append(state, r if len(r) == 1 else ["(", *r, ")"]))
            i += 1
        return out
