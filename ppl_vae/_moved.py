"""Old module paths kept for one release: each forwards its names to where they moved, with a warning."""

from __future__ import annotations

import importlib
import sys
import types
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


def moved_module(old: str, new: str) -> None:
    """Keep the path of a module that moved importable: a module whose names forward to ``new``.

    The old module's file is gone (``git mv`` keeps its history whole), so the
    forwarder is put in ``sys.modules`` and not on its parent package, where an
    export of the same name (``ppl_vae.inference.batched_nuts``, the function)
    stays what it was.

    Parameters
    ----------
    old : str
        The old module path, e.g. ``"ppl_vae.inference.likelihood"``.
    new : str
        The module it moved to, e.g. ``"ppl_vae.inference.importance"``.
    """
    if old not in sys.modules:
        module = types.ModuleType(old, f"Moved to :mod:`{new}`; this path goes in the next release.")
        module.__getattr__ = forward(old, new)  # type: ignore[method-assign]
        sys.modules[old] = module
