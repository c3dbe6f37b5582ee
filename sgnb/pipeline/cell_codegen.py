"""Readable Python from a `%%sgl` cell: the parsed node tree becomes an `@sgnb.function` body of `s += ...`.

    @system You are a strict reviewer.            @sgnb.function
    @user Judge this article:                     def judge(s, article):
    {article}                              ->         s += sgnb.system("You are a strict reviewer.")
    @assistant                                        s += sgnb.user(f"Judge this article:\\n{article}")
    Score: {gen("score", regex=r"[1-9]")}             s += sgnb.assistant("Score: " + sgnb.gen("score", regex=r"[1-9]"))

The generated code must do exactly what `CellProgram` does, so the whitespace rules of the cell language (the
literal text at the start and end of a role's content is stripped) are resolved here, at export time:
a backward pass finds, for each piece of literal text, whether a role switch can follow it before anything
else is appended (its trailing whitespace goes), a forward pass whether it can sit at the start of a role
(its leading whitespace goes). Name lookup is mapped too: variables the program generates (`{answer}`) read
the state (`s["answer"]`), the primitives become `sgnb.gen`/`sgnb.select`, `s` inside a fork is the branch.

When the outcome depends on run time in a way plain statements cannot express (a role line inside a block,
trailing whitespace that a role switch strips on some paths but not others, a loop variable reused outside its
loop, ...), `readable_program` raises `NotReadable` with the reason, and the exporter embeds the cell source
instead. One documented difference: a `{param}` inlined into an f-string that is None prints as "None",
where a cell appends nothing for None.
"""

from __future__ import annotations

import ast
import builtins
import keyword
from collections.abc import Iterator
from dataclasses import dataclass, field

from sgnb.magics import nodes as n
from sgnb.pipeline.code_cells import free_names

PRIMITIVE_NAMES = frozenset({"gen", "gen_int", "gen_string", "select", "image", "video"})
_BUILTINS = frozenset(dir(builtins))
INDENT = "    "
_MAX_INLINE = 72  # longest string literal kept on one line (longer text: one literal per line of text)
_MAX_LINE = 88  # longest `s += ...` value kept on one line

# trailing-whitespace fates (backward pass): what comes first after a piece of text on every path
BARRIER, BOUNDARY, MIXED = "barrier", "boundary", "mixed"  # something appended / a role switch or the end / both
# leading-whitespace states (forward pass): is the walk at the start of a role?
AT_START, NOT_AT_START = "at-start", "not-at-start"


class NotReadable(Exception):
    """The cell cannot be written as plain statements with the same behaviour; `str()` says why."""


def _join(*values: str) -> str:
    return values[0] if all(v == values[0] for v in values) else MIXED


@dataclass(slots=True)
class _Scope:
    """What names mean while generating one program."""

    params: frozenset[str]
    var_names: frozenset[str]
    module_names: frozenset[str]
    loop_names: frozenset[str]
    taken: set[str] = field(default_factory=set)  # identifiers the generated code must not reuse

    def fresh(self, base: str) -> str:
        name, k = base, 2
        while name in self.taken or keyword.iskeyword(name):
            name, k = f"{base}{k}", k + 1
        self.taken.add(name)
        return name


# ------------------------------------------------------------------ entry point
def readable_program(template: n.CellTemplate, name: str, params: str | None,
                     module_names: frozenset[str] | set[str]) -> str:
    """The `@sgnb.function` definition of a parsed cell (no trailing newline). Raises `NotReadable`."""
    param_names = _param_names(params)
    all_names: set[str] = set()
    for expr in expressions(template.body):
        all_names |= {x.id for x in ast.walk(_parse(expr_source(expr))) if isinstance(x, ast.Name)}
    loop_names = _check_loops(template, param_names)
    scope = _Scope(frozenset(param_names), template.var_names, frozenset(module_names), frozenset(loop_names),
                   taken=all_names | param_names | set(module_names) | {"s", "sgnb"} | set(_BUILTINS))
    for var in template.var_names:
        if var in param_names:
            continue
        clash = var in module_names or var in _BUILTINS or var in PRIMITIVE_NAMES
        if clash and var in all_names:
            raise NotReadable(f"the generated variable {var!r} is also a notebook, builtin or primitive name, "
                              "so what `{" + var + "}` means depends on run time")
    texts = _resolve_whitespace(template, scope)
    _check_roles(template.body)
    body_lines = _Body(scope, texts).top_level(template.body)
    signature = f"s, {params.strip()}" if params and params.strip() else "s"
    return "\n".join([f"@sgnb.function", f"def {name}({signature}):", *body_lines])


def _param_names(params: str | None) -> set[str]:
    if not params or not params.strip():
        return set()
    args = ast.parse(f"def f(s, {params}): pass").body[0].args  # the magic already checked it parses
    return {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg) if a} - {"s"}


# ------------------------------------------------------------------ structure checks
def expressions(nodes: list[n.Node]) -> Iterator[n.PyExpr]:
    """Every Python expression of a node tree: `{...}` values, loop iterables, fork counts, conditions."""
    for node in nodes:
        if isinstance(node, n.Expr):
            yield node.expr
        elif isinstance(node, n.For):
            yield node.iterable
            yield from expressions(node.body)
        elif isinstance(node, n.Fork):
            yield node.iterable if node.iterable is not None else node.count
            yield from expressions(node.body)
        elif isinstance(node, n.If):
            for cond, body in node.branches:
                yield cond
                yield from expressions(body)
            if node.orelse is not None:
                yield from expressions(node.orelse)


def target_names(target: n.PyTarget) -> set[str]:
    """The names a `{for}` / `{fork}` target binds (`k, v` -> {"k", "v"})."""
    loop = ast.parse(f"for {target.text}: pass").body[0]
    return {x.id for x in ast.walk(loop.target) if isinstance(x, ast.Name)}


def _check_loops(template: n.CellTemplate, params: set[str]) -> set[str]:
    """Loop and fork variables must be unique, not parameters, and unused outside their block (Python's loop
    variables outlive the loop; the cell's do not). Returns every loop variable."""
    seen: set[str] = set()
    reads: list[tuple[n.PyExpr, set[str]]] = []  # each expression, with the loop variables bound where it is

    def visit(nodes: list[n.Node], bound: set[str]) -> None:
        for node in nodes:
            if isinstance(node, (n.For, n.Fork)):
                reads.append((node.iterable if node.iterable is not None else node.count, bound))
                names = target_names(node.target) if node.target is not None else set()
                reused = names & (seen | params | {"s"})
                if reused:
                    raise NotReadable(f"loop variable {sorted(reused)[0]!r} is also a parameter or another "
                                      "loop's variable")
                seen.update(names)
                visit(node.body, bound | names)
            elif isinstance(node, n.If):
                for cond, body in node.branches:
                    reads.append((cond, bound))
                    visit(body, bound)
                if node.orelse is not None:
                    visit(node.orelse, bound)
            elif isinstance(node, n.Expr):
                reads.append((node.expr, bound))

    visit(template.body, set())
    for expr, bound in reads:
        used = free_names(_parse(expr_source(expr)))  # a comprehension's own `for i in ...` is not a use
        outside = (used & seen) - bound
        if outside:
            raise NotReadable(f"loop variable {sorted(outside)[0]!r} is also used outside its loop")
    return seen


def _check_roles(nodes: list[n.Node], depth: int = 0) -> None:
    for node in nodes:
        if isinstance(node, n.Role) and depth:
            raise NotReadable("a role line inside a {for}, {if} or {fork} block switches roles at run time")
        for body in _bodies(node):
            _check_roles(body, depth + 1)


def _bodies(node: n.Node) -> list[list[n.Node]]:
    if isinstance(node, (n.For, n.Fork)):
        return [node.body]
    if isinstance(node, n.If):
        return [b for _, b in node.branches] + ([node.orelse] if node.orelse is not None else [])
    return []


# ------------------------------------------------------------------ whitespace
def _dataflow(nodes: list[n.Node], state: str, step, fork, *, reverse: bool) -> str:
    """Carry a `_join`-lattice state through a cell body, forward or backward.

    step(node, state) -> state for a leaf node; fork(state) -> (state a fork's body starts with,
    state after the fork). `if` joins its branches; `for` iterates its body to a fixed point.
    """
    for node in reversed(nodes) if reverse else nodes:
        if isinstance(node, n.Fork):
            entry, state = fork(state)
            _dataflow(node.body, entry, step, fork, reverse=reverse)
        elif isinstance(node, n.If):
            outs = [_dataflow(b, state, step, fork, reverse=reverse) for _, b in node.branches]
            outs.append(_dataflow(node.orelse, state, step, fork, reverse=reverse)
                        if node.orelse is not None else state)
            state = _join(*outs)
        elif isinstance(node, n.For):
            entry = state
            while True:
                out = _dataflow(node.body, entry, step, fork, reverse=reverse)
                again = _join(state, out)
                if again == entry:
                    break
                entry = again
            state = _join(state, out)
        else:
            state = step(node, state)
    return state


def _resolve_whitespace(template: n.CellTemplate, scope: _Scope) -> dict[int, str]:
    """The text each `Text` node really appends (id(node) -> text), as `CellProgram` would strip it."""
    body = template.body
    tail: dict[int, str] = {}
    lead: dict[int, str] = {}

    def backward(node: n.Node, follow: str) -> str:
        if isinstance(node, n.Text):
            tail[id(node)] = follow
            return BARRIER if node.text.strip() else follow
        if isinstance(node, n.Expr):
            return BARRIER  # an expression flushes the pending text first, whatever its value
        if isinstance(node, n.Role):
            return BOUNDARY
        return follow

    def forward(node: n.Node, state: str) -> str:
        if isinstance(node, n.Text):
            lead[id(node)] = state
            return NOT_AT_START if node.text.strip() else state
        if isinstance(node, n.Expr):
            kind = _classify(_parse(expr_source(node.expr)), scope, set())
            if kind == "primitive":
                return NOT_AT_START
            if kind != "subprogram":  # a value: an empty one leaves the walk at the start
                return NOT_AT_START if state == NOT_AT_START else MIXED
            return state
        if isinstance(node, n.Role):
            return AT_START
        return state

    # backward: a branch ends by flushing without stripping; forward: branches leave the parent's state
    _dataflow(body, BOUNDARY, backward, lambda _: (BARRIER, BARRIER), reverse=True)  # the end strips like a role
    _dataflow(body, AT_START, forward, lambda state: (state, state), reverse=False)
    texts: dict[int, str] = {}

    def resolve(nodes: list[n.Node]) -> None:
        for node in nodes:
            if isinstance(node, n.Text):
                try:
                    texts[id(node)] = _strip(node, lead[id(node)], tail[id(node)])
                except NotReadable as exc:
                    line = template.first_line + template.source.count("\n", 0, node.start)
                    raise NotReadable(f"cell line {line}: {exc}") from None
            for b in _bodies(node):
                resolve(b)

    resolve(body)
    return texts


def _strip(node: n.Text, lead: str, tail: str) -> str:
    text = node.text
    where = f"literal text {text[:20]!r}"
    if not text.strip():
        if lead == AT_START or tail == BOUNDARY:
            return ""
        if lead == NOT_AT_START and tail == BARRIER:
            return text
        raise NotReadable(f"whether the whitespace {text!r} reaches the prompt depends on run time")
    if text[0].isspace():
        if lead == AT_START:
            text = text.lstrip()
        elif lead == MIXED:
            raise NotReadable(f"{where} may or may not start a role (its leading whitespace would be stripped "
                              "only then)")
    if text[-1].isspace():
        if tail == BOUNDARY:
            text = text.rstrip()
        elif tail == MIXED:
            raise NotReadable(f"{where} is followed by a role switch on some paths only (its trailing "
                              "whitespace would be stripped only then)")
    return text


# ------------------------------------------------------------------ expressions
def expr_source(expr: n.PyExpr) -> str:
    """The expression's own source text (for-headers are stored as `for TARGET in ITERABLE: pass`)."""
    if expr.prefix_len == 0:
        return expr.text
    loop = ast.parse(expr.text).body[0]
    return ast.get_source_segment(expr.text, loop.iter)


def _parse(source: str) -> ast.Expression:
    return ast.parse(source.strip(), mode="eval")


def _classify(tree: ast.Expression, scope: _Scope, bound: set[str]) -> str:
    """primitive | subprogram | inline (a name safe inside an f-string) | value."""
    body = tree.body
    if isinstance(body, ast.Call):
        func = body.func
        if isinstance(func, ast.Name) and func.id in PRIMITIVE_NAMES and func.id not in scope.params | bound:
            return "primitive"
        if isinstance(func, ast.Attribute) and func.attr in PRIMITIVE_NAMES and isinstance(func.value, ast.Name) \
                and func.value.id in ("sgnb", "sgl"):
            return "primitive"
        if any(isinstance(a, ast.Name) and a.id == "s" for a in body.args):
            return "subprogram"
    if isinstance(body, ast.Name):
        if body.id in scope.params or body.id in bound:
            return "inline"
        if body.id in scope.var_names:
            return "inline"
    return "value"


class _Rewrite:
    """Maps a cell expression's names onto the generated function's: state variables, `s`, primitives."""

    def __init__(self, scope: _Scope, state: str, bound: set[str]) -> None:
        self.scope = scope
        self.state = state
        self.bound = bound
        self.reads_state = False

    def __call__(self, source: str) -> str:
        source = source.strip()
        tree = ast.parse(source, mode="eval")
        inner = _inner_bindings(tree)
        local = self.scope.params | self.bound
        edits: list[tuple[int, int, str]] = []
        for node in ast.walk(tree):
            if not isinstance(node, ast.Name) or not isinstance(node.ctx, ast.Load) or node.id in local:
                continue
            new = None
            if node.id == "s":
                new, self.reads_state = self.state, True
            elif node.id in self.scope.var_names:
                new, self.reads_state = f"{self.state}[{node.id!r}]", True
            elif node.id in PRIMITIVE_NAMES and node.id not in self.scope.module_names:
                new = f"sgnb.{node.id}"
            if new is None:
                continue
            if node.id in inner:
                raise NotReadable(f"{node.id!r} is bound inside the expression {source!r} and also means a "
                                  "program name")
            edits.append((*_span(source, node), new))
        for start, end, new in sorted(edits, reverse=True):
            source = source[:start] + new + source[end:]
        return f"({source})" if "\n" in source else source


def _inner_bindings(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
    return out


def _span(source: str, node: ast.AST) -> tuple[int, int]:
    """Character offsets of `node` in `source` (ast columns count UTF-8 bytes)."""
    lines = source.split("\n")

    def offset(lineno: int, col: int) -> int:
        line = lines[lineno - 1]
        chars = len(line.encode()[:col].decode("utf-8", "ignore"))
        return sum(len(x) + 1 for x in lines[:lineno - 1]) + chars

    return offset(node.lineno, node.col_offset), offset(node.end_lineno, node.end_col_offset)


# ------------------------------------------------------------------ emission
def py_string(text: str, is_fstring: bool = False, quote: str | None = None) -> str:
    """A Python literal for `text`: double quotes unless only single ones avoid escapes (braces doubled in an
    f-string body)."""
    if quote is None:
        quote = "'" if '"' in text and "'" not in text else '"'
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == quote:
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        elif is_fstring and ch in "{}":
            out.append(ch * 2)
        else:
            out.append(ch)
    return quote + "".join(out) + quote


def _fstring(segments: list[tuple[str, str]]) -> str:
    """`segments`: ("text", str) or ("inline", code); inline code holds no double quote and no backslash."""
    if all(kind == "text" for kind, _ in segments):
        return py_string("".join(value for _, value in segments))
    text = "".join(value for kind, value in segments if kind == "text")
    has_single = any("'" in value for kind, value in segments if kind == "inline")
    quote = "'" if '"' in text and "'" not in text and not has_single else '"'
    body = [py_string(value, True, quote)[1:-1] if kind == "text" else "{" + value + "}" for kind, value in segments]
    return "f" + quote + "".join(body) + quote


def _string_lines(segments: list[tuple[str, str]]) -> list[str]:
    """A string group as literals, one per line of text (joined by Python's implicit concatenation)."""
    chunks: list[list[tuple[str, str]]] = [[]]
    for kind, value in segments:
        if kind != "text":
            chunks[-1].append((kind, value))
            continue
        parts = value.split("\n")
        for i, part in enumerate(parts):
            piece = part + ("\n" if i < len(parts) - 1 else "")
            if piece:
                chunks[-1].append(("text", piece))
            if i < len(parts) - 1:
                chunks.append([])
    whole = _fstring(segments)
    if len(whole) <= _MAX_INLINE or len(chunks) == 1:
        return [whole]
    return [_fstring(chunk) for chunk in chunks if chunk]


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

    def __init__(self, scope: _Scope, texts: dict[int, str]) -> None:
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
                kind = _classify(_parse(source), self.scope, bound)
                rewrite = _Rewrite(self.scope, state, bound)
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
                    code = _Rewrite(self.scope, state, bound)(expr_source(cond))
                    lines += [f"{'if' if i == 0 else 'elif'} {code}:", *nested(body, bound)]
                if node.orelse is not None:
                    lines += ["else:", *nested(node.orelse, bound)]
                out.append(lines)
            elif isinstance(node, n.For):
                flush()
                target = _target_source(node.target)
                iterable = _Rewrite(self.scope, state, bound)(expr_source(node.iterable))
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
            count = _Rewrite(self.scope, state, bound)(node.count.text)
            lines = [f"{forks} = {state}.fork({count})", f"for {branch} in {forks}:", *body, f"{forks}.join({join})"]
            if _literal_int(count):
                return lines
            return [f"if {count}:", *[INDENT + x for x in lines]]  # the cell skips a fork of 0
        target = _target_source(node.target)
        iterable = _Rewrite(self.scope, state, bound)(expr_source(node.iterable))
        size = _literal_len(iterable)
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
        rendered = [[value] if kind == "primitive" else _string_lines(value) for kind, value in items]  # type: ignore[arg-type]
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


def _target_source(target: n.PyTarget) -> str:
    loop = ast.parse(f"for {target.text}: pass").body[0]
    return ast.get_source_segment(f"for {target.text}: pass", loop.target)


def _literal_len(code: str) -> int:
    """len() of a literal list/tuple without starred items, else 0."""
    try:
        tree = ast.parse(code, mode="eval").body
    except SyntaxError:
        return 0
    if isinstance(tree, (ast.List, ast.Tuple)) and not any(isinstance(e, ast.Starred) for e in tree.elts):
        return len(tree.elts)
    return 0


def _literal_int(code: str) -> bool:
    try:
        value = ast.literal_eval(code)
    except (ValueError, SyntaxError):
        return False
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
