"""KL per latent dimension and active units, against exact answers and rigged encoders."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.evaluation.representation import (
    ActiveUnits,
    active_units,
    gaussian_kl,
    kl_per_dimension,
)
from ppl_vae.inference import elbo_terms
from ppl_vae.models import VAE, Autoencoder, GaussianMixture, LinearGaussian
from ppl_vae.models.networks import MIN_SCALE

MC_Z = 4.0  # allowed deviation in Monte Carlo standard errors
EXACT = 1e-10  # float64 agreement of two closed forms of the same quantity


@pytest.fixture
def vae_and_data() -> tuple[VAE, torch.Tensor]:
    """An untrained float64 VAE (its random encoder gives KLs of order 1) and 40 binary points."""
    torch.manual_seed(0)
    model = VAE(12, 5, hidden_dims=(16,)).double()
    x = torch.bernoulli(torch.full((40, 12), 0.3, dtype=torch.float64))
    return model, x


def collapse_units(model: VAE, units: list[int]) -> None:
    """Rig the encoder so that q(z_j | x) = N(0, 1) for every x, for each j in ``units``."""
    last = model.encoder.net[-1]
    unit_bias = math.log(math.expm1(1.0 - MIN_SCALE))  # softplus(b) + MIN_SCALE = 1
    with torch.no_grad():
        for j in units:
            for row, bias in ((j, 0.0), (model.latent_dim + j, unit_bias)):
                last.weight[row] = 0.0
                last.bias[row] = bias


# ----- kl_per_dimension -------------------------------------------------------------


def test_kl_per_dimension_matches_torch_kl_divergence(vae_and_data):
    model, x = vae_and_data
    per_dim = kl_per_dimension(model, x)
    loc, scale = model.encode(x)
    reference = kl_divergence(Normal(loc, scale), Normal(0.0, 1.0)).mean(0)
    assert per_dim.shape == (model.latent_dim,)
    assert torch.allclose(per_dim, reference.detach(), rtol=0, atol=EXACT)
    assert bool((per_dim > 0).all())


def test_kl_per_dimension_matches_a_monte_carlo_estimate(vae_and_data):
    model, x = vae_and_data
    per_dim = kl_per_dimension(model, x)
    with torch.no_grad():
        loc, scale = model.encode(x)
        q = Normal(loc, scale)
        num_samples = 4000
        z = q.sample((num_samples,))                               # (S, N, L)
        log_ratio = q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)   # per-coordinate KL draws
    estimate = log_ratio.mean((0, 1))
    # Points differ in their KL, so the grand mean's variance is the sum of the per-point
    # variances of the sample means, divided by N^2.
    stderr = log_ratio.var(0).div(num_samples).sum(0).sqrt() / x.shape[0]
    assert bool(((estimate - per_dim).abs() < MC_Z * stderr).all()), (estimate, per_dim, stderr)
    assert float(stderr.max()) < 0.05  # the check has teeth: errors well below the KLs (~0.3)


def test_kl_per_dimension_sums_to_the_elbo_kl_term(vae_and_data):
    model, x = vae_and_data
    per_dim = kl_per_dimension(model, x)
    loc, scale = model.encode(x)
    joint = kl_divergence(Independent(Normal(loc, scale), 1),
                          Independent(Normal(torch.zeros_like(loc), 1.0), 1)).mean().detach()
    assert abs(float(per_dim.sum() - joint)) < EXACT
    # elbo_terms estimates the KL by Monte Carlo (log q(z|x) - log p(z) at z ~ q), so
    # the sum agrees with it within its standard error, not exactly.
    kl = elbo_terms(model, x, 2000)["kl"]
    assert abs(float(per_dim.sum()) - kl.mean) < MC_Z * kl.mean_stderr
    assert kl.mean_stderr < 0.05


def test_diagonal_linear_gaussian_guide_sums_to_the_joint_kl(diagonal_ppca):
    model, x = diagonal_ppca  # its guide has scale_tril = I: a diagonal Gaussian
    loc, scale_tril = model.encoder(x)
    prior = MultivariateNormal(torch.zeros(2, dtype=x.dtype), torch.eye(2, dtype=x.dtype))
    joint = kl_divergence(MultivariateNormal(loc, scale_tril=scale_tril), prior).mean().detach()
    assert abs(float(kl_per_dimension(model, x).sum() - joint)) < EXACT


def test_correlated_guide_falls_short_of_the_joint_kl_by_the_total_correlation(diagonal_ppca):
    model, x = diagonal_ppca
    with torch.no_grad():
        model.encoder.raw_scale_tril.copy_(torch.tensor([[0.2, 0.0], [0.9, -0.4]]))
    loc, scale_tril = model.encoder(x)
    covariance = (scale_tril @ scale_tril.T).detach()
    prior = MultivariateNormal(torch.zeros(2, dtype=x.dtype), torch.eye(2, dtype=x.dtype))
    joint = kl_divergence(MultivariateNormal(loc, scale_tril=scale_tril), prior).mean().detach()
    total_correlation = 0.5 * (covariance.diagonal().log().sum() - torch.logdet(covariance))
    assert float(total_correlation) > 0.1
    assert abs(float(kl_per_dimension(model, x).sum() + total_correlation - joint)) < EXACT


def test_a_collapsed_unit_has_zero_kl_and_is_inactive(vae_and_data):
    model, x = vae_and_data
    collapse_units(model, [1, 4])
    per_dim = kl_per_dimension(model, x)
    assert float(per_dim[[1, 4]].abs().max()) < 1e-9
    assert bool((per_dim[[0, 2, 3]] > 1e-3).all())
    units = active_units(model, x, threshold=0.0)
    assert units.mask.tolist() == [True, False, True, True, False]
    assert float(units.variances[[1, 4]].abs().max()) == 0.0


# ----- active_units -----------------------------------------------------------------


@pytest.fixture
def rigged_ppca() -> tuple[LinearGaussian, torch.Tensor]:
    """pPCA whose encoder mean is z_j = w_j * x_0 with w = (1, 0, 0.2, 0, 0.05), and data
    whose column x_0 has sample variance exactly 1, so Var_x(E[z_j | x]) = w_j^2 exactly."""
    torch.manual_seed(0)
    model = LinearGaussian(6, 5).double()
    x = torch.randn(50, 6, dtype=torch.float64)
    x[:, 0] = (x[:, 0] - x[:, 0].mean()) / x[:, 0].std()
    with torch.no_grad():
        model.encoder.weight.zero_()
        model.encoder.weight[:, 0] = torch.tensor([1.0, 0.0, 0.2, 0.0, 0.05], dtype=torch.float64)
        model.encoder.bias.copy_(torch.arange(5, dtype=torch.float64))  # constants do not count
    return model, x


@pytest.mark.parametrize(
    ("threshold", "expected_mask"),
    [
        (1e-2, [True, False, True, False, False]),   # Burda et al.'s threshold: 0.0025 is below
        (1e-3, [True, False, True, False, True]),
        (0.05, [True, False, False, False, False]),  # 0.04 is below
        (0.0, [True, False, True, False, True]),     # constant means have variance exactly 0
        (2.0, [False] * 5),
    ],
)
def test_active_units_counts_the_rigged_units_exactly(rigged_ppca, threshold, expected_mask):
    model, x = rigged_ppca
    units = active_units(model, x, threshold)
    assert isinstance(units, ActiveUnits)
    assert units.count == sum(expected_mask)
    assert units.mask.tolist() == expected_mask
    assert units.threshold == threshold
    expected = torch.tensor([1.0, 0.0, 0.04, 0.0, 0.0025], dtype=torch.float64)
    assert torch.allclose(units.variances, expected, rtol=1e-12, atol=1e-15)


def test_default_threshold_is_burdas(rigged_ppca):
    model, x = rigged_ppca
    assert active_units(model, x).count == 2


@pytest.mark.parametrize("batch_size", [1, 3, 7, 1024])
def test_results_do_not_depend_on_the_chunk_size(vae_and_data, batch_size):
    model, x = vae_and_data
    kl = kl_per_dimension(model, x, batch_size=batch_size)
    units = active_units(model, x, batch_size=batch_size)
    assert torch.allclose(kl, kl_per_dimension(model, x, batch_size=len(x)), rtol=1e-12)
    assert torch.allclose(units.variances,
                          active_units(model, x, batch_size=len(x)).variances, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outputs_follow_the_encoder_dtype_and_need_no_gradients(dtype):
    model = VAE(12, 3, hidden_dims=(8,)).to(dtype)
    x = torch.rand(10, 12, dtype=dtype)
    kl = kl_per_dimension(model, x)
    units = active_units(model, x)
    for tensor in (kl, units.variances):
        assert tensor.dtype == dtype
        assert tensor.device == x.device
        assert not tensor.requires_grad


@pytest.mark.gpu
def test_outputs_stay_on_the_gpu():
    model = VAE(12, 3, hidden_dims=(8,)).cuda()
    x = torch.rand(10, 12, device="cuda")
    assert kl_per_dimension(model, x).device.type == "cuda"
    assert active_units(model, x).variances.device.type == "cuda"


@pytest.mark.parametrize(
    ("x", "message"),
    [
        ([[0.0] * 12] * 3, "torch.Tensor"),
        (torch.zeros(3, 11), "shape"),
        (torch.zeros(12), "shape"),
        (torch.zeros(0, 12), "empty"),
        (torch.zeros(3, 12, dtype=torch.long), "floating-point"),
    ],
)
def test_malformed_data_raise_data_error(x, message):
    model = VAE(12, 3, hidden_dims=(8,))
    for function in (kl_per_dimension, active_units):
        with pytest.raises(DataError, match=message):
            function(model, x)


def test_one_point_has_no_variance():
    model = VAE(12, 3, hidden_dims=(8,))
    with pytest.raises(DataError, match="at least 2"):
        active_units(model, torch.rand(1, 12))
    assert kl_per_dimension(model, torch.rand(1, 12)).shape == (3,)


def test_non_finite_encoder_means_raise_data_error():
    model = VAE(12, 3, hidden_dims=(8,))
    x = torch.rand(4, 12)
    x[2, 5] = math.nan
    with pytest.raises(DataError, match="NaN"):
        active_units(model, x)


@pytest.mark.parametrize("threshold", [-0.1, math.nan, math.inf, True, "0.01", None])
def test_bad_threshold_raises_config_error(threshold):
    model = VAE(12, 3, hidden_dims=(8,))
    with pytest.raises(ConfigError, match="threshold"):
        active_units(model, torch.rand(4, 12), threshold)


@pytest.mark.parametrize("batch_size", [0, -5, 2.5, True])
def test_bad_batch_size_raises_config_error(batch_size):
    model = VAE(12, 3, hidden_dims=(8,))
    for function in (kl_per_dimension, active_units):
        with pytest.raises(ConfigError, match="batch_size"):
            function(model, torch.rand(4, 12), batch_size=batch_size)


def test_a_model_without_a_gaussian_latent_raises_config_error():
    mixture = GaussianMixture(12, 3)
    for function in (kl_per_dimension, active_units):
        with pytest.raises(ConfigError, match="continuous latent code"):
            function(mixture, torch.rand(4, 12))


def test_an_autoencoder_has_active_units_but_no_kl_to_a_prior():
    model = Autoencoder(12, 3, hidden_dims=(8,))
    x = torch.rand(10, 12)
    codes, _ = model.encode(x)
    units = active_units(model, x)
    assert torch.allclose(units.variances, codes.detach().var(0), rtol=1e-6)
    with pytest.raises(ConfigError, match="normalized prior"):
        kl_per_dimension(model, x)


def test_data_on_another_device_raise_data_error():
    model = VAE(12, 3, hidden_dims=(8,))
    x = torch.rand(4, 12, device="meta")
    for function in (kl_per_dimension, active_units):
        with pytest.raises(DataError, match="device"):  # issue 16: was ConfigError
            function(model, x)


def test_gaussian_kl_is_the_closed_form_kl_to_the_standard_normal_elementwise():
    torch.manual_seed(0)
    loc, scale = torch.randn(5, 3, dtype=torch.float64), torch.rand(5, 3, dtype=torch.float64) + 0.1
    exact = kl_divergence(Normal(loc, scale), Normal(torch.zeros_like(loc), torch.ones_like(scale)))
    torch.testing.assert_close(gaussian_kl(loc, scale), exact, rtol=0, atol=1e-12)
    assert torch.equal(gaussian_kl(torch.zeros(2, 2), torch.ones(2, 2)), torch.zeros(2, 2))
    with pytest.raises(DataError, match="positive"):
        gaussian_kl(loc, -scale)
    with pytest.raises(DataError, match="one shape"):
        gaussian_kl(loc, scale[:, :2])
