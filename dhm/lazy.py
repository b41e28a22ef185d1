"""Package attributes loaded on first use: a package's `__getattr__` from a name -> module table,
so importing the package (for `dhm --help`, or one light name) loads no heavy module."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(table: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` that imports `table[name]` and returns its `name`."""

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(name)

    return __getattr__
