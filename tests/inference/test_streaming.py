"""Running reductions: equal to the one-pass formulas, and never overflowing for huge K."""

from __future__ import annotations

import math

import pytest
import torch

from ppl_vae.inference import iwae, naive_prior
from ppl_vae.inference.streaming import RunningLogMeanExp, RunningMean
from ppl_vae.models import LinearGaussian

# How many Monte Carlo standard errors an estimate may stray from the exact value.
NUM_STDERRS = 4.0


def _fold(accumulator, values: torch.Tensor, piece: int):
    for chunk in values.split(piece):
        accumulator.update(chunk)
    return accumulator.result(torch.float64)


@pytest.mark.parametrize("piece", [1, 3, 64, 1000])
def test_running_mean_equals_one_pass_mean_and_stderr(piece):
    values = torch.randn(1000, 5, dtype=torch.float64) * 3 + torch.arange(5.0)
    mean, stderr = _fold(RunningMean(), values, piece)
    torch.testing.assert_close(mean, values.mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(stderr, values.std(0) / math.sqrt(1000), rtol=1e-10, atol=0)


@pytest.mark.parametrize("piece", [1, 7, 1000])
def test_running_log_mean_exp_equals_logsumexp_and_delta_method(piece):
    values = torch.randn(1000, 4, dtype=torch.float64) * torch.tensor([0.1, 1.0, 5.0, 20.0])
    estimate, stderr = _fold(RunningLogMeanExp(), values, piece)
    expected = torch.logsumexp(values, 0) - math.log(1000)
    relative = (values - expected).exp()
    torch.testing.assert_close(estimate, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(stderr, relative.std(0) / math.sqrt(1000), rtol=1e-8, atol=0)


def test_running_log_mean_exp_survives_magnitudes_exp_cannot_hold():
    # exp(+-1e5) is inf / 0 in float64; the shifted sums stay exact.
    values = torch.tensor([[1e5, -1e5], [1e5 + math.log(3.0), -1e5 + math.log(3.0)]],
                          dtype=torch.float64)
    estimate, stderr = _fold(RunningLogMeanExp(), values, 1)
    torch.testing.assert_close(estimate, torch.tensor([1e5, -1e5], dtype=torch.float64) + math.log(2.0),
                               rtol=0, atol=1e-9)
    assert torch.isfinite(stderr).all()


def test_running_log_mean_exp_after_pieces_of_zero_weight():
    # A point whose first piece has zero weight (log w = -inf) must not lose later, tiny weights.
    first = torch.tensor([[-math.inf], [-math.inf]], dtype=torch.float64)
    second = torch.tensor([[-1e5], [-1e5]], dtype=torch.float64)
    accumulator = RunningLogMeanExp()
    accumulator.update(first)
    accumulator.update(second)
    estimate, _ = accumulator.result(torch.float64)
    torch.testing.assert_close(estimate, torch.tensor([-1e5 + math.log(0.5)], dtype=torch.float64))


def test_running_log_mean_exp_keeps_a_nan_visible():
    accumulator = RunningLogMeanExp()
    accumulator.update(torch.tensor([[math.nan], [0.0]], dtype=torch.float64))
    accumulator.update(torch.tensor([[1.0]], dtype=torch.float64))
    estimate, _ = accumulator.result(torch.float64)
    assert torch.isnan(estimate).all()


def test_iwae_and_naive_with_a_million_samples_meet_the_exact_evidence(monkeypatch):
    """K = 10^6 in bounded pieces: finite, and within Monte Carlo error of log p(x)."""
    from ppl_vae.inference import importance as likelihood

    monkeypatch.setattr(likelihood, "MAX_CHUNK_ELEMENTS", 2**18)  # many pieces, small memory
    torch.manual_seed(0)
    model = LinearGaussian(data_dim=3, latent_dim=2, noise_scale=0.5).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    exact = model.log_marginal(x)
    for estimate in (iwae(model, x, 10**6), naive_prior(model, x, 10**6)):
        assert torch.isfinite(estimate.per_point).all()
        assert estimate.stderr.max() < 0.01
        error = (estimate.per_point - exact).abs()
        assert (error <= NUM_STDERRS * estimate.stderr + 1e-6).all(), (error, estimate.stderr)
