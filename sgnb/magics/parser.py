"""Parser of the `%%sgl` cell language (plain Python: no IPython, no model): tokens -> a `CellTemplate` tree.

    @system You are a strict reviewer.
    @user Judge this article:
    {article}
    @assistant
    {fork d in ["clarity", "accuracy", "style"]}
    Judgement on {d}: {gen("judgement", max_tokens=64, stop="\\n")}
    {join}
    Overall score (1-10): {gen("score", regex=r"10|[1-9]")}

The lexical rules are in `lexer.py`. Blocks nest: `{fork}`...`{join}`, `{for}`...`{end}`,
`{if}`...`{elif}`...`{else}`...`{end}`; role lines may appear anywhere (a role switch happens at run time).
Python pieces are compiled here, so a syntax error inside `{...}` is reported before anything runs.

`parse_cell(source)` returns a `CellTemplate` or raises `SglSyntaxError` pointing at the problem.
"""

from __future__ import annotations

import ast
import re
from types import CodeType

from sgnb.magics.errors import SglSyntaxError
from sgnb.magics.lexer import Token, tokenize_cell
from sgnb.magics.nodes import (
    CellTemplate,
    Expr,
    Fork,
    For,
    If,
    Node,
    ProgramHeader,
    PyExpr,
    PyTarget,
    Role,
    Text,
)

#: calls whose literal first argument (or name=) names a program variable
GEN_FUNCTIONS = frozenset({"gen", "gen_int", "gen_string", "select"})
JOIN_MODES = {"": "gather_variable", "gather": "gather_variable", "concat": "concate_and_append"}

_FILENAME = "<%%sgl cell>"
_IN = re.compile(r"\bin\b")
_IDENT = re.compile(r"[A-Za-z_]\w*")


def parse_cell(source: str, first_line: int = 1) -> CellTemplate:
    """Parse a cell body. `first_line` is the cell line number of its first line (errors report cell lines)."""
    if not isinstance(source, str):
        raise TypeError(f"cell source must be a str, got {type(source).__name__}")
    source = source.replace("\r\n", "\n")
    parser = _Parser(source, first_line)
    return CellTemplate(source, parser.parse(), first_line, frozenset(parser.var_names))


class _Parser:
    def __init__(self, src: str, first_line: int) -> None:
        self.src = src
        self.first_line = first_line
        self.var_names: set[str] = set()

    def error(self, message: str, offset: int, end_offset: int | None = None) -> SglSyntaxError:
        return SglSyntaxError(message, self.src, offset, end_offset, self.first_line)

    # ---------------------------------------------------------------- tree
    def parse(self) -> list[Node]:
        toks = tokenize_cell(self.src, self.first_line)
        root: list[Node] = []
        # frames: (kind, node, body list being filled, opening token)
        stack: list[tuple[str, object, list[Node], Token | None]] = [("root", None, root, None)]
        for tok in toks:
            body = stack[-1][2]
            if tok.kind == "text":
                if body and isinstance(body[-1], Text):  # only a comment can separate two text tokens
                    body[-1].text += tok.value
                    body[-1].end = tok.end
                else:
                    body.append(Text(tok.value, tok.start, tok.end))
            elif tok.kind == "role":
                body.append(Role(tok.value, tok.start, tok.end))
            elif tok.kind == "expr":
                body.append(Expr(self.compile_expr(tok.value, tok.start + 1, "expression"), tok.start, tok.end))
            elif tok.kind == "block":
                self._block(tok, stack)
        if len(stack) > 1:
            kind, _, _, opener = stack[-1]
            closer = "{join}" if kind == "fork" else "{end}"
            raise self.error(f"unclosed {{{kind}}} block: add {closer}", opener.start, opener.end)
        return root

    def _block(self, tok: Token, stack: list) -> None:
        kw, rest = tok.value, tok.rest
        kind, node, body, opener = stack[-1]
        if kw in ("for", "fork", "if", "elif") and not rest:
            what = {"for": "NAME in ITERABLE", "fork": "NAME in ITERABLE or a count", "if": "a condition",
                    "elif": "a condition"}[kw]
            raise self.error(f"{{{kw}}} needs {what}", tok.start, tok.end)
        if kw in ("else", "end") and rest:
            hint = "; use {elif CONDITION}" if kw == "else" else ""
            raise self.error(f"{{{kw}}} takes nothing after the keyword{hint}", tok.rest_start, tok.end - 1)
        if kw == "for":
            target, iterable = self._for_header(rest, tok.rest_start, "for")
            new = For(target, iterable, [], tok.start, tok.end)
            body.append(new)
            stack.append(("for", new, new.body, tok))
        elif kw == "fork":
            new = self._fork(tok)
            body.append(new)
            stack.append(("fork", new, new.body, tok))
        elif kw == "if":
            new = If([(self.compile_expr(rest, tok.rest_start, "{if} condition"), [])], None, tok.start, tok.end)
            body.append(new)
            stack.append(("if", new, new.branches[0][1], tok))
        elif kw in ("elif", "else"):
            if kind != "if":
                raise self.error(f"{{{kw}}} without an open {{if}}{self._open_hint(stack)}", tok.start, tok.end)
            if node.orelse is not None:
                raise self.error(f"{{{kw}}} after {{else}}: the {{if}} at {self._where(opener)} already has "
                                 "its {else}", tok.start, tok.end)
            if kw == "elif":
                branch_body: list[Node] = []
                node.branches.append((self.compile_expr(rest, tok.rest_start, "{elif} condition"), branch_body))
                stack[-1] = ("if", node, branch_body, opener)
            else:
                node.orelse = []
                stack[-1] = ("if", node, node.orelse, opener)
        elif kw == "end":
            if kind == "fork":
                raise self.error(f"the {{fork}} at {self._where(opener)} is closed with {{join}}, not {{end}}",
                                 tok.start, tok.end)
            if kind == "root":
                raise self.error("{end} without an open {for} or {if}", tok.start, tok.end)
            node.end = tok.end
            stack.pop()
        elif kw == "join":
            if kind in ("for", "if"):
                raise self.error(f"{{join}} while the {{{kind}}} at {self._where(opener)} is open: close it with "
                                 "{end} first", tok.start, tok.end)
            if kind == "root":
                raise self.error("{join} without an open {fork}", tok.start, tok.end)
            if rest not in JOIN_MODES:
                raise self.error(f"unknown join mode {rest!r}: use {{join}} (variables become lists) or "
                                 "{join concat} (append the children's text)", tok.rest_start, tok.end - 1)
            node.join_mode = JOIN_MODES[rest]
            node.end = tok.end
            stack.pop()

    def _where(self, tok: Token | None) -> str:
        if tok is None:
            return "?"
        return f"line {self.first_line + self.src.count(chr(10), 0, tok.start)}"

    def _open_hint(self, stack: list) -> str:
        kind, _, _, opener = stack[-1]
        return "" if kind == "root" else f" (the innermost open block is the {{{kind}}} at {self._where(opener)})"

    def _fork(self, tok: Token) -> Fork:
        rest, start = tok.rest, tok.rest_start
        header_error: SglSyntaxError | None = None
        if _IN.search(rest):
            try:
                target, iterable = self._for_header(rest, start, "fork")
                return Fork(target, iterable, None, [], "gather_variable", tok.start, tok.end)
            except SglSyntaxError as exc:
                header_error = exc
        try:
            count = self.compile_expr(rest, start, "{fork} count")
        except SglSyntaxError as exc:
            if header_error is not None:
                raise header_error from None
            raise self.error(f"{{fork}} takes NAME in ITERABLE or a count: {exc.message}", exc.offset or start,
                             exc.end_offset) from None
        return Fork(None, None, count, [], "gather_variable", tok.start, tok.end)

    # ---------------------------------------------------------------- Python pieces
    def compile_expr(self, text: str, start: int, what: str) -> PyExpr:
        """Compile the cell's characters `text` (at cell offset `start`) as an expression."""
        lead = len(text) - len(text.lstrip())
        text, start = text[lead:].rstrip(), start + lead
        try:
            tree = ast.parse(text, _FILENAME, mode="eval")
        except SyntaxError as exc:
            hint = " (for literal braces write '{{' and '}}')" if what == "expression" else ""
            raise self._syntax_error(exc, PyExpr(text, _NO_CODE, start, start + len(text)), what, hint) from None
        return self._make_expr(tree, text, start, start + len(text), 0)

    def _make_expr(self, tree: ast.Expression, text: str, start: int, end: int, prefix_len: int) -> PyExpr:
        self._collect_var_names(tree)
        code = compile(tree, _FILENAME, "eval")
        nested = any(isinstance(c, CodeType) for c in code.co_consts)
        return PyExpr(text, code, start, end, prefix_len, nested)

    def _for_header(self, rest: str, start: int, keyword: str) -> tuple[PyTarget, PyExpr]:
        """`TARGET in ITERABLE` of a {for}/{fork}, parsed as Python's `for TARGET in ITERABLE: pass`."""
        text = f"for {rest}: pass"
        piece = PyExpr(text, _NO_CODE, start, start + len(rest), prefix_len=4)
        try:
            loop = ast.parse(text, _FILENAME).body[0]
        except SyntaxError as exc:
            raise self._syntax_error(exc, piece, f"{{{keyword}}} header (expected NAME in ITERABLE)") from None
        if not isinstance(loop, ast.For):
            raise self.error(f"{{{keyword}}} header must be NAME in ITERABLE", start, start + len(rest))
        bad = _bad_target(loop.target)
        if bad is not None:
            a = piece.cell_offset(bad.lineno, bad.col_offset, True)
            b = piece.cell_offset(bad.end_lineno or bad.lineno, bad.end_col_offset or bad.col_offset, True)
            raise self.error(f"{{{keyword}}} can only bind names (like `x` or `k, v`), not "
                             f"{type(bad).__name__.lower()}", a, b)
        assign = ast.Module(
            body=[ast.Assign(targets=[loop.target], value=ast.Name("__sgl_item__", ast.Load()))], type_ignores=[]
        )
        ast.copy_location(assign.body[0], loop.target)
        ast.fix_missing_locations(assign)
        target_end = piece.cell_offset(loop.target.end_lineno, loop.target.end_col_offset, True)
        target = PyTarget(rest, compile(assign, _FILENAME, "exec"), start, target_end)
        iterable = self._make_expr(ast.Expression(body=loop.iter), text, start, start + len(rest), 4)
        return target, iterable

    def _syntax_error(self, exc: SyntaxError, piece: PyExpr, what: str, hint: str = "") -> SglSyntaxError:
        lineno = exc.lineno or 1
        lines = piece.text.split("\n")
        line = lines[min(lineno, len(lines)) - 1]
        col = (exc.offset - 1) if exc.offset and exc.offset > 0 else len(line)
        a = piece.cell_offset(lineno, col, False)
        b = None
        if exc.end_lineno and exc.end_offset and (exc.end_lineno, exc.end_offset) > (lineno, col + 1):
            b = piece.cell_offset(exc.end_lineno, exc.end_offset - 1, False)
        a = min(max(a, piece.start), piece.end)
        return self.error(f"invalid Python in {what}: {exc.msg}{hint}", a, b)

    def _collect_var_names(self, tree: ast.AST) -> None:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            fname = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if fname not in GEN_FUNCTIONS:
                continue
            arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value:
                self.var_names.add(arg.value)


_NO_CODE = compile("None", _FILENAME, "eval")


def _bad_target(node: ast.AST) -> ast.AST | None:
    """The first part of a loop target that is not a plain name binding, or None."""
    if isinstance(node, ast.Name):
        return None
    if isinstance(node, ast.Starred):
        return _bad_target(node.value)
    if isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            bad = _bad_target(elt)
            if bad is not None:
                return bad
        return None
    return node


# -------------------------------------------------------------------- `NAME(params)` headers
def parse_header(header: str, line: str | None = None, offset: int = 0) -> ProgramHeader:
    """Parse `NAME` or `NAME(params)` (Python parameter syntax, defaults allowed).

    For error messages, `header` sits at `offset` inside `line` (the `%%sgl ...` line, cell line 1).
    """
    line = header if line is None else line
    text = header.strip()
    offset += len(header) - len(header.lstrip())

    def error(message: str, a: int, b: int | None = None) -> SglSyntaxError:
        return SglSyntaxError(message, line, offset + a, None if b is None else offset + b, 1)

    m = _IDENT.match(text)
    if not m:
        raise error("a program name must be a Python identifier", 0, max(1, len(text)))
    name = m.group(0)
    if name in _KEYWORDS:
        raise error(f"{name!r} is a Python keyword, not a usable program name", 0, len(name))
    params: str | None = None
    after = text[m.end():]
    params_at = len(text)  # where the parameter list starts in `text`
    if after.strip():
        stripped = after.strip()
        if not stripped.startswith("(") or not stripped.endswith(")"):
            raise error(f"expected {name}(param, ...) after the program name", m.end(), len(text))
        params_at = m.end() + (len(after) - len(after.lstrip())) + 1
        params = stripped[1:-1]
    prefix = "def __sgl_signature__(s, "
    source = f"{prefix}{params}): pass" if params and params.strip() else "def __sgl_signature__(s): pass"
    try:
        tree = ast.parse(source, _FILENAME)
        args = tree.body[0].args
        names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg) if a]
        if names.count("s") > 1:
            raise error("parameter name 's' is reserved for the program state", params_at, len(text) - 1)
        code = compile(tree, _FILENAME, "exec")
    except SyntaxError as exc:
        col = (exc.offset or 1) - 1 - len(prefix)
        at = params_at + max(0, min(col, len(params or "")))
        raise error(f"invalid parameter list: {exc.msg}", min(at, len(text) - 1)) from None
    return ProgramHeader(name, params, code)


_KEYWORDS = frozenset(__import__("keyword").kwlist)
