"""ELBO and IWAE estimates per data point, checked against probabilistic PCA's exact evidence."""

from __future__ import annotations

import math

import pytest
import torch

from ppl_vae.inference import likelihood
from ppl_vae.models import LinearGaussian

MC_Z = 4.0  # allowed deviation in Monte Carlo standard errors


@pytest.fixture
def ppca() -> tuple[LinearGaussian, torch.Tensor]:
    torch.manual_seed(0)
    model = LinearGaussian(5, 2).double()
    with torch.no_grad():
        model.decoder.weight.normal_()
        model.decoder.log_noise_scale.fill_(math.log(0.5))
    x = model.marginal().sample((200,)).detach()
    model.set_guide_to_posterior()
    return model, x


def test_exact_guide_gives_exact_estimates_under_any_chunking(ppca, monkeypatch):
    model, x = ppca
    exact = model.log_marginal(x).detach()
    monkeypatch.setattr(likelihood, "MAX_CHUNK_ELEMENTS", 7)  # forces many small pieces
    for estimate in (likelihood.elbo(model, x, 13), likelihood.iwae(model, x, 13)):
        assert estimate.per_point.shape == (200,)
        assert torch.allclose(estimate.per_point, exact, atol=1e-8)


def test_iwae_rises_with_k_towards_log_marginal(ppca):
    model, x = ppca
    with torch.no_grad():
        model.encoder.raw_scale_tril.add_(0.5)  # an over-dispersed guide
        model.encoder.bias.add_(0.3)
    exact = model.log_marginal(x).detach()
    elbo = likelihood.elbo(model, x, 2000)
    bounds = [likelihood.iwae(model, x, k) for k in (1, 10, 100, 5000)]
    means = [b.mean for b in bounds]
    for lower, upper in zip(bounds[1:], bounds[2:]):
        noise = MC_Z * math.hypot(lower.mean_stderr, upper.mean_stderr)
        assert lower.mean < upper.mean + noise
    assert elbo.mean < means[1] - 1.0  # this guide's ELBO is nats below log p(x)
    # Every bound stays below log p(x) up to noise; at K = 5000 it meets it.
    assert all(b.mean < float(exact.mean()) + MC_Z * b.mean_stderr for b in bounds[1:])
    assert abs(means[3] - float(exact.mean())) < MC_Z * bounds[3].mean_stderr + 1e-3
    assert bounds[3].mean_stderr < 0.01
