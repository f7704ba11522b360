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
import random
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np
import torch

Parameters = ParamSpec("Parameters")
Result = TypeVar("Result")


def torch_rng_state() -> dict[str, Any]:
    """torch's generator states (CPU, and CUDA once initialized): what a training checkpoint holds."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_torch_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`torch_rng_state` returned (from any device a checkpoint was mapped to)."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def global_rng_state() -> dict[str, Any]:
    """Every global generator's state: torch (CPU, and CUDA once initialized), random, NumPy."""
    return {**torch_rng_state(), "random": random.getstate(), "numpy": np.random.get_state()}


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`global_rng_state` returned."""
    set_torch_rng_state(state)
    random.setstate(state["random"])
    np.random.set_state(state["numpy"])


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
