"""Per-request sampling parameters, with SGLang's names, validated on construction.

`SamplingParams`' fields are the one list of sampling fields. The engine and the native `/generate` route
take every field under its own name; each field's metadata says under which name the other surfaces take
it: `sgl.gen` (`gen`), the `run`/`run_batch` defaults (`run`) and the OpenAI routes (`openai`, an OpenAI
name or a vLLM/SGLang extension). `SAMPLING_FIELDS` reads that list; `check_value` validates one field
on its own (what `gen()` can check before the program's defaults are known), `__post_init__` adds the
rules between fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from numbers import Integral, Real
from typing import Any

#: what `torch.Generator.manual_seed` accepts (it raises OverflowError outside)
SEED_RANGE = (-(2**63), 2**64 - 1)
#: a temperature below this samples greedily (dividing logits by it would overflow to inf/NaN)
GREEDY_TEMPERATURE = 1e-5
#: the fields that constrain a gen's output; a request takes at most one of them
CONSTRAINT_FIELDS = ("regex", "json_schema", "ebnf", "lark")

Check = Callable[[str, Any], Any]   # (name to report, value) -> the normalized value; ValueError if bad


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _int_at_least(low: int) -> Check:
    def check(name: str, value: Any) -> Any:
        if not _is_int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value!r}")
        return value
    return check


def _top_k(name: str, value: Any) -> Any:
    if not _is_int(value) or value == 0 or value < -1:
        raise ValueError(f"{name} must be -1 (disabled) or an integer >= 1, got {value!r}")
    return value


def _number(low: float, high: float = math.inf, is_low_open: bool = False) -> Check:
    shown = f"{'(' if is_low_open else '['}{low}, {high}]" if high != math.inf else f">= {low}"

    def check(name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not (low < value if is_low_open else low <= value) or value > high:
            raise ValueError(f"{name} must be {'in ' if high != math.inf else ''}{shown}, got {value!r}")
        return value
    return check


def _stop_strings(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or any(not isinstance(s, str) or not s for s in value):
        raise ValueError(f"{name} must be a non-empty string or a list of non-empty strings, got {value!r}")
    return list(value)


def _token_ids(name: str, value: Any) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or any(not _is_int(t) or t < 0 for t in value):
        raise ValueError(f"{name} must be a list of token ids (integers >= 0), got {value!r}")
    return list(value)


def _seed(name: str, value: Any) -> Any:
    low, high = SEED_RANGE
    if value is not None and (not _is_int(value) or not low <= value <= high):
        raise ValueError(f"{name} must be an integer in [-2**63, 2**64 - 1] or null, got {value!r}")
    return value


def _of_type(kinds: tuple[type, ...], what: str, is_optional: bool = False) -> Check:
    def check(name: str, value: Any) -> Any:
        if not isinstance(value, kinds) and not (is_optional and value is None):
            raise ValueError(f"{name} must be {what}{' or null' if is_optional else ''}, got {value!r}")
        return value
    return check


_BOOL = _of_type((bool,), "true or false")


def _param(default: Any, check: Check, *, gen: str | None = "", run: bool = True, openai: str | None = "") -> Any:
    """A field of the one list: `gen`/`openai` name it on those surfaces ("": the engine's name, None: not there)."""
    meta = {"check": check, "gen": gen, "run": run, "openai": openai}
    if isinstance(default, list):
        return field(default_factory=list, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(slots=True)
class SamplingParams:
    max_new_tokens: int = _param(128, _int_at_least(0), gen="max_tokens", openai="max_tokens")
    min_new_tokens: int = _param(0, _int_at_least(0), gen="min_tokens", openai="min_tokens")
    temperature: float = _param(1.0, _number(0))
    top_p: float = _param(1.0, _number(0, 1, is_low_open=True))
    top_k: int = _param(-1, _top_k)                       # -1: whole vocabulary
    min_p: float = _param(0.0, _number(0, 1))
    frequency_penalty: float = _param(0.0, _number(-2, 2))
    presence_penalty: float = _param(0.0, _number(-2, 2))
    repetition_penalty: float = _param(1.0, _number(0, 2, is_low_open=True))
    stop: list[str] = _param([], _stop_strings)
    stop_token_ids: list[int] = _param([], _token_ids)
    ignore_eos: bool = _param(False, _BOOL)
    sampling_seed: int | None = _param(None, _seed, openai="seed")
    # constraints belong to one gen, not to a whole run
    regex: str | None = _param(None, _of_type((str,), "a string", is_optional=True), run=False)
    json_schema: str | dict | None = _param(
        None, _of_type((str, dict), "a JSON schema (string or object)", is_optional=True), run=False)
    ebnf: str | None = _param(None, _of_type((str,), "a grammar string", is_optional=True), run=False)  # GBNF-style
    lark: str | None = _param(None, _of_type((str,), "a Lark grammar string", is_optional=True), run=False)
    # how json_schema output is laid out: compact, flexible, pretty or a regex
    json_whitespace: str = _param("compact", _of_type((str,), "a string"))
    jump_forward: bool | None = _param(None, _of_type((bool,), "true or false", is_optional=True))  # None: engine's
    skip_special_tokens: bool = _param(True, _BOOL)
    no_stop_trim: bool = _param(False, _BOOL)

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, f.metadata["check"](f.name, getattr(self, f.name)))
        if self.max_new_tokens <= 0:   # 0 (prefill only) is for callers that score, never a request's params
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens must be in [0, max_new_tokens], got {self.min_new_tokens!r}")
        given = [name for name in CONSTRAINT_FIELDS if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"{given[0]} and {given[1]} are mutually exclusive")

    @property
    def is_constrained(self) -> bool:
        return any(getattr(self, name) is not None for name in CONSTRAINT_FIELDS)

    @property
    def is_greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE or self.top_k == 1

    @property
    def has_penalties(self) -> bool:
        return self.frequency_penalty != 0 or self.presence_penalty != 0 or self.repetition_penalty != 1

    @classmethod
    def from_dict(cls, params: dict[str, Any] | None) -> SamplingParams:
        if params and not isinstance(params, Mapping):        # None, {} (and the engine's []) mean defaults
            raise ValueError(f"sampling_params must be a dict, got {type(params).__name__}")
        params = dict(params or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown sampling parameter(s): {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        return cls(**params)


@dataclass(frozen=True, slots=True)
class SamplingField:
    """One entry of the list, as the surfaces read it."""

    name: str                  # the engine's and the native /generate route's name
    gen_name: str | None       # the `sgl.gen` keyword
    is_run_default: bool       # `run(...)` / `run_batch(...)` take it as a default for every gen
    openai_name: str | None    # the OpenAI routes' field (an OpenAI name or an extension)
    check: Check

    @property
    def default(self) -> Any:
        f = _FIELDS[self.name]
        return f.default_factory() if f.default is MISSING else f.default


def _surface_name(f: Any, surface: str) -> str | None:
    name = f.metadata[surface]
    return f.name if name == "" else name


_FIELDS = {f.name: f for f in fields(SamplingParams)}

SAMPLING_FIELDS: tuple[SamplingField, ...] = tuple(
    SamplingField(f.name, _surface_name(f, "gen"), f.metadata["run"], _surface_name(f, "openai"), f.metadata["check"])
    for f in fields(SamplingParams)
)


def check_value(name: str, value: Any, shown_as: str | None = None) -> Any:
    """Validate field `name` alone (no rules between fields); the error names it `shown_as` (default: name)."""
    return _FIELDS[name].metadata["check"](shown_as or name, value)
