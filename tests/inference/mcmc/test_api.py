"""NUTS on p(z | x): exact against probabilistic PCA, reproducible, free of side effects."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro import poutine

from ppl_vae.errors import ConfigError
from ppl_vae.evaluation.diagnostics import check_convergence
from ppl_vae.inference.importance import log_joint
from ppl_vae.inference.mcmc import NUTSConfig, posterior_moments, sample_posterior
from ppl_vae.models import VAE, LinearGaussian

# Deviation allowed, in Monte Carlo standard errors (|Z| > 4.5 has p < 1e-5 per check).
MC_Z = 4.5


@pytest.fixture(scope="module")
def ppca_and_points():
    torch.manual_seed(0)
    model = LinearGaussian(6, 2).double()
    with torch.no_grad():
        model.decoder.weight.normal_()
        model.decoder.log_noise_scale.fill_(math.log(0.7))
    model.set_guide_to_posterior()
    return model, model.marginal().sample((4,)).detach()


@pytest.mark.parametrize("scheme", ["batched", "joint", "per_point"])
def test_nuts_recovers_the_exact_posterior_of_several_points(ppca_and_points, scheme):
    model, x = ppca_and_points
    x = x if scheme == "joint" else x[:2]
    config = NUTSConfig(num_samples=500, warmup_steps=300, num_chains=4, scheme=scheme, seed=1)
    result = sample_posterior(model, x, config)
    report = check_convergence(result.to_inference_data())
    assert report.converged, report.reasons
    assert float(report.r_hat.max()) < 1.01

    exact = model.posterior(x)
    exact_sd = exact.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt().detach()
    mean, covariance = posterior_moments(result)
    ess = torch.as_tensor(report.ess_bulk)
    # Standard error of a posterior mean: sd / sqrt(ESS).
    assert bool(((mean - exact.loc.detach()).abs() < MC_Z * exact_sd / ess.sqrt()).all())
    # Standard error of a variance estimate: var * sqrt(2 / ESS) (Gaussian draws).
    variance = covariance.diagonal(dim1=-2, dim2=-1)
    assert bool(((variance - exact_sd**2).abs() < MC_Z * exact_sd**2 * (2 / ess).sqrt()).all())
    # Off-diagonal: the correlation's standard error is about (1 - rho^2) / sqrt(ESS).
    exact_corr = exact.covariance_matrix[:, 0, 1].detach() / (exact_sd[:, 0] * exact_sd[:, 1])
    corr = covariance[:, 0, 1] / variance.sqrt().prod(-1)
    assert bool(((corr - exact_corr).abs() < MC_Z * (1 - exact_corr**2) / ess.min(-1).values.sqrt()).all())


def test_parallel_and_sequential_chains_give_identical_draws(ppca_and_points):
    model, x = ppca_and_points
    settings = {"num_samples": 30, "warmup_steps": 20, "num_chains": 2, "seed": 3, "scheme": "joint"}
    parallel = sample_posterior(model, x, NUTSConfig(parallel=True, **settings))
    sequential = sample_posterior(model, x, NUTSConfig(parallel=False, **settings))
    assert torch.equal(parallel.samples, sequential.samples)
    assert not torch.equal(parallel.samples[0], parallel.samples[1]), "chains must differ"


@pytest.mark.parametrize("scheme", ["batched", "joint"])
def test_sample_stats_have_one_value_per_chain_draw_and_point(ppca_and_points, scheme):
    model, x = ppca_and_points
    result = sample_posterior(model, x, NUTSConfig(num_samples=25, warmup_steps=25, num_chains=2,
                                                    parallel=False, scheme=scheme))
    assert result.samples.shape == (2, 25, 4, 2)
    for name, stat in result.sample_stats.items():
        assert stat.shape == (2, 25, 4), name
    assert result.sample_stats["diverging"].dtype == torch.bool
    steps, depth = result.sample_stats["num_steps"], result.sample_stats["tree_depth"]
    assert bool((steps >= 1).all()) and bool((2 ** (depth - 1) <= steps).all())
    assert bool((steps <= 2**depth - 1).all())
    accept = result.sample_stats["acceptance_rate"]
    assert bool(((accept >= 0) & (accept <= 1 + 1e-9)).all())
    step_size = result.sample_stats["step_size"]
    # The points of a joint run share their chain's step size; batched chains adapt their own.
    shared = bool((step_size.amax(-1) == step_size.amin(-1)).all())
    assert shared == (scheme == "joint")


def test_the_decoder_is_untouched_and_the_param_store_stays_empty():
    vae = VAE(12, 2, hidden_dims=(8,))
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    x = torch.rand(3, 12).round()
    sample_posterior(vae, x, NUTSConfig(num_samples=10, warmup_steps=10, num_chains=1))
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())
    assert all(p.grad is None for p in vae.parameters())
    assert len(pyro.get_param_store()) == 0


@pytest.mark.parametrize("model", [VAE(12, 3, hidden_dims=(8,)).double(),
                                   LinearGaussian(12, 3).double()], ids=["vae", "ppca"])
def test_log_joint_equals_the_pyro_program(model):
    x = torch.rand(5, 12, dtype=torch.float64).round()
    z = torch.randn(5, 3, dtype=torch.float64)
    trace = poutine.trace(poutine.condition(model.model, data={"z": z})).get_trace(x)
    trace.compute_log_prob()
    expected = trace.nodes["z"]["log_prob"] + trace.nodes["x"]["log_prob"]
    assert torch.allclose(log_joint(model, x, z), expected, atol=1e-10)


def test_large_latent_spaces_warn_and_bad_settings_fail():
    vae = VAE(6, 12, hidden_dims=(4,))
    with pytest.warns(UserWarning, match="recommended"):
        sample_posterior(vae, torch.rand(1, 6).round(),
                         NUTSConfig(num_samples=2, warmup_steps=2, num_chains=1))
    with pytest.raises(ConfigError, match="scheme"):
        NUTSConfig(scheme="vectorized")
    with pytest.raises(ConfigError, match="num_chains"):
        NUTSConfig(num_chains=0)
