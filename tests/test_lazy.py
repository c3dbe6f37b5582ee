"""`lazy_exports`: one way for package `__init__` modules to re-export names without importing them."""

from __future__ import annotations

import importlib

import pytest

from sgnb._lazy import lazy_exports
from tests.fresh_python import run_fresh


def test_first_lookup_imports_the_defining_module_and_caches_the_value():
    code = (
        "import sys, sgnb.pipeline\n"
        "assert 'sgnb.pipeline.rows' not in sys.modules and 'read_rows' in dir(sgnb.pipeline)\n"
        "read_rows = sgnb.pipeline.read_rows\n"
        "assert read_rows is sys.modules['sgnb.pipeline.rows'].read_rows\n"
        "assert vars(sgnb.pipeline)['read_rows'] is read_rows\n"
    )
    run_fresh(code)


@pytest.mark.parametrize("package", ["sgnb.engine", "sgnb.pipeline", "sgnb.widgets"])
def test_an_unknown_name_is_an_attribute_error_naming_the_package(package):
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match=rf"module '{package}' has no attribute 'no_such_thing'"):
        module.no_such_thing


def test_all_lists_every_exported_name_sorted():
    _, _, names = lazy_exports("pkg", {"pkg.b": ("zeta", "alpha"), "pkg.a": ("Mid",)})
    assert names == ["Mid", "alpha", "zeta"]


def test_a_name_exported_from_two_modules_is_refused():
    with pytest.raises(ValueError, match=r"modules: 'f' is exported from both 'pkg.a' and 'pkg.b'"):
        lazy_exports("pkg", {"pkg.a": ("f",), "pkg.b": ("f", "g")})


def test_a_bare_string_instead_of_a_tuple_of_names_is_refused():
    with pytest.raises(ValueError, match=r"modules\['pkg.a'\] must be a tuple of names"):
        lazy_exports("pkg", {"pkg.a": ("CacheTree")})  # a missing comma makes it a string
