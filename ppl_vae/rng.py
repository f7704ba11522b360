"""The caller's random state: entry points seed their own draws and leave the global generators alone.

``train``, ``compare_posteriors``, the per-point fits and the other entry
points take a ``seed`` and call ``pyro.set_rng_seed`` for reproducible
results. :func:`keeps_global_rng` saves every global generator that call
touches (torch's CPU and CUDA generators, Python's ``random``, NumPy's legacy
global state) before the function runs and puts it back afterwards, even
when it raises, so a caller's own random stream is the same with or without
the call in between.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import pyro.util
import torch

Parameters = ParamSpec("Parameters")
Result = TypeVar("Result")


def global_rng_state() -> dict[str, Any]:
    """Every global generator's state: torch (CPU, and CUDA once initialized), random, NumPy."""
    state = pyro.util.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`global_rng_state` returned."""
    pyro.util.set_rng_state(state)
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def keeps_global_rng(function: Callable[Parameters, Result]) -> Callable[Parameters, Result]:
    """Decorate an entry point so that the global random state after it equals the state before."""

    @functools.wraps(function)
    def wrapper(*args: Parameters.args, **kwargs: Parameters.kwargs) -> Result:
        state = global_rng_state()
        try:
            return function(*args, **kwargs)
        finally:
            set_global_rng_state(state)

    return wrapper
