"""Shared fixtures: a fresh Pyro state, a seed and validation for every test."""

from __future__ import annotations

import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def fresh_pyro_state():
    """Clear the param store, seed every RNG and turn Pyro's validation on."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(True):
        yield
    pyro.clear_param_store()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA; no GPU visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
