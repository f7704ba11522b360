"""Per-point Gaussian q* and the flow posterior: they converge, and q* is never worse than the encoder."""

from __future__ import annotations

import math

import pyro
import pytest
import torch

from ppl_vae.errors import DataError
from ppl_vae.inference.importance import elbo
from ppl_vae.inference.local_vi import fit_flow_posterior, fit_local_gaussian

MC_Z = 4.0  # allowed deviation in Monte Carlo standard errors


def test_local_gaussian_finds_the_exact_diagonal_posterior(diagonal_ppca):
    model, x = diagonal_ppca
    fit = fit_local_gaussian(model, x, max_steps=4000, learning_rate=0.02)
    exact = model.posterior(x)
    exact_sd = exact.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt().detach()
    q = fit.posterior
    # Stochastic-gradient optima jitter around the exact answer; a mean off by 0.1 sd
    # costs only 0.005 nats of ELBO, so the convergence test cannot resolve it better.
    assert bool(((q.loc.detach() - exact.loc.detach()).abs() < 0.1 * exact_sd).all())
    assert torch.allclose(q.scale.detach(), exact_sd, rtol=0.1)
    estimate = elbo(model, x, 4000, guide=q)
    gap = model.log_marginal(x).detach() - estimate.per_point
    assert bool((gap.abs() < 0.01).all()), gap  # the approximation gap is ~0 here


def test_q_star_is_never_worse_than_the_encoder(digits_vae):
    vae, x = digits_vae
    x = x[:12]
    fit = fit_local_gaussian(vae, x, max_steps=3000)
    encoder = elbo(vae, x, 3000)
    q_star = elbo(vae, x, 3000, guide=fit.posterior)
    noise = MC_Z * torch.hypot(encoder.stderr, q_star.stderr)
    assert bool((q_star.per_point > encoder.per_point - noise).all())
    assert q_star.mean > encoder.mean
    assert fit.losses[-1] <= fit.losses[0]


def test_flow_posterior_is_at_least_as_good_as_its_start(digits_vae):
    vae, x = digits_vae
    x = x[:12]
    start = fit_local_gaussian(vae, x, max_steps=1000).posterior
    flow = fit_flow_posterior(vae, x, start=start, max_steps=400, num_particles=8).posterior
    base = elbo(vae, x, 3000, guide=start)
    flowed = elbo(vae, x, 3000, guide=flow)
    assert flowed.mean > base.mean - MC_Z * math.hypot(base.mean_stderr, flowed.mean_stderr) - 0.02


def test_fits_leave_the_model_and_param_store_alone(digits_vae):
    vae, x = digits_vae
    x = x[:12]
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    fit_local_gaussian(vae, x, max_steps=100)
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())
    assert len(pyro.get_param_store()) == 0


def test_point_guides_refuse_other_points(digits_vae):
    vae, x = digits_vae
    x = x[:12]
    q = fit_local_gaussian(vae, x, max_steps=100).posterior
    with pytest.raises(DataError, match="fitted to 12 points"):
        q.guide(x[:5])
