"""Lazy re-exports for package `__init__` modules, so importing a package loads none of its heavy parts.

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {
        "sgnb.widgets.cache_tree": ("CacheTree",),
        "sgnb.widgets.static_html": ("program_html", "cache_html"),
    })
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, modules: dict[str, tuple[str, ...]]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Module-level `__getattr__`, `__dir__` and `__all__` for `package`.

    modules: module -> the public names it defines, re-exported under the same names. The first lookup of a
    name imports its module and caches the value in the package's globals, so later lookups skip `__getattr__`.
    """
    exports: dict[str, str] = {}  # public name -> module
    for module, names in modules.items():
        if isinstance(names, str):
            raise ValueError(f"modules[{module!r}] must be a tuple of names, not the string {names!r}")
        for name in names:
            if name in exports:
                raise ValueError(f"modules: {name!r} is exported from both {exports[name]!r} and {module!r}")
            exports[name] = module

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        vars(sys.modules[package])[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__, sorted(exports)
