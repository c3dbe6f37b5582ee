"""`import sgnb` is cheap and re-exports SGLang's frontend names lazily."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import sgnb

SGLANG_NAMES = [
    "gen", "gen_int", "gen_string", "select", "image", "video", "system", "user", "assistant",
    "system_begin", "system_end", "user_begin", "user_end", "assistant_begin", "assistant_end",
    "function", "set_default_backend", "flush_cache", "global_config", "Runtime", "Engine",
    "RuntimeEndpoint", "OpenAI", "token_length_normalized", "greedy_token_selection",
    "unconditional_likelihood_normalized",
]


def test_import_loads_no_heavy_modules():
    code = (
        "import sys, sgnb as sgl\n"
        "sgl.gen, sgl.select, sgl.function, sgl.user, sgl.global_config, sgl.set_default_backend\n"
        "heavy = [m for m in ('torch', 'triton', 'ipywidgets', 'transformers', 'IPython') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_every_sglang_name_resolves():
    for name in SGLANG_NAMES:
        assert getattr(sgnb, name) is not None, name
    assert set(SGLANG_NAMES) <= set(dir(sgnb))


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        sgnb.no_such_thing
