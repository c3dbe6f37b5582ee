"""`import sgnb` is cheap and re-exports SGLang's frontend names lazily."""

from __future__ import annotations

import importlib

import pytest

import sgnb
from tests.fresh_python import heavy_modules_after

SGLANG_NAMES = [
    "gen", "gen_int", "gen_string", "select", "image", "video", "system", "user", "assistant",
    "system_begin", "system_end", "user_begin", "user_end", "assistant_begin", "assistant_end",
    "function", "set_default_backend", "flush_cache", "global_config", "Runtime", "Engine",
    "RuntimeEndpoint", "OpenAI", "token_length_normalized", "greedy_token_selection",
    "unconditional_likelihood_normalized",
]


def test_import_loads_no_heavy_modules():
    code = "import sgnb as sgl\nsgl.gen, sgl.select, sgl.function, sgl.user, sgl.global_config, sgl.set_default_backend"
    assert heavy_modules_after(code) == []


def test_importing_the_packages_and_their_light_exports_loads_no_heavy_modules():
    code = (
        "import sgnb.engine, sgnb.pipeline, sgnb.widgets, sgnb.kernels, sgnb.constrained, sgnb.magics\n"
        "sgnb.engine.EngineError, sgnb.engine.SamplingParams, sgnb.pipeline.export_notebook, sgnb.pipeline.read_rows\n"
        "sgnb.widgets.program_html, sgnb.widgets.cache_data, sgnb.widgets.mark_tokens"
    )
    assert heavy_modules_after(code) == []


@pytest.mark.parametrize("package", ["sgnb", "sgnb.engine", "sgnb.pipeline", "sgnb.widgets"])
def test_every_lazy_export_resolves_and_is_listed(package):
    module = importlib.import_module(package)
    assert module.__all__
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None, name
        assert vars(module)[name] is value, name  # cached: later lookups skip __getattr__
    assert set(module.__all__) <= set(dir(module))


def test_every_sglang_name_resolves():
    for name in SGLANG_NAMES:
        assert getattr(sgnb, name) is not None, name
    assert set(SGLANG_NAMES) <= set(dir(sgnb))


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        sgnb.no_such_thing
