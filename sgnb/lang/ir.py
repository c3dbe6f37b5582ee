"""The language's primitives: what `s += ...` accepts.

Expressions are plain data. `"Q: " + gen("a")` builds a `Concat`; the interpreter walks it in order.
Names and arguments follow SGLang (`gen(name, max_tokens, ..., regex, json_schema, choices)`,
`select(name, choices, temperature, choices_method)`, `user(expr)` / `user_begin()` ...).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

from sgnb.lang.backends.base import SamplingSpec
from sgnb.lang.choices import ChoicesMethod, resolve_choices_method
from sgnb.lang.sampling_args import GEN_KEYWORDS, pop_sampling, with_keywords

_expr_ids = itertools.count()


class Expr:
    """Base of everything that can be appended to a program state."""

    def __add__(self, other: Any) -> Concat:
        return Concat([self, to_expr(other)])

    def __radd__(self, other: Any) -> Concat:
        return Concat([to_expr(other), self])

    def flatten(self) -> list[Expr]:
        return [self]


@dataclass(eq=False)
class Constant(Expr):
    """Literal text."""

    value: str

    def __repr__(self) -> str:
        return f"Constant({self.value!r})"


@dataclass(eq=False)
class Concat(Expr):
    """A sequence of expressions, executed in order."""

    items: list[Expr]

    def flatten(self) -> list[Expr]:
        out: list[Expr] = []
        for item in self.items:
            out.extend(item.flatten())
        return out


@dataclass(eq=False)
class Gen(Expr):
    """Generate text into variable `name` (None: unnamed, only visible through the state text / var_scope).

    `sampling` holds only the arguments the program passed; run()'s defaults fill the rest.
    """

    name: str | None
    sampling: dict[str, Any] = field(default_factory=dict)
    expr_id: int = field(default_factory=lambda: next(_expr_ids))

    def resolve(self, defaults: SamplingSpec) -> SamplingSpec:
        """Merge with the program's defaults into a validated `SamplingSpec`."""
        return defaults.replace(**self.sampling)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.sampling.items())
        return f"Gen({self.name!r}{', ' if args else ''}{args})"


@dataclass(eq=False)
class Select(Expr):
    """Choose one of `choices` as the continuation; stores the choice in variable `name`."""

    name: str | None
    choices: list[str]
    temperature: float = 0.0
    choices_method: ChoicesMethod = field(default_factory=lambda: resolve_choices_method(None))
    expr_id: int = field(default_factory=lambda: next(_expr_ids))


@dataclass(eq=False)
class Image(Expr):
    """An image input: a file path, URL, bytes, base64 string or PIL image."""

    data: Any


@dataclass(eq=False)
class Video(Expr):
    """A video input sampled to `num_frames` frames."""

    path: Any
    num_frames: int


@dataclass(eq=False)
class RoleBegin(Expr):
    role: str


@dataclass(eq=False)
class RoleEnd(Expr):
    role: str


@dataclass(eq=False)
class VarScopeBegin(Expr):
    name: str


@dataclass(eq=False)
class VarScopeEnd(Expr):
    name: str


def to_expr(value: Any) -> Expr:
    """Strings (and anything else, through str()) become constants; expressions pass through."""
    if isinstance(value, Expr):
        return value
    if callable(value) and not isinstance(value, str):
        raise TypeError(
            f"cannot append {value!r} to a program state; a callable is only accepted by forks "
            "(`forks += lambda i: ...`)"
        )
    return Constant(str(value))


def _check_name(name: Any, what: str) -> None:
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"{what} name must be a non-empty string or None, got {name!r}")


@with_keywords(GEN_KEYWORDS, defaults=None)
def gen(
    name: str | None = None,
    max_tokens: int | None = None,
    *,
    choices: Sequence[str] | None = None,
    choices_method: ChoicesMethod | str | None = None,
    **sampling: Any,
) -> Gen | Select:
    """Generate into variable `name`. With `choices`, this is `select(name, choices)`.

    The sampling keywords are `sgnb.lang.sampling_args.GEN_KEYWORDS` (SGLang's names: `max_tokens`,
    `min_tokens`, `stop`, `temperature`, ..., `repetition_penalty`, `sampling_seed`). Unset ones take the
    program's defaults (`run(max_new_tokens=..., temperature=...)`). `dtype` (int, float, str, bool),
    `regex`, `json_schema` and the grammars `ebnf` (GBNF-style EBNF) / `lark` constrain the output.
    """
    _check_name(name, "gen")
    given = pop_sampling(sampling, GEN_KEYWORDS)
    if sampling:
        raise TypeError(f"gen() got unexpected keyword argument(s): {', '.join(sorted(sampling))}")
    if choices is not None:
        return select(name, list(choices), temperature=given.get("temperature") or 0.0, choices_method=choices_method)
    if max_tokens is not None:
        given["max_new_tokens"] = max_tokens
    spec = SamplingSpec().replace(**given)  # validate now, so the error points at the gen() call
    return Gen(name, {key: getattr(spec, key) for key in given})  # as validated: a stop string in a list


def gen_int(name: str | None = None, **kwargs: Any) -> Gen:
    """`gen(name, dtype=int, ...)`."""
    return gen(name, dtype=int, **kwargs)


def gen_string(name: str | None = None, **kwargs: Any) -> Gen:
    """`gen(name, dtype=str, ...)`: a double-quoted string."""
    return gen(name, dtype=str, **kwargs)


def select(
    name: str | None = None,
    choices: Sequence[str] | None = None,
    temperature: float = 0.0,
    choices_method: ChoicesMethod | str | None = None,
) -> Select:
    """Choose one of `choices` by the model's log-probabilities (see `sgnb.lang.choices`)."""
    _check_name(name, "select")
    if choices is None or isinstance(choices, str) or len(choices) == 0:
        raise ValueError(f"select({name!r}) needs a non-empty list of choices, got {choices!r}")
    choices = [str(c) for c in choices]
    if temperature < 0:
        raise ValueError(f"select temperature must be >= 0, got {temperature}")
    return Select(name, choices, temperature, resolve_choices_method(choices_method))


def image(data: Any) -> Image:
    """An image for multimodal models (path, URL, bytes, base64 string or PIL image)."""
    if data is None:
        raise ValueError("image() needs a path, URL, bytes or PIL image, got None")
    return Image(data)


def video(path: Any, num_frames: int) -> Video:
    """A video for multimodal models, sampled to `num_frames` frames."""
    if num_frames < 1:
        raise ValueError(f"video num_frames must be >= 1, got {num_frames}")
    return Video(path, num_frames)


def _role(role: str, expr: Any = None) -> Concat:
    items: list[Expr] = [RoleBegin(role)]
    if expr is not None:
        items.append(to_expr(expr))
    items.append(RoleEnd(role))
    return Concat(items)


def system(expr: Any = None) -> Concat:
    return _role("system", expr)


def user(expr: Any = None) -> Concat:
    return _role("user", expr)


def assistant(expr: Any = None) -> Concat:
    return _role("assistant", expr)


def system_begin() -> RoleBegin:
    return RoleBegin("system")


def system_end() -> RoleEnd:
    return RoleEnd("system")


def user_begin() -> RoleBegin:
    return RoleBegin("user")


def user_end() -> RoleEnd:
    return RoleEnd("user")


def assistant_begin() -> RoleBegin:
    return RoleBegin("assistant")


def assistant_end() -> RoleEnd:
    return RoleEnd("assistant")
