"""The VAE as Pyro programs: its ELBO, its parameters, its shapes, its errors."""

from __future__ import annotations

import pyro
import pyro.optim
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import Normal, kl_divergence

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.models import MODEL_CLASSES, VAE, Autoencoder, LinearGaussian, TwoLayerVAE

DATA_DIM, LATENT_DIM, BATCH = 12, 3, 7
# Pyro and the hand-written ELBO add the same float64 terms in another order.
FLOAT64_TOLERANCE = 1e-5


def make_vae(likelihood: str = "bernoulli", **kwargs) -> VAE:
    return VAE(DATA_DIM, LATENT_DIM, hidden_dims=(16, 8), likelihood=likelihood, **kwargs).double()


def make_batch(likelihood: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(BATCH, DATA_DIM, generator=generator, dtype=torch.float64)
    return x.round() if likelihood == "bernoulli" else x


def hand_written_elbo(vae: VAE, x: torch.Tensor, eps: torch.Tensor, analytic_kl: bool) -> torch.Tensor:
    """Sum over the batch of log p(x|z) - KL, with z = mu + sigma * eps, in plain PyTorch."""
    loc, scale = vae.encoder(x)
    z = loc + scale * eps
    out = vae.decoder(z)
    if vae.likelihood == "bernoulli":
        log_likelihood = -torch.nn.functional.binary_cross_entropy_with_logits(
            out, x, reduction="none").sum(-1)
    else:
        log_likelihood = Normal(out, vae.observation.scale).log_prob(x).sum(-1)
    posterior, prior = Normal(loc, scale), Normal(torch.zeros_like(loc), torch.ones_like(scale))
    if analytic_kl:
        kl = kl_divergence(posterior, prior).sum(-1)
    else:
        kl = (posterior.log_prob(z) - prior.log_prob(z)).sum(-1)
    return (log_likelihood - kl).sum()


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("estimator, analytic_kl", [(Trace_ELBO, False), (TraceMeanField_ELBO, True)])
def test_pyro_elbo_equals_hand_written_elbo(likelihood, estimator, analytic_kl):
    vae = make_vae(likelihood, learn_observation_scale=True)
    x = make_batch(likelihood)
    torch.manual_seed(3)
    pyro_elbo = -estimator().differentiable_loss(vae.model, vae.guide, x)
    torch.manual_seed(3)
    eps = torch.randn(BATCH, LATENT_DIM, dtype=torch.float64)
    expected = hand_written_elbo(vae, x, eps, analytic_kl)
    assert torch.allclose(pyro_elbo, expected, rtol=0, atol=FLOAT64_TOLERANCE), (pyro_elbo, expected)


def test_minibatch_scaling_and_beta_weight():
    vae = make_vae()
    x = make_batch("bernoulli")
    loss = TraceMeanField_ELBO().differentiable_loss

    def seeded(**kwargs):
        torch.manual_seed(5)
        return loss(vae.model, vae.guide, x, **kwargs)

    assert torch.allclose(seeded(num_data=70), 10 * seeded(), atol=1e-9)
    loc, scale = vae.encoder(x)
    kl = kl_divergence(Normal(loc, scale), Normal(0.0, 1.0)).sum()
    assert torch.allclose(seeded(beta=0.25), seeded() - 0.75 * kl, atol=1e-9)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_every_parameter_is_registered_and_trained_by_pyro_svi(likelihood):
    vae = make_vae(likelihood, learn_observation_scale=True)
    x = make_batch(likelihood)
    before = {name: p.detach().clone() for name, p in vae.named_parameters()}
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    svi.step(x)
    store = pyro.get_param_store()
    for name, param in vae.named_parameters():
        module, _, leaf = name.partition(".")
        assert store.get_param(f"vae.{module}$$${leaf}") is param, name
        assert not torch.equal(param.detach(), before[name]), f"{name} did not change"


def registered_parameters(model, x: torch.Tensor) -> set[str]:
    """Names (``module.leaf``) of the parameters that one run of the guide and the model registers."""
    guide_trace = pyro.poutine.trace(model.guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model.model, trace=guide_trace)).get_trace(x)
    names = {name for trace in (guide_trace, model_trace) for name, site in trace.nodes.items()
             if site["type"] == "param"}
    prefix = f"{model.pyro_name}."
    return {name.removeprefix(prefix).replace("$$$", ".") for name in names}


@pytest.mark.parametrize("make", [
    lambda: VAE(DATA_DIM, LATENT_DIM, likelihood="gaussian", learn_observation_scale=True),
    lambda: TwoLayerVAE(DATA_DIM, LATENT_DIM, likelihood="gaussian", learn_observation_scale=True),
    lambda: Autoencoder(DATA_DIM, LATENT_DIM, likelihood="gaussian", learn_observation_scale=True),
    lambda: LinearGaussian(DATA_DIM, LATENT_DIM),
], ids=["VAE", "TwoLayerVAE", "Autoencoder", "LinearGaussian"])
def test_the_two_programs_register_every_parameter_of_every_model(make):
    """Pyro's optimizers train only what the programs register: a learned noise scale left out
    would silently stay at its initial value under the Pyro engine."""
    model = make()
    x = make_batch("gaussian").float()
    assert registered_parameters(model, x) == {name for name, _ in model.named_parameters()}
    assert "observation.log_scale" in registered_parameters(model, x) or isinstance(model, LinearGaussian)


@pytest.mark.parametrize("name", [name for name, cls in MODEL_CLASSES.items() if len(cls.__bases__) > 1])
def test_the_order_of_a_model_class_s_bases_changes_no_method(name):
    """Before issue 16 both bases of VAE defined generative_modules: swapped, the learned Gaussian
    noise scale dropped out of Pyro's registration without a word."""
    bases = MODEL_CLASSES[name].__bases__
    forward, reverse = type("Forward", bases, {}), type("Reverse", bases[::-1], {})
    names = {attribute for klass in forward.__mro__ if klass is not object for attribute in vars(klass)
             if not attribute.startswith("__")}
    differ = sorted(attribute for attribute in names
                    if getattr(forward, attribute, None) is not getattr(reverse, attribute, None))
    assert not differ, f"{name}'s bases both define {differ}; give each method one home"


def test_the_neural_settings_are_passed_by_keyword():
    vae = make_vae()
    with pytest.raises(TypeError):
        vae._build(Autoencoder, DATA_DIM, LATENT_DIM, (4,), "bernoulli", 0.1, False, "relu", "x")


def test_a_second_model_with_the_same_name_trains_its_own_weights():
    x = make_batch("bernoulli")
    first, second = make_vae(), make_vae()
    SVI(first.model, first.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO()).step(x)
    second.sync_param_store()
    before = [p.detach().clone() for p in second.parameters()]
    SVI(second.model, second.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO()).step(x)
    assert all(not torch.equal(p.detach(), b) for p, b in zip(second.parameters(), before))


def test_shapes_of_encode_decode_sample_reconstruct():
    vae = make_vae("gaussian")
    x = make_batch("gaussian")
    loc, scale = vae.encode(x)
    assert loc.shape == scale.shape == (BATCH, LATENT_DIM) and bool((scale > 0).all())
    likelihood = vae.decode(torch.zeros(4, 5, LATENT_DIM, dtype=torch.float64))
    assert likelihood.batch_shape == (4, 5) and likelihood.event_shape == (DATA_DIM,)
    assert vae.sample(11).shape == (11, DATA_DIM)
    assert vae.sample(3, mean=False).dtype == torch.float64
    assert vae.reconstruct(x).shape == x.shape


def test_bernoulli_samples_are_probabilities():
    images = make_vae().sample(50)
    assert bool(((images >= 0) & (images <= 1)).all())


def test_model_trace_has_the_documented_sites():
    vae = make_vae()
    trace = pyro.poutine.trace(vae.model).get_trace(make_batch("bernoulli"), num_data=70)
    assert trace.nodes["z"]["value"].shape == (BATCH, LATENT_DIM)
    assert trace.nodes["x"]["is_observed"]
    assert trace.nodes["x"]["scale"] == 10


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(4, DATA_DIM + 1, dtype=torch.float64), "expects shape"),
    (torch.zeros(DATA_DIM, dtype=torch.float64), "expects shape"),
    (torch.zeros(4, DATA_DIM, dtype=torch.int64), "floating-point"),
    (torch.zeros(0, DATA_DIM, dtype=torch.float64), "empty"),
    ([[0.0] * DATA_DIM], "torch.Tensor"),
])
def test_bad_batches_get_a_clear_error(bad, message):
    vae = make_vae()
    for method in (vae.model, vae.guide, vae.encode):
        with pytest.raises(DataError, match=message):
            method(bad)


@pytest.mark.parametrize("kwargs, message", [
    ({"data_dim": 0, "latent_dim": 2}, "data_dim"),
    ({"data_dim": 4, "latent_dim": -1}, "latent_dim"),
    ({"data_dim": 4, "latent_dim": 2, "hidden_dims": (0,)}, "hidden"),
    ({"data_dim": 4, "latent_dim": 2, "likelihood": "poisson"}, "likelihood"),
    ({"data_dim": 4, "latent_dim": 2, "activation": "swish9"}, "activation"),
    ({"data_dim": 4, "latent_dim": 2, "likelihood": "gaussian", "observation_scale": 0.0},
     "observation_scale"),
])
def test_bad_constructor_arguments_get_a_clear_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        VAE(**kwargs)


def test_config_rebuilds_the_same_model():
    vae = make_vae("gaussian", learn_observation_scale=True)
    clone = VAE(**vae.config()).double()
    clone.load_state_dict(vae.state_dict())
    x = make_batch("gaussian")
    assert torch.equal(clone.reconstruct(x), vae.reconstruct(x))
