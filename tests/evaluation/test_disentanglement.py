"""Disentanglement metrics on latents whose answer is known: correlations, binned MI, the MIG."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.evaluation.representation import (
    correlation_matrix,
    discretize,
    mutual_information_gap,
    traversal_codes,
)

NUM_POINTS = 5000
NUM_BINS = 10
# Counting with B equal-frequency bins overstates the MI of independent
# variables by about (B - 1)^2 / (2 N) nats (Miller-Madow); allow four times that.
INDEPENDENT_MI_BOUND = 4 * (NUM_BINS - 1) ** 2 / (2 * NUM_POINTS)
# A sample correlation of N points may miss its true value by this many
# standard errors 1 / sqrt(N) (fails by chance with probability below 1e-6).
NUM_STANDARD_ERRORS = 5.0


@pytest.fixture
def factors() -> torch.Tensor:
    """Three independent uniform factors, shape (NUM_POINTS, 3), float64."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(NUM_POINTS, 3, generator=generator, dtype=torch.float64)


def noise(num_columns: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(NUM_POINTS, num_columns, generator=generator, dtype=torch.float64)


def disentangled(factors: torch.Tensor) -> torch.Tensor:
    """Each factor in its own latent, permuted and monotonically warped, and two unused latents."""
    return torch.cat([factors[:, [2]] ** 3, -factors[:, [0]].exp(), 5 * factors[:, [1]] - 1,
                      noise(2)], dim=1)


# ----- correlations --------------------------------------------------------------------------


def test_spearman_is_exactly_one_for_a_monotone_relation_and_sees_its_sign(factors):
    matrix = correlation_matrix(disentangled(factors), factors)
    assert matrix.shape == (3, 5) and matrix.dtype == torch.float64
    expected = {(0, 1): -1.0, (1, 2): 1.0, (2, 0): 1.0}
    for (factor, latent), value in expected.items():
        assert matrix[factor, latent].item() == pytest.approx(value, abs=1e-12)
    others = matrix.clone()
    for factor, latent in expected:
        others[factor, latent] = 0
    assert others.abs().max() < NUM_STANDARD_ERRORS / math.sqrt(NUM_POINTS)


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_correlations_match_scipy_including_ties(method):
    generator = torch.Generator().manual_seed(3)
    latents = torch.randint(0, 4, (200, 2), generator=generator).double()       # many ties
    factors = latents[:, :1] + torch.randint(0, 3, (200, 1), generator=generator).double()
    reference = stats.spearmanr if method == "spearman" else stats.pearsonr
    matrix = correlation_matrix(latents, factors, method)
    for latent in range(2):
        expected = reference(factors[:, 0].numpy(), latents[:, latent].numpy()).statistic
        assert matrix[0, latent].item() == pytest.approx(expected, abs=1e-12)


def test_a_rotation_spreads_each_factor_over_two_latents(factors):
    centred = factors[:, :2] - 0.5
    rotation = torch.tensor([[1.0, -1.0], [1.0, 1.0]], dtype=torch.float64) / math.sqrt(2)
    latents = centred @ rotation.T
    matrix = correlation_matrix(latents, factors[:, :2], "pearson")
    # Two independent factors of equal variance: each latent correlates 1/sqrt(2) with each.
    expected = torch.tensor([[1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64) / math.sqrt(2)
    torch.testing.assert_close(matrix, expected, rtol=0,
                               atol=NUM_STANDARD_ERRORS / math.sqrt(NUM_POINTS))


def test_a_constant_column_has_correlation_zero():
    latents = torch.stack([torch.ones(10), torch.arange(10.0)], dim=1)
    matrix = correlation_matrix(latents, torch.arange(10.0)[:, None])
    assert matrix.tolist() == [[0.0, 1.0]]


# ----- binned mutual information and the gap ----------------------------------------------------


def test_discretize_makes_equal_frequency_bins_and_keeps_ties_together():
    values = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
    bins = discretize(values, 10)
    assert bins.dtype == torch.int64 and bins.shape == (1000, 2)
    for column in range(2):
        assert bins[:, column].bincount().tolist() == [100] * 10
        order = values[:, column].argsort()
        assert bool((bins[order, column].diff() >= 0).all())
    ties = discretize(torch.tensor([[0.0], [0.0], [0.0], [1.0]]), 4)
    assert ties.flatten().tolist()[:3] == [ties[0, 0].item()] * 3


def test_a_variable_shares_all_its_information_with_itself(factors):
    result = mutual_information_gap(factors, factors, NUM_BINS)
    torch.testing.assert_close(result.factor_entropy,
                               torch.full((3,), math.log(NUM_BINS), dtype=torch.float64))
    torch.testing.assert_close(result.mutual_information.diagonal(), result.factor_entropy)
    off_diagonal = result.mutual_information - torch.diag(result.mutual_information.diagonal())
    assert off_diagonal.max() < INDEPENDENT_MI_BOUND


def test_perfectly_disentangled_latents_score_near_one(factors):
    result = mutual_information_gap(disentangled(factors), factors, NUM_BINS)
    assert result.best_latent.tolist() == [1, 2, 0]
    assert result.score == pytest.approx(1.0, abs=INDEPENDENT_MI_BOUND / math.log(NUM_BINS))
    assert result.score <= 1.0


def test_monotone_warps_of_the_latents_leave_the_mutual_information_unchanged(factors):
    latents = disentangled(factors) + 0.3 * noise(5, seed=4)
    warped = torch.cat([latents[:, :2].exp(), latents[:, 2:] ** 3], dim=1)
    assert torch.equal(mutual_information_gap(latents, factors, NUM_BINS).mutual_information,
                       mutual_information_gap(warped, factors, NUM_BINS).mutual_information)


def test_a_rotated_mixture_scores_far_lower(factors):
    centred = factors[:, :2] - 0.5
    rotation = torch.tensor([[1.0, -1.0], [1.0, 1.0]], dtype=torch.float64) / math.sqrt(2)
    latents = torch.cat([centred @ rotation.T, factors[:, 2:], noise(1)], dim=1)
    result = mutual_information_gap(latents, factors, NUM_BINS)
    # The two rotated factors live equally in latents 0 and 1: their gaps are ~0 ...
    assert result.gap[:2].max() < 0.05
    # ... while the untouched third factor keeps its latent to itself.
    assert result.gap[2] > 0.95 and result.best_latent[2] == 2
    assert result.score < 0.4


def test_a_noisy_code_carries_less_information_than_a_clean_one(factors):
    clean = mutual_information_gap(disentangled(factors), factors, NUM_BINS)
    noisy = mutual_information_gap(disentangled(factors) + 0.5 * noise(5, seed=9), factors,
                                   NUM_BINS)
    assert bool((noisy.mutual_information.amax(1) < clean.mutual_information.amax(1)).all())
    assert noisy.score < clean.score


def test_results_follow_the_dtype_of_the_latents(factors):
    result = mutual_information_gap(disentangled(factors).float(), factors, NUM_BINS)
    assert result.gap.dtype == result.mutual_information.dtype == torch.float32
    assert result.best_latent.dtype == torch.int64
    assert correlation_matrix(disentangled(factors).float(), factors).dtype == torch.float32


@pytest.mark.parametrize("call, error, message", [
    (lambda x, f: mutual_information_gap(x, f, num_bins=1), ConfigError, "num_bins"),
    (lambda x, f: discretize(x, num_bins=2.5), ConfigError, "num_bins"),
    (lambda x, f: correlation_matrix(x, f, method="kendall"), ConfigError, "spearman, pearson"),
    (lambda x, f: correlation_matrix(x[:-1], f), DataError, "different points"),
    (lambda x, f: correlation_matrix(x[:, 0], f), DataError, "shape"),
    (lambda x, f: correlation_matrix(x.long(), f), DataError, "floating"),
    (lambda x, f: correlation_matrix(x[:1], f[:1]), DataError, "at least 2 points"),
    (lambda x, f: mutual_information_gap(x[:5], f[:5]), DataError, "at least 20 points"),
    (lambda x, f: mutual_information_gap(x[:, :1], f), DataError, "1 latent"),
    (lambda x, f: mutual_information_gap(x, torch.ones_like(f)), DataError, "single value"),
    (lambda x, f: mutual_information_gap(x.index_fill(0, torch.tensor([3]), math.nan), f),
     DataError, "NaN"),
    (lambda x, f: correlation_matrix(np.zeros((4, 2)), f[:4]), DataError, "ndarray"),
])
def test_bad_inputs_are_refused(factors, call, error, message):
    with pytest.raises(error, match=message):
        call(disentangled(factors), factors)


# ----- KL per latent and traversal codes ---------------------------------------------------------


def test_traversal_codes_move_one_coordinate_at_a_time():
    values = torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64)
    base = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    codes = traversal_codes(3, values, base)
    assert codes.shape == (3, 3, 3) and codes.dtype == torch.float64
    for j in range(3):
        assert codes[j, :, j].tolist() == values.tolist()
        others = [k for k in range(3) if k != j]
        assert torch.equal(codes[j][:, others], base[others].expand(3, 2))
    assert traversal_codes(2, values)[0, :, 1].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ConfigError, match="latent_dim"):
        traversal_codes(0, values)
    with pytest.raises(DataError, match="base"):
        traversal_codes(2, values, base)
