"""The direct ELBO is Pyro's ELBO: same draws, same value, same gradient, same training."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from ppl_vae import VAE, Autoencoder, GaussianMixture, LinearGaussian, SVIConfig, train
from ppl_vae.errors import ConfigError
from ppl_vae.inference.objectives import direct_elbo_loss, make_loss

PYRO_ESTIMATORS = {"meanfield": TraceMeanField_ELBO, "trace": Trace_ELBO}
# float64 sums taken in a different order agree to about 1e-15 relative.
TOLERANCE = dict(rtol=1e-10, atol=1e-10)

MODELS = {
    "vae-bernoulli": lambda: VAE(6, 3, hidden_dims=(8,)),
    "vae-gaussian-learned-scale": lambda: VAE(6, 3, hidden_dims=(8,), likelihood="gaussian",
                                              learn_observation_scale=True),
    "ppca": lambda: LinearGaussian(6, 3, noise_scale=0.7),
}


def _model_and_data(name: str):
    torch.manual_seed(0)
    model = MODELS[name]().double()
    x = torch.rand(5, 6, dtype=torch.float64)
    if name == "vae-bernoulli":
        x = torch.bernoulli(x)
    return model, x


def _loss_and_gradients(model, loss):
    pyro.set_rng_seed(11)
    model.zero_grad()
    value = loss()
    value.backward()
    return value.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("estimator", ["meanfield", "trace"])
@pytest.mark.parametrize("num_particles", [1, 4])
@pytest.mark.parametrize("beta,num_data", [(1.0, None), (0.3, 40), (1e-3, 7)])
def test_direct_loss_equals_pyros_differentiable_loss(name, estimator, num_particles, beta, num_data):
    model, x = _model_and_data(name)
    # Given max_plate_nesting (the data plate, plus one for vectorized particles), Pyro does
    # not run the programs once to guess it, which would use up random draws.
    pyro_elbo = PYRO_ESTIMATORS[estimator](num_particles=num_particles,
                                           vectorize_particles=num_particles > 1,
                                           max_plate_nesting=1 + (num_particles > 1))
    kwargs = {"num_data": num_data, "beta": beta}
    expected, expected_grads = _loss_and_gradients(
        model, lambda: pyro_elbo.differentiable_loss(model.model, model.guide, x, **kwargs))
    found, found_grads = _loss_and_gradients(
        model, lambda: direct_elbo_loss(model, x, estimator=estimator,
                                        num_particles=num_particles, **kwargs))
    torch.testing.assert_close(found, expected, **TOLERANCE)
    for a, b in zip(found_grads, expected_grads):
        torch.testing.assert_close(a, b, **TOLERANCE)


def test_the_draws_are_really_random_so_equality_is_not_trivial():
    model, x = _model_and_data("vae-bernoulli")
    first, _ = _loss_and_gradients(model, lambda: direct_elbo_loss(model, x, estimator="trace"))
    pyro.set_rng_seed(12)
    assert direct_elbo_loss(model, x, estimator="trace") != first


def test_training_with_either_engine_follows_the_same_path():
    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(90, 6, dtype=torch.float64))
    histories, states = [], []
    for engine in ("pyro", "direct"):
        torch.manual_seed(1)
        model = VAE(6, 2, hidden_dims=(8,)).double()
        config = SVIConfig(epochs=3, batch_size=16, seed=4, engine=engine, kl_warmup_epochs=2)
        result = train(model, x, config, test_x=x[:20], progress=False)
        histories.append([{k: v for k, v in r.items() if k != "wall_time"} for r in result.history])
        states.append(model.state_dict())
    for a, b in zip(*histories):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-9), key
    for name in states[0]:
        torch.testing.assert_close(states[0][name], states[1][name], rtol=1e-8, atol=1e-10)


def test_models_outside_the_gaussian_family_train_through_pyro():
    autoencoder = Autoencoder(6, 2, hidden_dims=(8,))
    mixture = GaussianMixture(6, 3)
    for model in (autoencoder, mixture):
        with pytest.raises(ConfigError, match="engine='direct' needs"):
            make_loss(model, "meanfield", 1, engine="direct")
    x = torch.rand(4, 6)
    assert make_loss(VAE(6, 2), "meanfield", 1).func is direct_elbo_loss
    loss = make_loss(autoencoder, "meanfield", 1)(autoencoder, x, num_data=4)
    assert torch.isfinite(loss)


def test_an_unknown_engine_is_refused():
    with pytest.raises(ConfigError, match="unknown engine"):
        SVIConfig(engine="jit")


def test_a_subclass_that_rewrites_the_model_program_trains_through_pyro():
    class VAEWithExtraTerm(VAE):
        def model(self, x, num_data=None, beta=1.0):
            super().model(x, num_data, beta)
            pyro.factor("extra", x.new_tensor(-123.0))

    model = VAEWithExtraTerm(6, 2, hidden_dims=(8,))
    with pytest.raises(ConfigError, match="rewrites model"):
        make_loss(model, "meanfield", 1, engine="direct")
    x = torch.rand(3, 6)
    pyro.set_rng_seed(0)
    with_extra = make_loss(model, "meanfield", 1)(model, x)
    pyro.set_rng_seed(0)
    without = direct_elbo_loss(model, x)
    assert float(with_extra) == pytest.approx(float(without) + 123.0, rel=1e-6)


# ----- the closed-form Gaussian KL: one formula for the ELBO and for gaussian_kl --------------


def _codes(dtype=torch.float64):
    generator = torch.Generator().manual_seed(2)
    loc = torch.randn(7, 4, generator=generator, dtype=dtype)
    return loc, torch.rand(7, 4, generator=generator, dtype=dtype) + 0.05


def test_the_elbo_kl_and_gaussian_kl_are_one_formula():
    from torch.distributions import Independent, Normal, kl_divergence

    from ppl_vae.inference.objectives import _kl_to_standard_normal_sum, gaussian_kl

    loc, scale = _codes()
    summed = _kl_to_standard_normal_sum(Independent(Normal(loc, scale), 1))
    # Bit for bit the expression every training history was computed with (issue 16 moved it).
    assert torch.equal(summed, 0.5 * (loc.pow(2) + scale.pow(2) - 1.0).sum() - scale.log().sum())
    exact = kl_divergence(Normal(loc, scale), Normal(torch.zeros_like(loc), torch.ones_like(scale)))
    torch.testing.assert_close(gaussian_kl(loc, scale), exact, **TOLERANCE)
    torch.testing.assert_close(summed, exact.sum(), **TOLERANCE)


def test_gaussian_kl_reads_no_value_off_a_device():
    """The positivity check runs on CPU tensors only; a meta tensor has no values to read, so any
    read back (what would wait for a GPU) raises here."""
    from ppl_vae.inference.objectives import gaussian_kl

    loc, scale = (t.to("meta") for t in _codes(torch.float32))
    kl = gaussian_kl(loc, -scale)
    assert kl.device.type == "meta" and kl.shape == loc.shape


def test_a_non_positive_scale_on_the_cpu_is_refused_in_one_line():
    from ppl_vae.errors import DataError
    from ppl_vae.inference.objectives import gaussian_kl

    loc, scale = _codes()
    for bad in (-scale, torch.zeros_like(scale)):
        with pytest.raises(DataError, match="every scale must be positive; pass standard deviations"):
            gaussian_kl(loc, bad)


@pytest.mark.gpu
def test_gaussian_kl_does_not_synchronize_a_gpu_and_gives_nan_for_a_negative_scale():
    from ppl_vae.inference.objectives import gaussian_kl

    loc, scale = (t.cuda() for t in _codes(torch.float32))
    torch.cuda.set_sync_debug_mode("error")
    try:
        kl = gaussian_kl(loc, -scale)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert bool(kl.isnan().all())
