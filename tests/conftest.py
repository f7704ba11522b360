"""Shared fixtures: a fresh Pyro state, a seed and validation for every test.

The tests mirror the package (``tests/<layer>/test_<module>.py``, ``tests/system/`` for
the reliability, fuzz, interrupt, determinism and memory tests, ``tests/docs/`` for the
site and tutorials); the helpers they share live here at the top of ``tests/`` and are
imported by name from any folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyro
import pytest
import torch

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture(autouse=True)
def fresh_pyro_state():
    """Clear the param store, seed every RNG and turn Pyro's validation on."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(True):
        yield
    pyro.clear_param_store()


@pytest.fixture
def diagonal_ppca():
    """pPCA with orthogonal weight columns (its exact posterior is a diagonal Gaussian),
    an encoder that is off on purpose, and 6 points drawn from it, in float64."""
    import math

    from ppl_vae.models import LinearGaussian

    torch.manual_seed(0)
    model = LinearGaussian(5, 2).double()
    basis, _ = torch.linalg.qr(torch.randn(5, 2, dtype=torch.float64))
    with torch.no_grad():
        model.decoder.weight.copy_(basis * torch.tensor([2.0, 0.7], dtype=torch.float64))
        model.decoder.log_noise_scale.fill_(math.log(0.5))
        model.encoder.bias.fill_(0.5)
    return model, model.marginal().sample((6,)).detach()


@pytest.fixture(scope="session")
def digits_vae():
    """A small VAE (latent_dim 2) trained briefly on the 8x8 digits, and its binarized test set."""
    from ppl_vae.data import evaluation_data, load_dataset
    from ppl_vae.models import VAE
    from ppl_vae.training import SVIConfig, train

    pyro.set_rng_seed(0)
    data = load_dataset("digits")
    vae = VAE(64, 2, hidden_dims=(64,))
    train(vae, data.train_x, SVIConfig(epochs=15, batch_size=64, learning_rate=3e-3,
                                       binarize="dynamic"))
    pyro.clear_param_store()
    return vae, evaluation_data(data.test_x, "dynamic", 0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA; no GPU visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A run folder of ``ppl-vae train`` on the tiny settings (tests read it, never write to it)."""
    from helpers.cli_runs import TINY

    from ppl_vae.cli import main

    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


# Session fixtures of the browser, docs and tutorial tests (tests/_browser.py, tests/_docs.py):
# defined once here, so that one Chromium and one smoke build of the docs serve them all.
from _browser import chromium  # noqa: E402,F401
from _docs import docs_smoke_build  # noqa: E402,F401
