"""Batched NUTS on hard digit posteriors of the 100-digit benchmark, against their exact moments.

The benchmark (``benchmarks/peers_vs_ppl_vae.py``, NUTS part) samples p(z | x)
of the first 100 mnist5k test digits under the latent-2 VAE (784-400-2, 200
epochs) with 4 chains x (1,000 + 3,000) each. In one independent run digit 72
was left unconverged (its posterior there is curved, with minor modes). Here
the same model is trained and every digit's exact posterior is computed on a
grid: digit 72 should converge over five seeds (R-hat, bulk ESS, no divergence)
to its exact mean and standard deviations within their Monte Carlo errors.
Four seeds do; one failed the convergence check in the run that added this
test, so the test is an expected failure until adaptation is fixed.

The least Gaussian of the 100 posteriors is bimodal, and the chains, started
around the encoder's mean, all sit in the encoder's mode: R-hat is fine and the
mean is wrong by hundreds of Monte Carlo errors (the second test, an expected
failure until the chains start overdispersed enough to land in both modes).
"""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch
from helpers.quadrature import posterior_moments_grid

from ppl_vae import VAE, SVIConfig, load_dataset, train
from ppl_vae.data import evaluation_data
from ppl_vae.evaluation.diagnostics import check_convergence
from ppl_vae.inference import NUTSConfig, sample_posterior

pytestmark = pytest.mark.slow

#: Deviation allowed, in Monte Carlo standard errors (|Z| > 4.5 has p < 1e-5 per check).
MC_Z = 4.5
SEEDS = range(5)


@pytest.fixture(scope="module")
def benchmark_model():
    """The benchmark's latent-2 VAE, its first 100 test digits and their exact posterior moments."""
    pyro.set_rng_seed(0)
    data = load_dataset("mnist5k")
    vae = VAE(data.data_dim, 2, hidden_dims=(400,))
    train(vae, data.train_x, SVIConfig(epochs=200, binarize="dynamic", seed=0))
    vae.eval()
    x = evaluation_data(data.test_x, "dynamic", 0)[:100]
    return vae, x, *posterior_moments_grid(vae, x)


def _check_against_exact(vae, x, exact_mean, exact_covariance, seed: int) -> None:
    config = NUTSConfig(num_samples=3000, warmup_steps=1000, num_chains=4, scheme="batched", dense_mass=True,
                        seed=seed, adapt_threads=False)
    result = sample_posterior(vae, x, config)
    report = check_convergence(result.to_inference_data())
    r_hat = np.asarray(report.r_hat).reshape(len(x), 2)
    ess = np.asarray(report.ess_bulk).reshape(len(x), 2)
    divergences = result.sample_stats["diverging"].sum((0, 1))
    assert (r_hat.max(1) <= 1.01).all() and (ess.min(1) >= 400).all() and (divergences == 0).all(), (
        f"R-hat {r_hat.max(1)}, bulk ESS {ess.min(1)}, divergences {divergences.tolist()}")
    draws = result.samples.flatten(0, 1).double()  # (draws, points, 2)
    mean, sd = draws.mean(0), draws.std(0)
    mcse = sd / torch.as_tensor(ess).sqrt()
    z = (mean - exact_mean) / mcse
    assert bool((z.abs() < MC_Z).all()), f"mean off by {z} Monte Carlo errors"
    # The relative error of a standard deviation from n effective draws: sqrt((kurtosis - 1) / (4 n)).
    kurtosis = ((draws - mean) / sd).pow(4).mean(0)
    sd_error = ((kurtosis - 1) / (4 * torch.as_tensor(ess))).sqrt()
    exact_sd = exact_covariance.diagonal(dim1=-2, dim2=-1).sqrt()
    assert bool(((sd / exact_sd - 1).abs() < MC_Z * sd_error).all()), f"sd ratio {sd / exact_sd}"


@pytest.mark.xfail(reason="on a model trained here, one of the five seeds failed the R-hat / ESS / divergence "
                          "check (issue 25 item 4, open)", strict=False)
@pytest.mark.parametrize("seed", SEEDS)
def test_digit_72_converges_to_its_exact_posterior(benchmark_model, seed):
    vae, x, mean, covariance, _ = benchmark_model
    _check_against_exact(vae, x[72:73], mean[72:73], covariance[72:73], seed)


@pytest.mark.xfail(reason="all chains start in the encoder's mode and never visit the other one; R-hat "
                          "cannot see it (known, issue 25 item 4)", strict=False)
def test_the_least_gaussian_posterior_is_sampled_in_full(benchmark_model):
    vae, x, mean, covariance, non_gaussianity = benchmark_model
    worst = int(non_gaussianity.argmax())
    _check_against_exact(vae, x[worst:worst + 1], mean[worst:worst + 1], covariance[worst:worst + 1], seed=0)
