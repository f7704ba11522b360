"""Latent sites on a constrained support (positive, unit interval, simplex) through every method.

Three conjugate programs (:mod:`user_programs`): Gamma–Poisson, Beta–Bernoulli
and Dirichlet–Multinomial, whose posteriors and evidence are in closed form.
Deterministic checks (the ELBO under the exact posterior, the log-Jacobian of
the maps to the supports) are tight; Monte Carlo checks lie within
:data:`MC_Z` of their standard errors of the exact answer.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from user_programs import BetaBernoulli, DirichletMultinomial, GammaPoisson

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.evaluation import CompareConfig, compare_posteriors
from ppl_vae.inference import (
    NUTSConfig,
    elbo,
    elbo_terms,
    fit_flow_posterior,
    fit_local_gaussian,
    iwae,
    log_importance_weights,
    log_joint,
    naive_prior,
    posterior_moments,
    sample_posterior,
)
from ppl_vae.inference.defensive import defensive_mixture
from ppl_vae.inference.program import LatentSite, inspect_program, to_constrained, to_unconstrained

#: Allowed deviation in Monte Carlo standard errors (one-sided normal tail ~3e-6 per check).
MC_Z = 4.5
#: Deterministic identities in float64 (sums of a few log-gamma terms).
EXACT_TOL = 1e-9
#: NUTS draws are autocorrelated: the effective sample size is taken as this share of the draws
#: (the batched sampler reaches ~0.5 and more on these one- and two-dimensional posteriors).
ESS_SHARE = 0.25
#: A short NUTS run, per test a few seconds on a loaded 2-core CPU.
SHORT_NUTS = NUTSConfig(num_samples=150, warmup_steps=100, num_chains=2, seed=0)
#: A Pyro scheme run only to show it handles the sites (draws inside the support, right shape).
TINY_NUTS = dict(num_samples=20, warmup_steps=20, num_chains=1, parallel=False, seed=0)

PROGRAMS = [GammaPoisson(), BetaBernoulli(), DirichletMultinomial()]
IDS = ["gamma-poisson", "beta-bernoulli", "dirichlet-multinomial"]


def _within(estimate, exact: torch.Tensor) -> None:
    z = (estimate.per_point - exact) / estimate.stderr
    assert z.abs().max() < MC_Z, f"largest |z| {z.abs().max():.2f}"


def _in_support(program, values: torch.Tensor) -> bool:
    """Every draw on the support of the program's latent site (a simplex: positive, summing to 1)."""
    return bool(program.prior(values).support.check(values).all())


@pytest.fixture(params=PROGRAMS, ids=IDS)
def conjugate(request):
    program = request.param
    return program, program.sample(4)


def test_structure_counts_unconstrained_dimensions(conjugate):
    program, x = conjugate
    structure = inspect_program(program.model, program.guide, x)
    (site,) = structure.continuous
    simplex = isinstance(program, DirichletMultinomial)
    assert site.name == program.site
    assert structure.latent_numel == (2 if simplex else 1)        # what NUTS samples
    assert structure.constrained_numel == (3 if simplex else 1)   # what the draws hold


# ----- the map to the support and its log-Jacobian ---------------------------------------------

@pytest.mark.parametrize("program", PROGRAMS, ids=IDS)
def test_log_jacobian_matches_a_numerical_one(program):
    """log |det dz/du| of to_constrained against torch's numerical Jacobian, per point.

    For the simplex (k values from k - 1 free ones) the determinant is that of
    the first k - 1 coordinates, the ones a Dirichlet's density is written on.
    """
    x = program.sample(3)
    structure = inspect_program(program.model, program.guide, x)
    u = torch.randn(3, structure.latent_numel, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    values, log_det = to_constrained(u, structure)
    for point in range(3):
        def first_coordinates(free: torch.Tensor) -> torch.Tensor:
            z = to_constrained(free[None], structure)[0][program.site][0].reshape(-1)
            return z[:structure.latent_numel]

        jacobian = torch.autograd.functional.jacobian(first_coordinates, u[point])
        assert abs(float(torch.linalg.slogdet(jacobian)[1] - log_det[point])) < EXACT_TOL
    back = to_unconstrained(values, structure)
    torch.testing.assert_close(back, u, rtol=0, atol=1e-10)


# ----- the estimators of log p(x) -----------------------------------------------------------------

def test_estimators_match_the_exact_evidence(conjugate):
    program, x = conjugate
    exact = program.log_marginal(x)
    # Under the exact posterior every weight is p(x): the traced path's densities are exact.
    under_exact = elbo(program.model, x, 20, guide=program.exact_guide)
    torch.testing.assert_close(under_exact.per_point, exact, rtol=0, atol=EXACT_TOL)
    terms = elbo_terms(program.model, x, 20, guide=program.exact_guide)
    torch.testing.assert_close(terms["reconstruction"].per_point - terms["kl"].per_point, exact,
                               rtol=0, atol=EXACT_TOL)
    _within(iwae(program.model, x, 2000, guide=program.guide), exact)
    _within(naive_prior(program.model, x, 4000), exact)
    lower = elbo(program.model, x, 2000, guide=program.guide)
    assert (lower.per_point < exact + MC_Z * lower.stderr).all()
    z = program.posterior(x).sample((2,))
    expected = program.prior(x).log_prob(z) + program.likelihood(z, x).log_prob(x)
    torch.testing.assert_close(log_joint(program.model, x, {program.site: z}), expected,
                               rtol=0, atol=EXACT_TOL)


# ----- NUTS: the three schemes, exact posterior moments, ArviZ on the support ----------------------

def test_batched_nuts_draws_lie_in_the_support_with_the_exact_mean(conjugate):
    program, x = conjugate
    result = sample_posterior(program.model, x, SHORT_NUTS, guide=program.guide)
    draws = result.sites[program.site]                       # (chain, draw, point, *event)
    assert draws.shape[:3] == (2, 150, len(x)) and _in_support(program, draws)
    posterior = program.posterior(x)
    mean, _ = posterior_moments(result)
    exact_sd = posterior.variance.sqrt().reshape(mean.shape)
    stderr = exact_sd / math.sqrt(ESS_SHARE * draws.shape[0] * draws.shape[1])
    assert ((mean - posterior.mean.reshape(mean.shape)).abs() / stderr).max() < MC_Z
    idata = result.to_inference_data()
    values = torch.as_tensor(idata.posterior[program.site].values)   # on the support, not log/logit
    assert _in_support(program, values.reshape(*draws.shape))


@pytest.mark.parametrize("scheme", ["joint", "per_point"])
def test_pyro_nuts_schemes_sample_constrained_sites(scheme):
    program = DirichletMultinomial()
    x = program.sample(2)
    result = sample_posterior(program.model, x, NUTSConfig(scheme=scheme, **TINY_NUTS), guide=program.guide)
    assert result.samples.shape == (1, 20, 2, 3)
    assert _in_support(program, result.sites["theta"])


# ----- per-point posteriors, the defensive mixture and the whole comparison -------------------------

def test_local_gaussian_and_flow_fits_on_the_unconstrained_scale(conjugate):
    program, x = conjugate
    exact = program.log_marginal(x)
    fit = fit_local_gaussian(program.model, x, guide=program.guide, max_steps=100, learning_rate=0.05,
                             num_particles=8)
    q_star = elbo(program.model, x, 1000, guide=fit.posterior)
    assert (q_star.per_point < exact + MC_Z * q_star.stderr).all()
    assert (exact - q_star.per_point).max() < 0.2   # a Gaussian on log z (logit z) fits well
    _within(iwae(program.model, x, 1000, guide=fit.posterior), exact)
    # Every public function takes a fitted posterior in the same forms (object or its guide).
    assert log_importance_weights(program.model, fit.posterior.guide, x, 5).shape == (5, len(x))
    assert log_importance_weights(program.model, fit.posterior, x, 5).shape == (5, len(x))
    flow = fit_flow_posterior(program.model, x, start=fit.posterior, max_steps=100, num_particles=4)
    _within(iwae(program.model, x, 1000, guide=flow.posterior), exact)
    mixture = defensive_mixture(program.model, x, fit.posterior.loc.detach(),
                                fit.posterior.scale.detach(), guide=program.guide)
    _within(iwae(program.model, x, 1000, guide=mixture), exact)


def test_compare_posteriors_on_a_simplex_latent():
    program = DirichletMultinomial()
    x = program.sample(3)
    config = CompareConfig(elbo_samples=200, iwae_samples=1000, fit_max_steps=100,
                           nuts=NUTSConfig(num_samples=150, warmup_steps=100, num_chains=2,
                                           parallel=False))
    result = compare_posteriors(program.model, x, config, guide=program.guide)
    per_point = result.per_point
    log_px = torch.tensor(per_point["log_px"], dtype=torch.float64)
    stderr = torch.tensor(per_point["log_px_stderr"], dtype=torch.float64)
    assert not any(per_point["log_px_flagged"])
    assert ((log_px - program.log_marginal(x)).abs() / stderr).max() < MC_Z
    assert result.nuts.samples.shape[-1] == 3   # draws on the simplex: k values
    assert {row.name for row in result.rows} == {"nuts", "encoder", "local_gaussian", "flow"}


# ----- scaled programs, data outside the likelihood's support ----------------------------------------

def _subsampled(program: GammaPoisson):
    """The Gamma–Poisson program inside Pyro's minibatch plate: 1000 points, these rows sampled."""
    def model(x):
        with pyro.plate("data", 1000, subsample=torch.arange(x.shape[0])):
            lam = pyro.sample("lam", program.prior(x))
            pyro.sample("x", program.likelihood(lam, x), obs=x)

    def guide(x):
        with pyro.plate("data", 1000, subsample=torch.arange(x.shape[0])):
            pyro.sample("lam", dist.Gamma(*(p / 1.5 for p in program.posterior_params(x))))

    return model, guide


def test_a_subsampled_data_plate_is_undone_per_point():
    program = GammaPoisson()
    x = program.sample(4)
    model, guide = _subsampled(program)
    for estimator in (elbo, iwae):
        pyro.set_rng_seed(5)
        scaled = estimator(model, x, 50, guide=guide)
        pyro.set_rng_seed(5)
        plain = estimator(program.model, x, 50, guide=program.guide)
        torch.testing.assert_close(scaled.per_point, plain.per_point, rtol=0, atol=EXACT_TOL)
    nuts = sample_posterior(model, x, NUTSConfig(num_samples=20, warmup_steps=20, num_chains=1),
                            guide=guide)
    reference = sample_posterior(program.model, x, NUTSConfig(num_samples=20, warmup_steps=20,
                                                              num_chains=1), guide=program.guide)
    torch.testing.assert_close(nuts.samples, reference.samples)


def test_a_scaled_site_is_refused_in_one_line():
    program = GammaPoisson()
    x = program.sample(4)

    def tempered(x):
        with pyro.plate("data", x.shape[0]):
            lam = pyro.sample("lam", program.prior(x))
            with poutine.scale(scale=10.0):
                pyro.sample("x", program.likelihood(lam, x), obs=x)

    for call in (lambda: iwae(tempered, x, 10, guide=program.guide),
                 lambda: sample_posterior(tempered, x, SHORT_NUTS, guide=program.guide),
                 lambda: fit_local_gaussian(tempered, x, guide=program.guide)):
        with pytest.raises(ConfigError, match=r"site 'x' is scaled by 10 \(poutine.scale\)"):
            call()


def test_data_outside_an_observed_sites_support_is_refused():
    program = BetaBernoulli()
    x = program.sample(4)
    for call in (lambda: iwae(program.model, 2 * x, 10, guide=program.guide),
                 lambda: naive_prior(program.model, 2 * x, 10),
                 lambda: sample_posterior(program.model, 2 * x, SHORT_NUTS, guide=program.guide)):
        with pytest.raises(DataError, match="outside the support of the observed site 'x'"):
            call()




def test_a_support_without_a_bijection_is_refused_by_name():
    """torch has no biject_to for lower-Cholesky factors: NUTS and the fits cannot sample one."""
    site = LatentSite("factor", torch.Size([2, 2]), False, dist.constraints.lower_cholesky)
    with pytest.raises(ConfigError, match="latent site 'factor' has the support .* biject_to cannot"):
        site.free_shape
