"""The sampling keyword arguments of `gen`, `run` and `run_batch`, derived from the one list of fields.

The engine's fields (`sgnb.engine.sampling_params.SAMPLING_FIELDS`) say under which `gen` keyword each is
taken and whether `run` takes it as a default; the language adds its own (`LANG_FIELDS`). The functions
take them as `**kwargs` and show them in their signature (`help()`, tab completion) through
`with_keywords`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from sgnb.engine.sampling_params import SAMPLING_FIELDS
from sgnb.lang.backends.base import LANG_FIELDS, SamplingSpec

#: accepted for SGLang compatibility and without effect (texts are always returned with logprobs)
IGNORED_KEYWORDS = ("return_text_in_logprobs",)
_REQUEST_FIELDS = ("n", "return_logprob", "logprob_start_len", "top_logprobs_num")

#: gen() keyword -> SamplingSpec field
GEN_KEYWORDS: dict[str, str] = {
    **{f.gen_name: f.name for f in SAMPLING_FIELDS if f.gen_name is not None},
    **{name: name for name, _, _ in LANG_FIELDS if name != "choices"},   # gen(choices=...) is a select
}
#: run() / run_batch() keyword -> SamplingSpec field: the defaults of every gen of the run
RUN_KEYWORDS: dict[str, str] = {
    **{f.name: f.name for f in SAMPLING_FIELDS if f.is_run_default},
    **{name: name for name in _REQUEST_FIELDS},
}


def with_keywords(keywords: dict[str, str], defaults: SamplingSpec | None,
                  keep_var_keyword: bool = False) -> Callable[[Callable], Callable]:
    """Show `keywords` in the function's signature as keyword-only parameters in place of its `**kwargs`
    (before it with `keep_var_keyword`, when `**kwargs` also takes other arguments). They default to
    `defaults`' values, or to None ("not given") without `defaults`."""

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func)
        params = list(signature.parameters.values())
        var_keyword = params.pop()
        taken = {p.name for p in params}
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                              default=None if defaults is None or name not in keywords
                              else getattr(defaults, keywords[name]))
            for name in [*keywords, *IGNORED_KEYWORDS] if name not in taken
        ]
        func.__signature__ = signature.replace(parameters=params + added + ([var_keyword] if keep_var_keyword else []))
        return func

    return decorate


def pop_sampling(kwargs: dict[str, Any], keywords: dict[str, str]) -> dict[str, Any]:
    """Remove `keywords` from `kwargs`; returns the given ones (not None) as SamplingSpec field -> value."""
    taken = {}
    for name in [*keywords, *IGNORED_KEYWORDS]:
        value = kwargs.pop(name, None)
        if value is not None and name in keywords:
            taken[keywords[name]] = value
    return taken


def pop_run_defaults(kwargs: dict[str, Any]) -> SamplingSpec:
    """Remove the sampling keywords of `run(...)` / `run_batch(...)` from `kwargs`; the SamplingSpec every gen
    of the run starts from."""
    return SamplingSpec(**pop_sampling(kwargs, RUN_KEYWORDS))
