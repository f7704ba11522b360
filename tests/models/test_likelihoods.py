"""Likelihood objects: the registry, the data each accepts, its distribution, a user's own, checkpoints."""

from __future__ import annotations

import math

import pyro.distributions as dist
import pytest
import torch
from torch.nn import functional as F

from ppl_vae.checkpoint import load_checkpoint
from ppl_vae.data import load_dataset
from ppl_vae.errors import ConfigError, DataError
from ppl_vae.inference import elbo
from ppl_vae.models import (
    LIKELIHOODS,
    VAE,
    BernoulliLikelihood,
    GaussianLikelihood,
    Likelihood,
    build_model,
    get_likelihood,
    register_likelihood,
)
from ppl_vae.models.likelihoods import likelihood_of
from ppl_vae.training import SVIConfig, train

DATA_DIM = 4
#: Hand formula and torch add the same float64 terms in another order.
FLOAT64_TOLERANCE = 1e-12
#: A couple of epochs on the 8x8 digits: enough to move every parameter, not to fit.
SHORT_TRAINING = SVIConfig(epochs=2, batch_size=128, learning_rate=1e-2, binarize="none")


@pytest.fixture
def registry():
    """The registry as it was, restored after the test: registering is global."""
    saved = dict(LIKELIHOODS)
    yield LIKELIHOODS
    LIKELIHOODS.clear()
    LIKELIHOODS.update(saved)


class Laplace(Likelihood):
    """A user's likelihood with a learned scale: ``x_d ~ Laplace(out_d, b)``."""

    name = "laplace"

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(0.2)))

    def distribution(self, out: torch.Tensor) -> dist.TorchDistribution:
        return dist.Laplace(out, self.log_scale.exp()).to_event(1)


def test_the_registry_holds_the_two_built_in_likelihoods_by_name():
    assert LIKELIHOODS["bernoulli"] is BernoulliLikelihood
    assert LIKELIHOODS["gaussian"] is GaussianLikelihood
    assert isinstance(get_likelihood("bernoulli"), BernoulliLikelihood)
    gaussian = get_likelihood("gaussian", observation_scale=0.3, learn_observation_scale=True)
    assert isinstance(gaussian.log_scale, torch.nn.Parameter)
    assert math.isclose(gaussian.scale.item(), 0.3, rel_tol=1e-6)
    assert get_likelihood(gaussian) is gaussian
    assert BernoulliLikelihood.default_binarize == "dynamic"
    assert GaussianLikelihood.default_binarize == "none"


@pytest.mark.parametrize("name", ["poisson", "Bernoulli", None, 3, BernoulliLikelihood])
def test_an_unknown_likelihood_is_one_config_error_naming_the_choices(name):
    with pytest.raises(ConfigError, match="unknown .*choose one of bernoulli, gaussian"):
        get_likelihood(name)
    with pytest.raises(ConfigError, match="choose one of bernoulli, gaussian"):
        VAE(DATA_DIM, 2, likelihood=name)


def test_register_likelihood_refuses_a_taken_name_and_a_class_that_is_no_likelihood(registry):
    class Impostor(Likelihood):
        name = "bernoulli"

    with pytest.raises(ConfigError, match="'bernoulli' is taken"):
        register_likelihood(Impostor)
    with pytest.raises(ConfigError, match="Likelihood subclass with a name"):
        register_likelihood(dist.Laplace)
    assert register_likelihood(BernoulliLikelihood) is BernoulliLikelihood  # again: no change
    assert registry["bernoulli"] is BernoulliLikelihood
    with pytest.raises(ConfigError, match="Likelihood has no name; set the class attribute name"):
        VAE(DATA_DIM, 2, likelihood=Likelihood())


@pytest.mark.parametrize("x, message", [
    (torch.tensor([[0.0, 1.5]]), r"Bernoulli likelihood needs values in \[0, 1\]; the data range "
                                 r"over \[0, 1.5\]\. .*--binarize dynamic.*--likelihood gaussian"),
    (torch.tensor([[-0.1, 1.0]]), r"needs values in \[0, 1\]"),
    (torch.tensor([[0.0, float("nan")], [1.0, 0.0]]), r"1 NaN or infinite values \(first in row 0\)"),
])
def test_bernoulli_check_names_the_problem_and_the_fix(x, message):
    with pytest.raises(DataError, match=message):
        BernoulliLikelihood().check(x)


def test_grey_values_suit_a_bernoulli_and_any_finite_value_a_gaussian():
    BernoulliLikelihood().check(torch.tensor([[0.0, 0.25, 1.0]]))
    GaussianLikelihood().check(torch.tensor([[-3.0, 0.25, 70.0]]))
    with pytest.raises(DataError, match="NaN or infinite"):
        GaussianLikelihood().check(torch.tensor([[0.0, float("inf")]]))


def test_the_distributions_score_the_hand_formula_with_event_shape_data_dim():
    generator = torch.Generator().manual_seed(0)
    out = torch.randn(3, 5, DATA_DIM, generator=generator, dtype=torch.float64)
    grey = torch.rand(3, 5, DATA_DIM, generator=generator, dtype=torch.float64)
    bernoulli = BernoulliLikelihood().distribution(out)
    assert bernoulli.batch_shape == (3, 5) and bernoulli.event_shape == (DATA_DIM,)
    expected = (grey * out - F.softplus(out)).sum(-1)
    assert torch.allclose(bernoulli.log_prob(grey), expected, rtol=0, atol=FLOAT64_TOLERANCE)

    gaussian = GaussianLikelihood(scale=0.3).double()
    normal = gaussian.distribution(out)
    assert normal.batch_shape == (3, 5) and normal.event_shape == (DATA_DIM,)
    sigma = gaussian.scale  # 0.3 as its float32 logarithm holds it
    z = (grey - out) / sigma
    expected = (-0.5 * z**2 - sigma.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert torch.allclose(normal.log_prob(grey), expected, rtol=0, atol=FLOAT64_TOLERANCE)


def test_a_vae_s_likelihood_is_the_distribution_it_was_before_likelihood_objects():
    """Bit for bit: the inference layer's fused Bernoulli kernel recognizes this distribution."""
    for likelihood in ("bernoulli", "gaussian"):
        vae = VAE(DATA_DIM, 2, hidden_dims=(3,), likelihood=likelihood, learn_observation_scale=True)
        z = torch.randn(6, 2)
        x = torch.rand(6, DATA_DIM)
        out = vae.decoder(z)
        before = (dist.Bernoulli(logits=out, validate_args=False).to_event(1)
                  if likelihood == "bernoulli" else dist.Normal(out, vae.observation.log_scale.exp()).to_event(1))
        assert type(vae.decode(z).base_dist) is type(before.base_dist)
        assert torch.equal(vae.decode(z).log_prob(x), before.log_prob(x))
        assert vae.likelihood == likelihood and likelihood_of(vae) is vae.observation


def test_the_state_and_config_of_a_vae_keep_the_format_of_saved_checkpoints():
    """The keys and settings that checkpoints written before likelihood objects hold."""
    vae = VAE(DATA_DIM, 2, hidden_dims=(3,), likelihood="gaussian", observation_scale=0.3,
              learn_observation_scale=True)
    networks = [f"{net}.net.{layer}.{leaf}" for net in ("encoder", "decoder")
                for layer in (0, 2) for leaf in ("weight", "bias")]
    assert list(vae.state_dict()) == [*networks, "observation.log_scale"]
    assert [name for name, _ in vae.named_parameters()] == [*networks, "observation.log_scale"]
    assert vae.config() == {"data_dim": DATA_DIM, "latent_dim": 2, "hidden_dims": [3],
                            "likelihood": "gaussian", "activation": "softplus", "name": "vae",
                            "observation_scale": 0.3, "learn_observation_scale": True}
    bernoulli = VAE(DATA_DIM, 2, hidden_dims=(3,))
    assert list(bernoulli.state_dict()) == networks
    assert bernoulli.config()["observation_scale"] == 0.1 and bernoulli.config()["likelihood"] == "bernoulli"


def test_a_likelihood_object_gives_the_model_its_name_and_its_settings():
    vae = VAE(DATA_DIM, 2, likelihood=GaussianLikelihood(scale=0.5, learn_scale=True))
    assert vae.likelihood == "gaussian"
    assert vae.config()["observation_scale"] == 0.5 and vae.config()["learn_observation_scale"]
    assert build_model("VAE", vae.config()).config() == vae.config()


def test_a_gaussian_with_learned_scale_round_trips_through_a_checkpoint(tmp_path):
    data = load_dataset("digits")
    vae = VAE(data.data_dim, 2, hidden_dims=(16,), likelihood="gaussian", observation_scale=0.5,
              learn_observation_scale=True)
    train(vae, data.train_x, SHORT_TRAINING, out_dir=tmp_path)
    assert not math.isclose(vae.observation.scale.item(), 0.5, rel_tol=1e-3)  # it learned

    checkpoint = load_checkpoint(tmp_path)
    assert "observation.log_scale" in checkpoint["model_state"]
    rebuilt = build_model(checkpoint["model_class"], checkpoint["model_config"])
    rebuilt.load_state_dict(checkpoint["model_state"])
    assert isinstance(rebuilt.observation.log_scale, torch.nn.Parameter)
    assert torch.equal(rebuilt.observation.scale, vae.observation.scale)
    z = torch.randn(5, 2)
    assert torch.equal(rebuilt.decode(z).log_prob(data.test_x[:5]), vae.decode(z).log_prob(data.test_x[:5]))


def test_a_registered_likelihood_of_a_user_trains_a_vae_and_rebuilds_from_its_checkpoint(registry, tmp_path):
    register_likelihood(Laplace)
    data = load_dataset("digits")
    vae = VAE(data.data_dim, 2, hidden_dims=(16,), likelihood="laplace")
    assert isinstance(vae.observation, Laplace) and vae.config()["likelihood"] == "laplace"
    before = vae.observation.log_scale.item()
    result = train(vae, data.train_x, SHORT_TRAINING, test_x=data.test_x, out_dir=tmp_path)
    assert all(math.isfinite(record["test_elbo"]) for record in result.history)
    assert vae.observation.log_scale.item() != before  # registered with Pyro and trained
    assert math.isfinite(elbo(vae, data.test_x).mean)

    checkpoint = load_checkpoint(tmp_path)
    rebuilt = build_model(checkpoint["model_class"], checkpoint["model_config"])
    rebuilt.load_state_dict(checkpoint["model_state"])
    z = torch.randn(5, 2)
    assert torch.equal(rebuilt.decode(z).log_prob(data.test_x[:5]), vae.decode(z).log_prob(data.test_x[:5]))


def test_a_likelihood_s_check_guards_training():
    class Positive(Likelihood):
        name = "positive"

        def distribution(self, out):
            return dist.Exponential(F.softplus(out)).to_event(1)

        def check(self, x):
            super().check(x)
            if bool((x <= 0).any()):
                raise DataError("an exponential likelihood needs positive values")

    vae = VAE(DATA_DIM, 2, hidden_dims=(3,), likelihood=Positive())
    with pytest.raises(DataError, match="needs positive values"):
        train(vae, torch.zeros(8, DATA_DIM), SHORT_TRAINING)
