"""The plain autoencoder as Pyro programs: ELBO = reconstruction, its errors, its training."""

from __future__ import annotations

import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import Normal
from torch.nn import functional as F

from ppl_vae.checkpoint import load_checkpoint
from ppl_vae.errors import ConfigError, DataError
from ppl_vae.inference import elbo_terms
from ppl_vae.models import MODEL_CLASSES, VAE, Autoencoder, build_model
from ppl_vae.models.autoencoder import FlatPrior

DATA_DIM, LATENT_DIM, BATCH = 12, 3, 7
# Pyro and the hand-written loss add the same float64 terms in another order.
FLOAT64_TOLERANCE = 1e-6
# The per-epoch test ELBO is computed in float32 over 360 images.
FLOAT32_TOLERANCE = 1e-4


def make_autoencoder(likelihood: str = "bernoulli", **kwargs) -> Autoencoder:
    return Autoencoder(DATA_DIM, LATENT_DIM, hidden_dims=(16, 8), likelihood=likelihood,
                       **kwargs).double()


def make_batch(likelihood: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(BATCH, DATA_DIM, generator=generator, dtype=torch.float64)
    return x.round() if likelihood == "bernoulli" else x


def hand_written_log_likelihood(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z = e(x)) per row, in plain PyTorch."""
    out = model.decoder.net(model.encoder.net(x))
    if model.likelihood == "bernoulli":
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)
    return Normal(out, model.observation.scale).log_prob(x).sum(-1)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("estimator", [Trace_ELBO, TraceMeanField_ELBO])
def test_elbo_loss_is_the_reconstruction_log_likelihood(likelihood, estimator):
    model = make_autoencoder(likelihood, learn_observation_scale=True)
    x = make_batch(likelihood)
    loss = estimator().differentiable_loss(model.model, model.guide, x)
    expected = -hand_written_log_likelihood(model, x).sum()
    assert loss.dtype == torch.float64
    assert torch.allclose(loss, expected, rtol=0, atol=FLOAT64_TOLERANCE), (loss, expected)


def test_gradients_are_those_of_the_reconstruction_loss():
    model = make_autoencoder("gaussian", learn_observation_scale=True)
    x = make_batch("gaussian")
    pyro_loss = TraceMeanField_ELBO().differentiable_loss(model.model, model.guide, x)
    pyro_grads = torch.autograd.grad(pyro_loss, list(model.parameters()))
    hand_loss = -hand_written_log_likelihood(model, x).sum()
    hand_grads = torch.autograd.grad(hand_loss, list(model.parameters()))
    for (name, _), got, want in zip(model.named_parameters(), pyro_grads, hand_grads):
        assert got.abs().sum() > 0, name
        assert torch.allclose(got, want, rtol=0, atol=FLOAT64_TOLERANCE), name


def test_minibatch_is_scaled_to_the_data_set_and_beta_has_no_effect():
    model = make_autoencoder()
    x = make_batch("bernoulli")
    loss_fn = TraceMeanField_ELBO().differentiable_loss
    full = loss_fn(model.model, model.guide, x)
    scaled = loss_fn(model.model, model.guide, x, num_data=3 * BATCH)
    warmed = loss_fn(model.model, model.guide, x, beta=0.25)
    assert torch.allclose(scaled, 3 * full, rtol=0, atol=FLOAT64_TOLERANCE)
    assert torch.allclose(warmed, full, rtol=0, atol=FLOAT64_TOLERANCE)


def test_elbo_terms_give_zero_kl_and_the_reconstruction():
    model = make_autoencoder()
    x = make_batch("bernoulli")
    expected = hand_written_log_likelihood(model, x)
    terms = elbo_terms(model, x, num_samples=3)
    assert torch.equal(terms["kl"].per_point, torch.zeros(BATCH, dtype=torch.float64))
    assert torch.allclose(terms["reconstruction"].per_point, expected, rtol=0, atol=FLOAT64_TOLERANCE)


def test_same_networks_as_a_vae_but_a_code_sized_encoder_output():
    autoencoder = Autoencoder(DATA_DIM, LATENT_DIM, hidden_dims=(16, 8))
    vae = VAE(DATA_DIM, LATENT_DIM, hidden_dims=(16, 8))
    for part in ("decoder",):
        assert [p.shape for p in getattr(autoencoder, part).parameters()] == \
               [p.shape for p in getattr(vae, part).parameters()]
    ae_encoder = [p.shape for p in autoencoder.encoder.parameters()]
    vae_encoder = [p.shape for p in vae.encoder.parameters()]
    assert ae_encoder[:-2] == vae_encoder[:-2]
    assert ae_encoder[-2:] == [torch.Size([LATENT_DIM, 8]), torch.Size([LATENT_DIM])]
    assert vae_encoder[-2:] == [torch.Size([2 * LATENT_DIM, 8]), torch.Size([2 * LATENT_DIM])]


def test_encode_reconstruct_and_decode_shapes():
    model = make_autoencoder()
    x = make_batch("bernoulli")
    codes, scale = model.encode(x)
    assert codes.shape == scale.shape == (BATCH, LATENT_DIM)
    assert torch.equal(scale, torch.zeros_like(codes))
    assert torch.allclose(codes, model.encoder.net(x))
    assert torch.allclose(model.reconstruct(x), torch.sigmoid(model.decoder.net(codes)))
    likelihood = model.decode(torch.zeros(4, 5, LATENT_DIM, dtype=torch.float64))
    assert likelihood.batch_shape == (4, 5) and likelihood.event_shape == (DATA_DIM,)


def test_sample_raises_a_clear_error():
    with pytest.raises(ConfigError, match="no prior"):
        make_autoencoder().sample(3)


def test_flat_prior_scores_zero_in_the_values_dtype_and_cannot_sample():
    prior = FlatPrior(LATENT_DIM).expand((BATCH,))
    assert isinstance(prior, FlatPrior)
    assert prior.batch_shape == (BATCH,) and prior.event_shape == (LATENT_DIM,)
    value = torch.randn(2, BATCH, LATENT_DIM, dtype=torch.float64)
    log_prob = prior.log_prob(value)
    assert log_prob.dtype == torch.float64 and log_prob.shape == (2, BATCH)
    assert torch.equal(log_prob, torch.zeros(2, BATCH, dtype=torch.float64))
    with pytest.raises(NotImplementedError, match="guide"):
        prior.sample()


@pytest.mark.parametrize("kwargs, message", [
    ({"latent_dim": 0}, "latent_dim"),
    ({"data_dim": 2.5}, "data_dim"),
    ({"hidden_dims": (16, -1)}, "hidden dimension"),
    ({"likelihood": "poisson"}, "likelihood"),
    ({"observation_scale": 0.0}, "observation_scale"),
    ({"activation": "gelu"}, "activation"),
])
def test_bad_configuration_raises_config_error(kwargs, message):
    arguments = {"data_dim": DATA_DIM, "latent_dim": LATENT_DIM, **kwargs}
    with pytest.raises(ConfigError, match=message):
        Autoencoder(**arguments)


@pytest.mark.parametrize("bad", [
    torch.zeros(BATCH, DATA_DIM + 1, dtype=torch.float64),
    torch.zeros(BATCH, DATA_DIM, dtype=torch.int64),
    torch.zeros(0, DATA_DIM, dtype=torch.float64),
    [[0.0] * DATA_DIM],
])
@pytest.mark.parametrize("method", ["encode", "model", "guide"])
def test_bad_batches_raise_data_error(bad, method):
    with pytest.raises(DataError):
        getattr(make_autoencoder(), method)(bad)


def test_registered_for_checkpoints():
    model = Autoencoder(DATA_DIM, LATENT_DIM, likelihood="gaussian", observation_scale=0.3)
    assert MODEL_CLASSES["Autoencoder"] is Autoencoder
    rebuilt = build_model("Autoencoder", model.config())
    assert isinstance(rebuilt, Autoencoder) and rebuilt.config() == model.config()


def test_trains_with_test_data_and_checkpoints(tmp_path):
    from ppl_vae.data import evaluation_data, load_dataset
    from ppl_vae.training import SVIConfig, train

    data = load_dataset("digits")
    model = Autoencoder(data.data_dim, 2, hidden_dims=(32,))
    config = SVIConfig(epochs=4, batch_size=128, learning_rate=3e-3, binarize="dynamic")
    result = train(model, data.train_x, config, test_x=data.test_x, out_dir=tmp_path)
    history = result.history
    assert len(history) == 4
    assert history[-1]["train_elbo"] > history[0]["train_elbo"]
    for record in history:
        assert record["test_kl"] == 0.0
        assert record["test_elbo"] == record["test_reconstruction"]
    test_binary = evaluation_data(data.test_x, "dynamic", config.seed)
    with torch.no_grad():
        expected = hand_written_log_likelihood(model, test_binary).mean().item()
    assert abs(history[-1]["test_elbo"] - expected) < FLOAT32_TOLERANCE * abs(expected)

    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint["model_class"] == "Autoencoder"
    rebuilt = build_model(checkpoint["model_class"], checkpoint["model_config"])
    rebuilt.load_state_dict(checkpoint["model_state"])
    assert torch.equal(rebuilt.reconstruct(test_binary), model.reconstruct(test_binary))


@pytest.mark.gpu
def test_trains_on_the_gpu():
    model = Autoencoder(DATA_DIM, LATENT_DIM, hidden_dims=(16,)).cuda()
    x = torch.rand(BATCH, DATA_DIM, device="cuda").round()
    loss = TraceMeanField_ELBO().differentiable_loss(model.model, model.guide, x)
    loss.backward()
    assert loss.device.type == "cuda"
    assert torch.allclose(loss, -hand_written_log_likelihood(model, x).sum(), rtol=1e-5)


@pytest.mark.parametrize("estimate", ["elbo", "iwae", "naive_prior", "sample_posterior"])
def test_likelihood_estimators_and_nuts_refuse_a_model_without_a_prior(estimate):
    import ppl_vae.inference as inference

    model = Autoencoder(data_dim=4, latent_dim=2, hidden_dims=(8,))
    with pytest.raises(ConfigError, match="no.*log p\\(x\\)"):
        getattr(inference, estimate)(model, torch.rand(3, 4))
