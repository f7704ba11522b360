"""Probabilistic PCA: exact posterior, exact evidence, ELBO identities, the closed-form fit."""

from __future__ import annotations

import math

import pytest
import torch
from pyro.infer import Trace_ELBO
from torch.distributions import MultivariateNormal, kl_divergence

from ppl_vae.errors import DataError
from ppl_vae.inference.importance import log_importance_weights
from ppl_vae.models import LinearGaussian

DATA_DIM, LATENT_DIM = 6, 2
# Dense float64 linear algebra against the low-rank formulas.
EXACT_TOLERANCE = 1e-9
# Monte Carlo checks: allowed deviation in standard errors (two-sided p ~ 1e-4).
MC_Z = 4.0


def random_model(seed: int = 0) -> LinearGaussian:
    torch.manual_seed(seed)
    model = LinearGaussian(DATA_DIM, LATENT_DIM).double()
    with torch.no_grad():
        model.decoder.weight.normal_()
        model.decoder.loc.normal_()
        model.decoder.log_noise_scale.fill_(math.log(0.7))
    return model


def dense_joint(model: LinearGaussian) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of (z, x) jointly, written out as one dense Gaussian."""
    weight, loc = model.decoder.weight.detach(), model.decoder.loc.detach()
    noise_var = model.noise_scale.detach() ** 2
    eye_l = torch.eye(LATENT_DIM, dtype=torch.float64)
    top = torch.cat([eye_l, weight.T], 1)
    bottom = torch.cat([weight, weight @ weight.T + noise_var * torch.eye(DATA_DIM, dtype=torch.float64)], 1)
    return torch.cat([torch.zeros(LATENT_DIM, dtype=torch.float64), loc]), torch.cat([top, bottom])


def data(num_points: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.randn(num_points, DATA_DIM, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def test_log_marginal_equals_dense_gaussian():
    model, x = random_model(), data()
    mean, cov = dense_joint(model)
    dense = MultivariateNormal(mean[LATENT_DIM:], cov[LATENT_DIM:, LATENT_DIM:]).log_prob(x)
    assert torch.allclose(model.log_marginal(x), dense, atol=EXACT_TOLERANCE)


def test_posterior_equals_gaussian_conditioning():
    model, x = random_model(), data()
    mean, cov = dense_joint(model)
    s_zz, s_zx, s_xx = cov[:LATENT_DIM, :LATENT_DIM], cov[:LATENT_DIM, LATENT_DIM:], cov[LATENT_DIM:, LATENT_DIM:]
    gain = s_zx @ torch.linalg.inv(s_xx)
    expected_loc = (x - mean[LATENT_DIM:]) @ gain.T
    expected_cov = s_zz - gain @ s_zx.T
    posterior = model.posterior(x)
    assert torch.allclose(posterior.loc, expected_loc, atol=EXACT_TOLERANCE)
    assert torch.allclose(posterior.covariance_matrix, expected_cov.expand(len(x), -1, -1),
                          atol=EXACT_TOLERANCE)


def test_elbo_with_the_exact_posterior_as_guide_is_log_marginal():
    model, x = random_model(), data()
    model.set_guide_to_posterior()
    log_weights = log_importance_weights(model.model, model.guide, x, num_samples=50)
    # Every importance weight equals p(x): the ELBO is exact with zero variance.
    assert torch.allclose(log_weights, model.log_marginal(x).detach().expand(50, -1), atol=1e-8)
    pyro_elbo = -Trace_ELBO().loss(model.model, model.guide, x)
    assert math.isclose(pyro_elbo, float(model.log_marginal(x).detach().sum()), abs_tol=1e-8)


def test_any_other_guide_loses_exactly_its_kl_to_the_posterior():
    model, x = random_model(), data()
    model.set_guide_to_posterior()
    with torch.no_grad():
        model.encoder.bias.add_(0.4)
        model.encoder.raw_scale_tril.add_(0.2)
    num_samples = 4000
    log_weights = log_importance_weights(model.model, model.guide, x, num_samples)
    elbo, stderr = log_weights.mean(0), log_weights.std(0) / math.sqrt(num_samples)
    loc, scale_tril = model.encoder(x)
    gap = kl_divergence(MultivariateNormal(loc, scale_tril=scale_tril), model.posterior(x))
    expected = (model.log_marginal(x) - gap).detach()
    assert bool((gap > 0.01).all())
    assert bool(((elbo - expected).abs() < MC_Z * stderr).all()), (elbo, expected, stderr)
    assert bool((elbo < model.log_marginal(x).detach()).all())


def test_closed_form_fit_is_a_stationary_point_and_beats_perturbations():
    torch.manual_seed(2)
    truth = random_model(seed=3)
    x = truth.marginal().sample((3000,)).detach()
    fit = LinearGaussian.fit_maximum_likelihood(x, LATENT_DIM)
    total = fit.log_marginal(x).sum()
    grads = torch.autograd.grad(total, [fit.decoder.weight, fit.decoder.loc, fit.decoder.log_noise_scale])
    assert max(float(g.abs().max()) for g in grads) < 1e-6 * len(x)
    with torch.no_grad():
        fit.decoder.weight.mul_(1.05)
    assert float(fit.log_marginal(x).sum()) < float(total)
    assert math.isclose(float(fit.noise_scale), 0.7, rel_tol=0.05)


def test_posterior_family_is_rotation_invariant_in_encode():
    model, x = random_model(), data()
    model.set_guide_to_posterior()
    loc, scale = model.encode(x)
    posterior = model.posterior(x)
    assert torch.allclose(loc, posterior.loc, atol=1e-9)
    assert torch.allclose(scale, posterior.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt(), atol=1e-9)


def test_bad_shapes_and_sizes():
    with pytest.raises(DataError, match="latent_dim"):
        LinearGaussian(3, 4)
    with pytest.raises(DataError, match="expects shape"):
        random_model().log_marginal(torch.zeros(2, DATA_DIM + 1, dtype=torch.float64))
    with pytest.raises(DataError, match="NaN"):
        LinearGaussian.fit_maximum_likelihood(torch.full((5, 3), math.nan), 1)
