"""Pareto k̂ and ESS of importance weights: equal to ArviZ, streamed, and honest against exact answers."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from ppl_vae.inference import importance as likelihood
from ppl_vae.inference.local_vi import LocalGaussian
from ppl_vae.inference.psis import (
    PARETO_K_THRESHOLD,
    RunningParetoTail,
    pareto_k,
    pareto_k_threshold,
    tail_length,
)
from ppl_vae.inference.streaming import RunningLogMeanExp
from ppl_vae.models import LinearGaussian

ARVIZ_TOLERANCE = 1e-6  # the same float64 computation as ArviZ, in another summation order
MC_Z = 4.0  # an unflagged estimate may stray this many reported standard errors from the exact value


def _arviz_k(log_weights: torch.Tensor) -> np.ndarray:
    """ArviZ's k̂ per column of (num_samples, num_points) log-weights."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns about large k̂, which these cases have on purpose
        return az.psislw(log_weights.T.double().numpy().copy())[1]


def _test_weights(num_samples: int) -> torch.Tensor:
    """Log-weights from light to very heavy tails: Gaussian log w of growing spread, and log |t_1.5|."""
    generator = torch.Generator().manual_seed(num_samples)
    normal = torch.randn(num_samples, 4, generator=generator, dtype=torch.float64)
    student = torch.distributions.StudentT(1.5).sample((num_samples, 2)).double().abs().log() * 2
    return torch.cat([normal * torch.tensor([0.1, 1.0, 2.0, 4.0], dtype=torch.float64), student], 1)


@pytest.mark.parametrize("num_samples", [25, 100, 1000, 5000])
@pytest.mark.parametrize("piece", [1, 37, None])
def test_streamed_k_equals_arviz(num_samples, piece):
    torch.manual_seed(num_samples)
    log_weights = _test_weights(num_samples)
    running = RunningParetoTail(num_samples)
    for chunk in log_weights.split(piece or num_samples):
        running.update(chunk)
    expected = _arviz_k(log_weights)
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(running.result().numpy(), expected, rtol=0, atol=ARVIZ_TOLERANCE)
    assert running.top.shape == (tail_length(num_samples) + 1, 6)  # never more than M + 1 kept


def test_iwae_k_equals_arviz_on_the_weights_it_drew(diagonal_ppca, monkeypatch):
    """End to end: record every piece of weights iwae draws; its k̂ and ESS are those of the pieces."""
    model, x = diagonal_ppca
    posterior = model.posterior(x)
    narrow = LocalGaussian(posterior.loc, posterior.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt() * 0.6)
    drawn = []
    original = likelihood._weights_of_rows

    def recording(*args, **kwargs):
        weights_of = original(*args, **kwargs)

        def record(num_samples: int) -> torch.Tensor:
            drawn.append(weights_of(num_samples))
            return drawn[-1]

        return record

    monkeypatch.setattr(likelihood, "_weights_of_rows", recording)
    monkeypatch.setattr(likelihood, "MAX_CHUNK_ELEMENTS", 5 * 300)  # several pieces per point
    estimate = likelihood.iwae(model, x, 2000, guide=narrow)
    weights = torch.cat(drawn)
    assert len(drawn) > 1 and weights.shape == (2000, len(x))
    np.testing.assert_allclose(estimate.pareto_k.numpy(), _arviz_k(weights), rtol=0, atol=ARVIZ_TOLERANCE)
    normalized = torch.softmax(weights, 0)
    torch.testing.assert_close(estimate.ess, 1 / normalized.pow(2).sum(0), rtol=1e-10, atol=0)


def test_ppca_narrow_proposal_is_flagged_and_the_exact_posterior_is_not(diagonal_ppca):
    """A Gaussian proposal with sd c times the exact posterior's has weights with tail index
    k = 1 - c^2 (Gaussian target, Gaussian proposal): c = 0.3 gives k = 0.91."""
    model, x = diagonal_ppca
    posterior = model.posterior(x)
    loc, sd = posterior.loc, posterior.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
    narrow = likelihood.iwae(model, x, 5000, guide=LocalGaussian(loc, 0.3 * sd))
    assert bool((narrow.pareto_k > PARETO_K_THRESHOLD).all()), narrow.pareto_k
    assert bool(narrow.flagged.all()) and narrow.flagged_share == 1.0
    assert bool(torch.isinf(narrow.stderr).all()) and math.isinf(narrow.mean_stderr)
    exact = model.log_marginal(x).detach()
    # What the delta method would have reported is wrong by more than MC_Z of itself somewhere.
    assert bool(((narrow.per_point - exact).abs() > MC_Z * narrow.delta_stderr).any())

    model.set_guide_to_posterior()
    good = likelihood.iwae(model, x, 5000)
    assert bool((good.pareto_k < 0.5).all()), good.pareto_k
    assert not bool(good.flagged.any())
    torch.testing.assert_close(good.ess, torch.full_like(good.ess, 5000.0), rtol=1e-9, atol=0)
    torch.testing.assert_close(good.per_point, exact, rtol=0, atol=1e-8)


def test_elbo_has_no_weights_to_diagnose(diagonal_ppca):
    model, x = diagonal_ppca
    estimate = likelihood.elbo(model, x, 100)
    assert estimate.pareto_k is None and estimate.ess is None
    assert not bool(estimate.flagged.any()) and estimate.flagged_share == 0.0


@pytest.mark.parametrize("num_samples, min_flagged, max_flagged", [
    (100, 0.9, 1.0),   # the prior rarely hits the posterior: almost every estimate is flagged
    (1000, 0.0, 0.2),
    (5000, 0.0, 0.0),
])
def test_naive_prior_error_bar_never_understates(num_samples, min_flagged, max_flagged):
    """500 independent naive estimates of one pPCA point's log p(x): every unflagged one lies
    within MC_Z of its reported errors of the exact value; flagged ones report no finite error.
    At K = 100 the delta-method errors are too small (median 0.79 of the true spread)."""
    torch.manual_seed(0)
    model = LinearGaussian(4, 2).double()
    with torch.no_grad():
        model.decoder.log_noise_scale.fill_(math.log(0.3))
    x = model.marginal().sample((1,)).detach().expand(500, 4).contiguous()
    exact = model.log_marginal(x).detach()
    estimate = likelihood.naive_prior(model, x, num_samples)
    assert min_flagged <= estimate.flagged_share <= max_flagged
    trusted = ~estimate.flagged
    error = (estimate.per_point - exact).abs()
    assert bool((error[trusted] <= MC_Z * estimate.stderr[trusted]).all())
    assert bool(torch.isinf(estimate.stderr[estimate.flagged]).all())
    if num_samples == 5000:  # no heavy tail left: the reported error matches the real spread
        ratio = float(estimate.stderr.median() / estimate.per_point.std())
        assert 0.85 < ratio < 1.15, ratio


def test_too_few_samples_cannot_be_diagnosed():
    running = RunningLogMeanExp(num_samples=20)
    running.update(torch.randn(20, 3, dtype=torch.float64))
    assert bool(torch.isinf(running.diagnostics()["pareto_k"]).all())  # under 5 tail draws, as ArviZ
    assert pareto_k_threshold(1) == 0.0 and pareto_k_threshold(10**4) == PARETO_K_THRESHOLD
    assert pareto_k_threshold(1000) == pytest.approx(2 / 3)


def test_k_of_flat_and_non_finite_weights():
    flat = torch.zeros(100, 1, dtype=torch.float64)  # the exact posterior as proposal, exactly
    dead = torch.full((100, 1), -math.inf, dtype=torch.float64)
    broken = torch.randn(100, 1, dtype=torch.float64)
    broken[3] = math.nan
    k = pareto_k(torch.cat([flat, dead, broken], 1))
    assert k[0] == -math.inf and math.isnan(k[1]) and math.isnan(k[2])
