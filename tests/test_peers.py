"""The compiled JAX peers of benchmarks/peers: the port computes ppl_vae's model, the driver runs.

CI does not install the ``bench`` extra; there only the missing-package test runs.
"""

from __future__ import annotations

import builtins
import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

#: Two independent IWAE estimates of the same bound differ by less than this many
#: standard errors of their difference (a false alarm once in ~150,000 runs).
MC_Z = 4.5


def test_missing_peer_package_gives_one_line(monkeypatch):
    from peers import INSTALL_HINT, missing_package

    real_import = builtins.__import__

    def no_numpyro(name, *args, **kwargs):
        if name == "numpyro" or name.startswith("numpyro."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "numpyro", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_numpyro)
    line = missing_package(("os", "numpyro", "json"))
    assert line == f"numpyro not installed: {INSTALL_HINT}"
    assert "\n" not in line
    assert missing_package(("os", "json")) is None


@pytest.fixture(scope="module")
def small_problem():
    """An untrained 784-32-4 VAE and 40 binarized test digits."""
    pytest.importorskip("jax")
    from peers.problems import Problem, evaluation_digits, load_vae

    return Problem(load_vae(None, latent_dim=4, hidden=32, seed=3), evaluation_digits(None, 40))


def test_jax_port_log_joint_equals_ppl_vae(small_problem):
    from peers import jax_vae

    params = jax_vae.port(small_problem.model)
    z = torch.randn(3, len(small_problem.x), 4, generator=torch.Generator().manual_seed(1))
    assert jax_vae.check_port(small_problem.model, params, small_problem.x, z) <= jax_vae.LOG_JOINT_RTOL
    assert jax_vae.check_port(small_problem.model, params, small_problem.x) <= jax_vae.LOG_JOINT_RTOL


def test_jax_port_check_catches_a_wrong_port(small_problem):
    from peers import jax_vae

    params = jax_vae.port(small_problem.model)
    weight, bias = params["decoder"][-1]
    params["decoder"][-1] = (weight, bias + 1e-3)
    with pytest.raises(AssertionError, match="does not compute the model"):
        jax_vae.check_port(small_problem.model, params, small_problem.x)


def test_jax_encoder_equals_ppl_vae(small_problem):
    import numpy as np
    from peers import jax_vae

    params = jax_vae.port(small_problem.model)
    loc, scale = jax_vae.encode(params, jax_vae.as_jax(small_problem.x))
    with torch.no_grad():
        expected_loc, expected_scale = small_problem.model.encode(small_problem.x)
    np.testing.assert_allclose(np.asarray(loc), expected_loc.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(scale), expected_scale.numpy(), rtol=1e-5, atol=1e-6)


def test_jax_iwae_mean_agrees_with_ppl_vae(small_problem):
    import jax
    import numpy as np
    from peers import jax_iwae, jax_vae

    from ppl_vae import iwae

    num_samples = 500
    params = jax_vae.port(small_problem.model)
    got = np.asarray(jax_iwae.iwae(params, jax_vae.as_jax(small_problem.x), num_samples,
                                   jax.random.key(0), latent_dim=4), dtype=np.float64)
    torch.manual_seed(0)
    expected = iwae(small_problem.model, small_problem.x, num_samples)
    stderr_of_mean = math.sqrt(float((expected.delta_stderr.double() ** 2).sum())) / len(got)
    assert got.shape == (len(small_problem.x),)
    # the same bound from independent draws: the difference has twice the variance
    assert abs(got.mean() - expected.mean) <= MC_Z * math.sqrt(2) * stderr_of_mean


def test_jax_iwae_chunks_follow_ppl_vae_rule():
    pytest.importorskip("jax")
    from peers.jax_iwae import chunk_plan

    # 2^21 decoder outputs per pass on a CPU: 500 digits x 5 samples x 784 pixels
    assert chunk_plan(500, 784, 20, 5000) == (500, 5)
    assert chunk_plan(3000, 784, 20, 1000) == (2674, 1)
