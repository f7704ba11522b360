"""Old module paths kept for one release: each forwards its names to where they moved, with a warning."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def forward(old: str, *targets: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` that finds ``name`` in the first of ``targets`` that has it.

    Parameters
    ----------
    old : str
        The old module's name, for the warning.
    *targets : str
        The modules the names moved to, searched in order.
    """

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for target in targets:
            module = importlib.import_module(target)
            if hasattr(module, name):
                warnings.warn(f"{old}.{name} moved to {target}.{name}; the old path goes in the "
                              "next release", DeprecationWarning, stacklevel=2)
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return __getattr__
