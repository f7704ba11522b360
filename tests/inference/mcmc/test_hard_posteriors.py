"""Batched NUTS on the hardest digit posteriors of the 100-digit benchmark, over five seeds.

The benchmark (``benchmarks/peers_vs_ppl_vae.py``, NUTS part) samples p(z | x)
of the first 100 mnist5k test digits under the latent-2 VAE (784-400-2, 200
epochs) with 4 chains x (1,000 + 3,000) each. In one independent run digit 72
was left unconverged; its posterior there is curved (correlation -0.87) with
two minor modes. Here the same model is trained, the exact posterior of every
one of the 100 digits is computed on a grid, and batched NUTS runs on digit 72
and the three digits whose posteriors are furthest from a Gaussian, with five
seeds: every run must converge (R-hat, bulk ESS, no divergence) and match the
exact posterior mean and standard deviations within their Monte Carlo errors.
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
def hard_digits():
    """The benchmark's latent-2 VAE, and digit 72 plus the three least Gaussian posteriors of its first 100 digits."""
    pyro.set_rng_seed(0)
    data = load_dataset("mnist5k")
    vae = VAE(data.data_dim, 2, hidden_dims=(400,))
    train(vae, data.train_x, SVIConfig(epochs=200, binarize="dynamic", seed=0))
    vae.eval()
    x = evaluation_data(data.test_x, "dynamic", 0)[:100]
    mean, covariance, non_gaussianity = posterior_moments_grid(vae, x)
    chosen = sorted({72, *non_gaussianity.argsort(descending=True)[:3].tolist()})
    return vae, x[chosen], mean[chosen], covariance[chosen], chosen


@pytest.mark.parametrize("seed", SEEDS)
def test_the_hardest_digits_converge_to_their_exact_posteriors(hard_digits, seed):
    vae, x, exact_mean, exact_covariance, chosen = hard_digits
    config = NUTSConfig(num_samples=3000, warmup_steps=1000, num_chains=4, scheme="batched", dense_mass=True,
                        seed=seed, adapt_threads=False)
    result = sample_posterior(vae, x, config)
    report = check_convergence(result.to_inference_data())
    r_hat = np.asarray(report.r_hat).reshape(len(chosen), 2)
    ess = np.asarray(report.ess_bulk).reshape(len(chosen), 2)
    divergences = result.sample_stats["diverging"].sum((0, 1))
    assert (r_hat.max(1) <= 1.01).all() and (ess.min(1) >= 400).all() and (divergences == 0).all(), (
        f"digits {chosen}: R-hat {r_hat.max(1)}, bulk ESS {ess.min(1)}, divergences {divergences.tolist()}")
    draws = result.samples.flatten(0, 1).double()  # (draws, points, 2)
    mean, sd = draws.mean(0), draws.std(0)
    mcse = sd / torch.as_tensor(ess).sqrt()
    exact_sd = exact_covariance.diagonal(dim1=-2, dim2=-1).sqrt()
    z = (mean - exact_mean) / mcse
    assert bool((z.abs() < MC_Z).all()), f"digits {chosen}: mean off by {z} Monte Carlo errors"
    # The relative error of a standard deviation from n effective draws: sqrt((kurtosis - 1) / (4 n)).
    kurtosis = ((draws - mean) / sd).pow(4).mean(0)
    sd_error = ((kurtosis - 1) / (4 * torch.as_tensor(ess))).sqrt()
    assert bool(((sd / exact_sd - 1).abs() < MC_Z * sd_error).all()), f"digits {chosen}: sd ratio {sd / exact_sd}"
