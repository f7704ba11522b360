"""TwoLayerVAE: two stochastic layers read from its programs by every method, exact on a 2-D grid."""

from __future__ import annotations

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from helpers.cli_runs import TINY
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from user_programs import grid_log_marginal

from ppl_vae import SVIConfig, TwoLayerVAE, train
from ppl_vae.cli import main
from ppl_vae.errors import ConfigError
from ppl_vae.inference import NUTSConfig, elbo, iwae, sample_posterior
from ppl_vae.inference.objectives import has_direct_elbo, make_loss
from ppl_vae.inference.program import inspect_program
from ppl_vae.models import build_model, import_model_class

#: Allowed deviation in Monte Carlo standard errors.
MC_Z = 4.5


@pytest.fixture(scope="module")
def tiny_two_layer():
    """z1 and z2 one-dimensional (a 2-D latent space: exact by quadrature), trained briefly."""
    generator = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.rand(120, 12, generator=generator) * 0.8 + 0.1)
    model = TwoLayerVAE(12, latent_dim=1, hidden_dims=(16,), top_latent_dim=1, top_hidden_dim=8)
    train(model, x, SVIConfig(epochs=30, batch_size=40, elbo="trace"))
    return model.double(), x[:6].double()


def test_the_programs_have_two_latent_sites_and_no_direct_path(tiny_two_layer):
    model, x = tiny_two_layer
    structure = inspect_program(model.model, model.guide, x)
    assert [site.name for site in structure.continuous] == ["z1", "z2"]
    assert not has_direct_elbo(model, x)
    assert model.sample(5).shape == (5, 12)


def test_iwae_matches_grid_quadrature_over_both_layers(tiny_two_layer):
    model, x = tiny_two_layer

    def log_joint(z: torch.Tensor) -> torch.Tensor:  # z: (G, 2) = (z1, z2)
        with torch.no_grad():
            z1, z2 = z[:, :1], z[:, 1:]
            loc, scale = model.top_prior(z1)
            prior = (dist.Normal(0.0, 1.0).log_prob(z1).sum(-1)
                     + dist.Normal(loc, scale).log_prob(z2).sum(-1))
            return prior[:, None] + model.decode(z2[:, None, :]).log_prob(x)

    exact, posterior_mean = grid_log_marginal(log_joint, half_width=6.0, step=0.03)
    estimate = iwae(model, x, 3000)
    z = (estimate.per_point - exact) / estimate.stderr
    assert z.abs().max() < MC_Z, z
    assert (elbo(model, x, 500).per_point < exact).all()
    draws = sample_posterior(model, x[:3], NUTSConfig(num_samples=400, warmup_steps=200, num_chains=4))
    mean = draws.samples.flatten(0, 1).mean(0)
    spread = draws.samples.flatten(0, 1).std(0)
    stderr = spread / math.sqrt(draws.samples.shape[0] * draws.samples.shape[1] / 4)
    assert ((mean - posterior_mean[:3]).abs() / stderr).max() < MC_Z


def test_the_command_line_trains_it_by_name_and_the_checkpoint_knows_it(tmp_path, capsys):
    assert import_model_class("TwoLayerVAE") is TwoLayerVAE
    with pytest.raises(ConfigError, match="must be one of VAE, TwoLayerVAE, .* or look like package.module:ClassName"):
        import_model_class("NoSuchModel")
    run = tmp_path / "run"
    assert main(["train", *TINY, "--model", "TwoLayerVAE", "--out", str(run)]) == 0
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert checkpoint["model_class"] == "TwoLayerVAE"
    rebuilt = build_model(checkpoint["model_class"], checkpoint["model_config"])
    assert isinstance(rebuilt, TwoLayerVAE) and rebuilt.top_latent_dim == 10
    assert main(["evaluate", "--checkpoint", str(run), "--elbo-samples", "5",
                 "--iwae-samples", "20"]) == 0
    assert "IWAE" in capsys.readouterr().out


def test_meanfield_falls_back_to_monte_carlo_kl_for_a_guide_in_another_order(tiny_two_layer):
    """q(z2 | x) q(z1 | z2) against p(z1) p(z2 | z1): the closed-form KL of z2 given the guide's
    z1 would be biased, so the 'meanfield' ELBO is Pyro's Trace_ELBO here."""
    model, x = tiny_two_layer
    loss = make_loss(model, "meanfield", 1, x=x)
    pyro.set_rng_seed(0)
    ours = loss(model, x)
    pyro.set_rng_seed(0)
    assert torch.equal(ours, Trace_ELBO().differentiable_loss(model.model, model.guide, x))
    pyro.set_rng_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pyro's own warning about the site order
        biased = TraceMeanField_ELBO().differentiable_loss(model.model, model.guide, x)
    assert not torch.allclose(ours, biased)
