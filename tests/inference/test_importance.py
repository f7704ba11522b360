"""ELBO and IWAE estimates per data point, checked against probabilistic PCA's exact evidence."""

from __future__ import annotations

import math

import pytest
import torch

from ppl_vae.inference import importance as likelihood
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
    x = x[:20]
    exact = model.log_marginal(x).detach()
    monkeypatch.setattr(likelihood, "MAX_CHUNK_ELEMENTS", 7)  # forces many small pieces
    for estimate in (likelihood.elbo(model, x, 13), likelihood.iwae(model, x, 13)):
        assert estimate.per_point.shape == (20,)
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


def test_naive_prior_estimate_of_p_x_is_unbiased_but_log_p_x_is_not():
    torch.manual_seed(1)
    model = LinearGaussian(3, 2).double()
    with torch.no_grad():
        model.decoder.weight.normal_()
        model.decoder.log_noise_scale.fill_(math.log(0.8))
    x = model.marginal().sample((1,)).detach()
    exact = float(model.log_marginal(x))
    replicates, k = 4000, 10
    # One estimate per row: the same point repeated gives independent replicates.
    estimates = likelihood.naive_prior(model, x.expand(replicates, -1), k).per_point
    p_hat = (estimates - exact).exp()  # p^(x) / p(x): mean 1 if unbiased
    assert abs(float(p_hat.mean()) - 1.0) < MC_Z * float(p_hat.std()) / math.sqrt(replicates)
    # Jensen: the log of an unbiased estimate is biased low.
    assert float(estimates.mean()) < exact
    assert float(p_hat.std()) > 0.1, "the naive estimator's spread is what makes it fail"


def test_elbo_terms_add_up_and_the_kl_matches_its_closed_form(ppca):
    model, x = ppca
    x = x[:10]
    with torch.no_grad():
        model.encoder.bias.add_(0.3)
    terms = likelihood.elbo_terms(model, x, 4000)
    loc, scale_tril = model.encoder(x)
    posterior = torch.distributions.MultivariateNormal(loc, scale_tril=scale_tril)
    prior = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=x.dtype), torch.eye(2, dtype=x.dtype))
    exact_kl = torch.distributions.kl_divergence(posterior, prior).detach()
    assert bool(((terms["kl"].per_point - exact_kl).abs() < MC_Z * terms["kl"].stderr).all())
    total = likelihood.elbo(model, x, 4000)
    difference = terms["reconstruction"].mean - terms["kl"].mean - total.mean
    assert abs(difference) < MC_Z * math.hypot(total.mean_stderr, terms["kl"].mean_stderr,
                                                terms["reconstruction"].mean_stderr)


def test_direct_log_weights_are_the_pyro_traces_log_weights():
    """The untraced path that elbo/iwae take for VAE and pPCA gives the traced path's numbers."""
    import pyro

    from ppl_vae.inference.importance import _direct_log_weights, log_importance_weights
    from ppl_vae.models import VAE, LinearGaussian

    torch.manual_seed(0)
    for model in (VAE(6, 3, hidden_dims=(8,)).double(), LinearGaussian(6, 2).double()):
        x = torch.rand(4, 6, dtype=torch.float64)
        pyro.set_rng_seed(5)
        traced = log_importance_weights(model.model, model.guide, x, 7)
        pyro.set_rng_seed(5)
        direct = _direct_log_weights(model, x, 7)
        torch.testing.assert_close(direct, traced, rtol=1e-12, atol=1e-12)


def test_bernoulli_log_likelihood_in_fewer_passes_equals_torchs_log_prob():
    """x l - softplus(l) summed: torch's value in float64, and about its accuracy in float32."""
    from torch.distributions import Bernoulli, Independent, Normal

    from ppl_vae.inference.objectives import likelihood_log_prob

    def pixels(logits=None, probs=None):
        return Independent(Bernoulli(logits=logits, probs=probs, validate_args=False), 1)

    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(30, 50, dtype=torch.float64))
    for x_values in (x, torch.rand(30, 50, dtype=torch.float64)):  # binary and grey data
        for spread in (1.0, 4.0, 30.0):  # confident logits too: softplus(l) ~ l
            logits = spread * torch.randn(3, 30, 50, dtype=torch.float64)
            exact = pixels(logits).log_prob(x_values)
            fast = likelihood_log_prob(pixels(logits), x_values)
            assert fast.shape == (3, 30)
            torch.testing.assert_close(fast, exact, rtol=1e-14, atol=1e-12)
            error32 = (likelihood_log_prob(pixels(logits.float()), x_values.float()).double()
                       - exact).abs().mean()
            torch_error32 = (pixels(logits.float()).log_prob(x_values.float()).double()
                             - exact).abs().mean()
            assert error32 <= 1.5 * torch_error32
    # Anything else is its own log_prob, bit for bit.
    probs = torch.rand(3, 30, 50, dtype=torch.float64)
    gaussian = Independent(Normal(probs, 1.0), 1)
    assert torch.equal(likelihood_log_prob(pixels(probs=probs), x), pixels(probs=probs).log_prob(x))
    assert torch.equal(likelihood_log_prob(gaussian, x), gaussian.log_prob(x))


def test_streaming_estimates_encode_each_block_of_points_once(monkeypatch):
    """The guide's distribution is computed once per block, however many pieces of samples."""
    from ppl_vae.models import VAE

    torch.manual_seed(0)
    model = VAE(6, 3, hidden_dims=(8,)).double()
    x = torch.rand(10, 6, dtype=torch.float64)
    calls = []
    encode = model.guide_distribution

    def counted(batch):
        calls.append(batch.shape[0])
        return encode(batch)

    torch.manual_seed(1)
    whole = likelihood.iwae(model, x, 12)
    monkeypatch.setattr(model, "guide_distribution", counted)
    monkeypatch.setattr(likelihood, "MAX_CHUNK_ELEMENTS", 30)  # 5 points and 1 sample per pass
    torch.manual_seed(1)
    pieces = likelihood.iwae(model, x, 12)
    assert calls.count(5) == 2  # two blocks of 5 points, 12 pieces each: encoded once per block
    # The same draws in another order of passes: the same bound up to Monte Carlo error.
    assert abs(pieces.mean - whole.mean) < MC_Z * math.hypot(pieces.mean_stderr, whole.mean_stderr)
