"""Batched NUTS: exact moments on targets with known answers, per-chain adaptation, robustness."""

from __future__ import annotations

import math

import pytest
import torch

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.evaluation.diagnostics import check_convergence, to_inference_data
from ppl_vae.inference.mcmc.adaptation import warmup_stages
from ppl_vae.inference.mcmc.batched_nuts import batched_nuts

# Deviation allowed, in Monte Carlo standard errors (|Z| > 4.5 has p < 1e-5 per check).
MC_Z = 4.5


def _by_target(samples: torch.Tensor, num_chains: int) -> torch.Tensor:
    """(chains * targets, draws, dim), chain-major rows -> (chains, draws, targets, dim)."""
    rows, draws, dim = samples.shape
    return samples.reshape(num_chains, rows // num_chains, draws, dim).transpose(1, 2)


def _gaussian_targets(num_targets: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and Cholesky factors of correlated Gaussians whose scales span 1e-2 to 1e2."""
    generator = torch.Generator().manual_seed(0)
    scales = torch.logspace(-2, 2, num_targets, dtype=torch.float64)
    mean = torch.randn(num_targets, dim, generator=generator, dtype=torch.float64) * scales[:, None]
    factor = torch.randn(num_targets, dim, dim, generator=generator, dtype=torch.float64).tril(-1) * 0.5
    factor = (factor + torch.eye(dim, dtype=torch.float64)) * scales[:, None, None]
    return mean, factor


@pytest.mark.parametrize("masked", [False, True], ids=["host-checked", "masked"])
def test_gaussian_targets_of_any_scale_and_correlation_have_exact_moments(masked):
    num_chains, num_targets, dim = 4, 10, 3
    mean, factor = _gaussian_targets(num_targets, dim)
    precision = torch.cholesky_inverse(factor)

    def potential(z: torch.Tensor, chains: torch.Tensor) -> torch.Tensor:
        target = chains % num_targets
        centred = z - mean[target]
        return 0.5 * torch.einsum("bi,bij,bj->b", centred, precision[target], centred)

    init = mean.repeat(num_chains, 1) + torch.randn(num_chains * num_targets, dim, dtype=torch.float64)
    run = batched_nuts(potential, init, 500, 300, generator=torch.Generator().manual_seed(1), masked=masked)
    draws = _by_target(run.samples, num_chains)
    report = check_convergence(to_inference_data(draws))
    # 500 draws of 4 chains: split R-hat of a well-mixed chain stays below ~1.015 (1.01 is the
    # bar for reports and would fail a few seeds in a hundred here).
    assert float(report.r_hat.max()) < 1.02
    assert float(report.ess_bulk.min()) > 400

    ess = torch.as_tensor(report.ess_bulk)
    covariance = factor @ factor.transpose(-1, -2)
    sd = covariance.diagonal(dim1=-2, dim2=-1).sqrt()
    pooled = draws.flatten(0, 1)
    assert bool(((pooled.mean(0) - mean).abs() < MC_Z * sd / ess.sqrt()).all())
    variance = pooled.var(0)
    # Standard error of a variance estimate from Gaussian draws: var * sqrt(2 / ESS).
    assert bool(((variance - sd**2).abs() < MC_Z * sd**2 * (2 / ess).sqrt()).all())
    assert not bool(run.diverging.any())


@pytest.mark.parametrize("masked", [False, True], ids=["host-checked", "masked"])
def test_a_skewed_target_has_its_exact_mean_and_variance(masked):
    # z = log y with y ~ Gamma(3, 1): density exp(3 z - e^z) / Gamma(3), skewed to the left;
    # E[z] = digamma(3) and Var[z] = trigamma(3). A wrong transition probability biases these.
    shape = 3.0
    num_chains = 256

    def potential(z: torch.Tensor, chains: torch.Tensor) -> torch.Tensor:
        return (z.exp() - shape * z).sum(-1)

    init = torch.randn(num_chains, 1, dtype=torch.float64)
    run = batched_nuts(potential, init, 400, 200, generator=torch.Generator().manual_seed(2), masked=masked)
    exact_mean = torch.digamma(torch.tensor(shape, dtype=torch.float64))
    exact_variance = torch.polygamma(1, torch.tensor(shape, dtype=torch.float64))
    draws = run.samples[:, :, 0]
    report = check_convergence(to_inference_data(draws[:, :, None, None]))
    total_ess = float(torch.as_tensor(report.ess_bulk).sum())  # one target, all chains pooled
    assert total_ess > 0.2 * draws.numel()
    sd = exact_variance.sqrt()
    assert abs(float(draws.mean() - exact_mean)) < MC_Z * float(sd) / math.sqrt(total_ess)
    # The variance's standard error, from the fourth central moment of the draws.
    centred = draws - exact_mean
    fourth = float(centred.pow(4).mean())
    variance_se = math.sqrt((fourth - float(exact_variance) ** 2) / total_ess)
    assert abs(float(centred.pow(2).mean()) - float(exact_variance)) < MC_Z * variance_se


@pytest.mark.parametrize("masked", [False, True], ids=["host-checked", "masked"])
def test_every_chain_adapts_its_own_step_size_and_mass_matrix(masked):
    scales = torch.tensor([0.1, 1.0, 10.0, 100.0], dtype=torch.float64)[:, None] * torch.tensor(
        [1.0, 3.0], dtype=torch.float64)

    def potential(z: torch.Tensor, chains: torch.Tensor) -> torch.Tensor:
        return 0.5 * (z / scales[chains]).pow(2).sum(-1)

    run = batched_nuts(potential, scales.clone(), 300, 500, dense_mass=False,
                       generator=torch.Generator().manual_seed(3), masked=masked)
    # Each chain's inverse mass estimates its own variances (500 warm-up draws: within a factor 1.6).
    ratio = run.inverse_mass / scales**2
    assert bool(((ratio > 1 / 1.6) & (ratio < 1.6)).all()), ratio
    # Once whitened, every chain needs about the same step size and tree.
    assert float(run.step_size.max() / run.step_size.min()) < 2
    assert 0.6 < float(run.acceptance_rate.mean()) < 0.99
    assert bool((run.num_steps <= 2 ** run.tree_depth - 1).all())
    assert bool((run.num_steps >= 1).all())


def test_a_dense_mass_matrix_learns_each_chains_covariance():
    num_targets, dim = 4, 3
    mean, factor = _gaussian_targets(num_targets, dim)
    mean, factor = 10 * mean, 10 * factor  # scales 0.1 to 1000: Stan's pull towards 1e-3 is negligible
    precision = torch.cholesky_inverse(factor)
    covariance = factor @ factor.transpose(-1, -2)

    def potential(z: torch.Tensor, chains: torch.Tensor) -> torch.Tensor:
        centred = z - mean[chains]
        return 0.5 * torch.einsum("bi,bij,bj->b", centred, precision[chains], centred)

    run = batched_nuts(potential, mean.clone(), 200, 500, generator=torch.Generator().manual_seed(6))
    assert run.inverse_mass.shape == (num_targets, dim, dim)
    # Whitened by its estimate, each covariance is close to the identity (the last slow window
    # holds 200 draws: eigenvalues within a factor 1.6).
    whitening = torch.linalg.cholesky(run.inverse_mass)
    whitened = torch.linalg.solve_triangular(whitening, covariance, upper=False)
    whitened = torch.linalg.solve_triangular(whitening, whitened.transpose(-1, -2), upper=False)
    eigenvalues = torch.linalg.eigvalsh(whitened)
    assert bool(((eigenvalues > 1 / 1.6) & (eigenvalues < 1.6)).all()), eigenvalues


@pytest.mark.parametrize("masked", [False, True], ids=["host-checked", "masked"])
def test_regions_where_the_density_is_undefined_are_divergences_never_draws(masked):
    wall = 2.0

    def potential(z: torch.Tensor, chains: torch.Tensor) -> torch.Tensor:
        energy = 0.5 * z.pow(2).sum(-1)
        return torch.where(z[:, 0] < wall, energy, torch.full_like(energy, math.nan))

    init = torch.full((8, 1), -0.5, dtype=torch.float64)
    run = batched_nuts(potential, init, 200, 100, generator=torch.Generator().manual_seed(4), masked=masked)
    assert bool(run.samples.isfinite().all())
    assert bool((run.samples < wall).all())
    assert bool(run.diverging.any())


@pytest.mark.parametrize("masked", [False, True], ids=["host-checked", "masked"])
def test_the_same_generator_seed_gives_identical_draws(masked):
    def potential(z: torch.Tensor, chains: torch.Tensor) -> torch.Tensor:
        return 0.5 * z.pow(2).sum(-1) + 0.1 * z.pow(4).sum(-1)

    init = torch.randn(6, 2, dtype=torch.float64)
    first, second = (batched_nuts(potential, init, 30, 30, generator=torch.Generator().manual_seed(5),
                                  masked=masked)
                     for _ in range(2))
    assert torch.equal(first.samples, second.samples)
    assert torch.equal(first.num_steps, second.num_steps)


def test_bad_starting_points_and_settings_are_refused():
    def potential(z: torch.Tensor, chains: torch.Tensor) -> torch.Tensor:
        return -torch.log(z).sum(-1)

    with pytest.raises(DataError, match="not finite at the starting point of chain\\(s\\) \\[1\\]"):
        batched_nuts(potential, torch.tensor([[1.0], [-1.0]]), 5, 5)
    with pytest.raises(DataError, match="shape \\(chains, dim\\)"):
        batched_nuts(potential, torch.ones(3), 5, 5)
    with pytest.raises(DataError, match="must be positive"):
        batched_nuts(potential, torch.ones(2, 1), 5, 5, inverse_mass=torch.zeros(2, 1))
    with pytest.raises(DataError, match="shape"):
        batched_nuts(potential, torch.ones(2, 1), 5, 5, inverse_mass=torch.ones(3, 1))
    with pytest.raises(DataError, match="positive definite"):
        batched_nuts(potential, torch.ones(2, 2), 5, 5, inverse_mass=-torch.eye(2).expand(2, 2, 2))
    with pytest.raises(ConfigError, match="target_accept_prob"):
        batched_nuts(potential, torch.ones(2, 1), 5, 5, target_accept_prob=1.0)


@pytest.mark.parametrize("warmup_steps, expected", [
    (0, []),
    (10, [(10, False)]),
    (100, [(15, False), (90, True), (100, False)]),
    # Stan's schedule for 1000 warm-up iterations: 75 fast, slow windows 25/50/100/200/500, 50 fast.
    (1000, [(75, False), (100, True), (150, True), (250, True), (450, True), (950, True), (1000, False)]),
])
def test_warmup_follows_stans_window_schedule(warmup_steps, expected):
    assert warmup_stages(warmup_steps) == expected


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_chains_run_on_the_gpu():
    def potential(z: torch.Tensor, chains: torch.Tensor) -> torch.Tensor:
        return 0.5 * z.pow(2).sum(-1)

    init = torch.randn(64, 2, device="cuda")
    run = batched_nuts(potential, init, 200, 100, generator=torch.Generator(device="cuda").manual_seed(0))
    assert run.samples.device.type == "cuda"
    assert abs(float(run.samples.var()) - 1) < 0.1
