"""Annealed importance sampling and bidirectional Monte Carlo against exact evidences.

Every check compares with a closed form (pPCA, Gamma-Poisson, an enumerated
mixture prior) or grid quadrature (a 2-D latent VAE), with tolerances in
units of the estimates' own standard errors.
"""

from __future__ import annotations

import copy
import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_vae.errors import ConfigError
from ppl_vae.inference.ais import AISConfig, ais, annealing_schedule, bdmc, chunk_generator
from ppl_vae.models import LinearGaussian
from tests.helpers.quadrature import log_marginal_grid
from tests.user_programs import HandPPCA, MixturePriorLinear

#: A mean over points of an unbiased-in-exp estimate lies within this many of its standard
#: errors of the truth, unless AIS's (downward) bias exceeds its noise.
MEAN_TOLERANCE = 3.0
#: Any one of some 20-40 points: a Gaussian deviation beyond 4.5 standard errors has
#: probability below 1e-4 in the whole test.
POINT_TOLERANCE = 4.5


def _within_errors(estimate, exact: torch.Tensor) -> None:
    exact = exact.detach()
    trusted = ~estimate.flagged
    assert trusted.float().mean() >= 0.9, "the schedule should make most error bars trustworthy"
    diff = (estimate.per_point - exact)[trusted]
    stderr = estimate.stderr[trusted]
    assert float(diff.abs().div(stderr).max()) < POINT_TOLERANCE
    assert abs(float(diff.mean())) < MEAN_TOLERANCE * float(stderr.pow(2).sum().sqrt() / len(stderr))


def _perturbed_ppca(data_dim: int, latent_dim: int) -> LinearGaussian:
    """pPCA whose guide is the exact posterior shifted by 0.2 and 1.3 times too wide."""
    torch.manual_seed(0)
    model = LinearGaussian(data_dim, latent_dim).double()
    with torch.no_grad():
        model.decoder.weight.mul_(1.5)
    model.set_guide_to_posterior()
    with torch.no_grad():
        model.encoder.bias.add_(0.2)
        model.encoder.raw_scale_tril.diagonal().add_(math.log(1.3))
    return model


@pytest.mark.parametrize("latent_dim, temperatures", [(2, 30), (20, 100)])
def test_ais_matches_exact_ppca_evidence(latent_dim, temperatures):
    model = _perturbed_ppca(30, latent_dim)
    x = model.marginal().sample((12,)).detach()
    estimate = ais(model, x, config=AISConfig(num_temperatures=temperatures))
    _within_errors(estimate, model.log_marginal(x))


def test_one_temperature_is_importance_sampling_from_the_initial_gaussian():
    model = _perturbed_ppca(6, 2)
    x = model.marginal().sample((5,)).detach()
    config = AISConfig(num_temperatures=1, num_chains=8, tuning_chains=2)
    estimate = ais(model, x, config=config)
    loc, scale = model.encode(x)
    chains = config.num_chains + config.tuning_chains
    generator = chunk_generator(config, 0, x.device)
    noise = torch.randn((chains * len(x), 2), generator=generator, dtype=x.dtype)
    z = (loc.repeat(chains, 1) + scale.repeat(chains, 1) * noise)[:config.num_chains * len(x)]
    rows = x.repeat(config.num_chains, 1)
    with torch.no_grad():
        log_w = (model.prior(rows).log_prob(z) + model.decode(z).log_prob(rows)
                 - dist.Normal(loc.repeat(config.num_chains, 1),
                               scale.repeat(config.num_chains, 1)).log_prob(z).sum(-1))
    expected = log_w.reshape(config.num_chains, len(x)).logsumexp(0) - math.log(config.num_chains)
    torch.testing.assert_close(estimate.per_point, expected, rtol=1e-10, atol=1e-10)


def test_ais_on_a_user_program_with_the_program_path():
    ppca = HandPPCA.random(data_dim=6, latent_dim=2)
    x = ppca.sample(20)
    estimate = ais(ppca.model, x, guide=ppca.poor_guide, config=AISConfig(num_temperatures=40))
    _within_errors(estimate, ppca.log_marginal(x))


@pytest.mark.parametrize("initial", ["guide", "prior"])
def test_ais_sums_out_an_enumerated_mixture_prior(initial):
    mixture = MixturePriorLinear.random()
    x = mixture.sample(12)
    config = AISConfig(num_temperatures=40, initial=initial)
    estimate = ais(mixture.model, x, guide=mixture.guide, config=config)
    _within_errors(estimate, mixture.log_marginal(x))


GAMMA_SHAPE, GAMMA_RATE, COUNTS_PER_POINT = 2.0, 1.0, 4


def _gamma_poisson(x):
    with pyro.plate("data", x.shape[0]):
        rate = pyro.sample("rate", dist.Gamma(x.new_tensor(GAMMA_SHAPE), x.new_tensor(GAMMA_RATE)))
        pyro.sample("x", dist.Poisson(rate.unsqueeze(-1).expand(*rate.shape, x.shape[-1])).to_event(1),
                    obs=x)


def _gamma_poisson_guide(x):
    """A deliberately rough q: half the data's weight in the posterior's shape and rate."""
    with pyro.plate("data", x.shape[0]):
        pyro.sample("rate", dist.Gamma(1.0 + 0.5 * x.sum(-1), 1.0 + 0.5 * x.shape[-1]))


def _gamma_poisson_evidence(x):
    total, count = x.sum(-1), x.shape[-1]
    return (GAMMA_SHAPE * math.log(GAMMA_RATE) - math.lgamma(GAMMA_SHAPE)
            + torch.lgamma(GAMMA_SHAPE + total) - (GAMMA_SHAPE + total) * math.log(GAMMA_RATE + count)
            - torch.lgamma(x + 1).sum(-1))


def test_ais_on_a_positive_latent_matches_the_gamma_poisson_evidence():
    generator = torch.Generator().manual_seed(3)
    rates = torch.distributions.Gamma(GAMMA_SHAPE, GAMMA_RATE).sample((20,))
    x = torch.poisson(rates[:, None].expand(20, COUNTS_PER_POINT).double(), generator=generator)
    estimate = ais(_gamma_poisson, x, guide=_gamma_poisson_guide, config=AISConfig(num_temperatures=40))
    _within_errors(estimate, _gamma_poisson_evidence(x))


def test_ais_against_grid_quadrature_on_a_two_dimensional_vae(digits_vae):
    vae, test_x = digits_vae
    x = test_x[:8].double()
    model = copy.deepcopy(vae).double()
    estimate = ais(model, x, config=AISConfig(num_temperatures=50))
    _within_errors(estimate, log_marginal_grid(model, x))


@pytest.mark.parametrize("latent_dim", [2, 20])
def test_bdmc_brackets_the_exact_ppca_evidence(latent_dim):
    model = _perturbed_ppca(30, latent_dim)
    templates = torch.zeros(12, 30, dtype=torch.float64)
    result = bdmc(model, templates, config=AISConfig(num_temperatures=20))
    exact = model.log_marginal(result.x).detach()
    # Each bound holds in expectation; a single point may cross by its own noise.
    assert bool((result.lower.per_point <= exact + POINT_TOLERANCE * result.lower.delta_stderr).all())
    assert bool((result.upper.per_point >= exact - POINT_TOLERANCE * result.upper.delta_stderr).all())
    for bound, sign in ((result.lower, 1.0), (result.upper, -1.0)):
        error_of_mean = float(bound.delta_stderr.pow(2).sum().sqrt()) / len(exact)
        assert sign * float((bound.per_point - exact).mean()) <= MEAN_TOLERANCE * error_of_mean


def test_bdmc_gap_narrows_with_more_temperatures():
    model = _perturbed_ppca(30, 20)
    templates = torch.zeros(8, 30, dtype=torch.float64)
    gaps = [bdmc(model, templates, config=AISConfig(num_temperatures=t)).mean_gap for t in (3, 30)]
    assert gaps[1] < 0.5 * gaps[0]


def test_ais_leaves_the_callers_random_state_alone():
    model = _perturbed_ppca(6, 2)
    x = model.marginal().sample((4,)).detach()
    before = torch.get_rng_state()
    ais(model, x, config=AISConfig(num_temperatures=3, initial="prior"))
    assert torch.equal(before, torch.get_rng_state())


def test_sigmoid_schedule_runs_from_zero_to_one_and_crowds_the_ends():
    betas = annealing_schedule(100, "sigmoid")
    assert float(betas[0]) == 0.0 and float(betas[-1]) == 1.0
    assert bool((betas.diff() > 0).all())
    assert float(betas[1] - betas[0]) < float(betas[51] - betas[50])


@pytest.mark.parametrize("settings", [{"num_temperatures": 0}, {"num_chains": -1},
                                      {"initial": "posterior"}, {"schedule": "cosine"},
                                      {"target_accept_prob": 1.0}, {"step_size": 0.0}])
def test_bad_settings_are_refused_in_one_line(settings):
    with pytest.raises(ConfigError) as error:
        AISConfig(**settings)
    assert "\n" not in str(error.value)


def test_bdmc_refuses_a_program_that_observes_two_sites():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("a", dist.Normal(z, 1.0), obs=x[:, 0])
            pyro.sample("b", dist.Normal(z, 1.0), obs=x[:, 1])

    with pytest.raises(ConfigError, match="one observed site"):
        bdmc(model, torch.zeros(3, 2), config=AISConfig(num_temperatures=2, initial="prior"))


def test_compare_takes_ais_as_a_candidate_for_log_px(diagonal_ppca):
    """An encoder 10x too narrow flags its IWAE; AIS competes with the defensive mixture."""
    from ppl_vae.evaluation.compare import AIS, CompareConfig, compare_posteriors
    from ppl_vae.inference.mcmc import NUTSConfig

    model, x = diagonal_ppca
    model.set_guide_to_posterior()
    with torch.no_grad():
        model.encoder.raw_scale_tril.diagonal().sub_(math.log(10.0))
    nuts = NUTSConfig(num_samples=50, warmup_steps=50, num_chains=2, parallel=False)  # not what is tested
    config = CompareConfig(elbo_samples=50, iwae_samples=500, nuts=nuts, methods=("encoder",),
                           ais=AISConfig(num_temperatures=60))
    result = compare_posteriors(model, x, config)
    assert [row.name for row in result.rows] == ["nuts", "encoder", AIS]
    assert AIS in result.per_point["log_px_method"]
    exact = model.log_marginal(x).detach()
    values = torch.tensor(result.per_point["log_px"], dtype=torch.float64)
    errors = torch.tensor(result.per_point["log_px_stderr"], dtype=torch.float64)
    trusted = torch.isfinite(errors)
    assert bool(((values - exact).abs()[trusted] < POINT_TOLERANCE * errors[trusted]).all())
    assert "annealed importance sampling" in result.table()


def test_evaluate_prints_ais_and_the_sandwich(trained, capsys):
    from ppl_vae.cli import main

    argv = ["evaluate", "--checkpoint", str(trained), "--elbo-samples", "5", "--iwae-samples", "20",
            "--ais", "--ais-temperatures", "3", "--ais-chains", "4", "--bdmc", "5"]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["ais"]["per_point"]["ais"]) == report["num_points"]
    assert report["ais"]["temperatures"] == 3 and report["bdmc"]["points"] == 5
    assert report["bdmc"]["temperatures_for_tight"] >= 1
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "AIS log p(x)" in printed and "BDMC on 5 points simulated from the model" in printed


def test_iwae_advice_points_to_ais_past_k_hat_one():
    from ppl_vae.evaluation.log_px import iwae_advice
    from ppl_vae.inference.importance import Estimate

    def estimate(k):
        values = torch.zeros(3)
        return Estimate(values, values, 1000, torch.tensor(k), values, values)

    assert "--ais" in iwae_advice(estimate([0.2, 0.8, 1.4]))
    assert iwae_advice(estimate([0.2, 0.8, 0.9])) == "raise --iwae-samples"
