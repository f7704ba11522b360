"""Every inference method on programs users write: plain functions, subclasses, two sites, enumeration.

Each program's estimates are compared with its exact answer (closed form for
the linear-Gaussian programs, grid quadrature for 2-D latents) within a
multiple of the Monte Carlo standard error.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import subprocess
import sys
import textwrap

import pyro
import pyro.distributions as dist
import pytest
import torch
from user_programs import (
    HandPPCA,
    MixturePriorLinear,
    StudentTVAE,
    TwoLayerGaussian,
    grid_log_marginal,
    vae_functions,
)

from ppl_vae import VAE, GaussianMixture, SVIConfig, train
from ppl_vae.errors import ConfigError
from ppl_vae.evaluation import CompareConfig, compare_posteriors
from ppl_vae.inference import (
    NUTSConfig,
    elbo,
    elbo_terms,
    fit_local_gaussian,
    iwae,
    log_joint,
    naive_prior,
    posterior_moments,
    sample_posterior,
)
from ppl_vae.inference.objectives import (
    direct_iwae_loss,
    has_direct_elbo,
    program_iwae_loss,
)
from ppl_vae.inference.program import inspect_program, program_log_terms

#: Allowed deviation in Monte Carlo standard errors (one-sided tail ~1e-5 per check).
MC_Z = 4.5
#: A short NUTS run: enough for moments to a few percent of a posterior standard deviation.
SHORT_NUTS = NUTSConfig(num_samples=400, warmup_steps=200, num_chains=4, seed=0)


def _within(estimate, exact) -> None:
    """Every point's estimate within MC_Z of its own standard errors of the exact value."""
    z = (estimate.per_point - exact) / estimate.stderr
    assert z.abs().max() < MC_Z, f"largest |z| {z.abs().max():.2f}"


def _nuts_mean_within(result, exact_mean: torch.Tensor, exact_sd: torch.Tensor) -> None:
    """NUTS posterior means within MC_Z standard errors, with an ESS of a quarter of the draws."""
    mean, _ = posterior_moments(result)
    draws = result.samples.shape[0] * result.samples.shape[1]
    stderr = exact_sd / math.sqrt(draws / 4)
    assert ((mean - exact_mean).abs() / stderr).max() < MC_Z


# ----- probabilistic PCA written by hand ------------------------------------------------------

@pytest.fixture
def ppca():
    program = HandPPCA.random()
    return program, program.sample(8)


def test_hand_ppca_estimators_match_the_exact_evidence(ppca):
    program, x = ppca
    exact = program.log_marginal(x)
    exact_elbo = elbo(program.model, x, 50, guide=program.exact_guide)
    assert torch.allclose(exact_elbo.per_point, exact, atol=1e-9)  # zero-variance weights
    _within(iwae(program.model, x, 2000, guide=program.poor_guide), exact)
    _within(naive_prior(program.model, x, 20000), exact)
    poor = elbo(program.model, x, 2000, guide=program.poor_guide)
    assert (poor.per_point < exact).all()
    terms = elbo_terms(program.model, x, 10, guide=program.poor_guide)
    assert set(terms) == {"reconstruction", "kl"}
    assert (terms["kl"].per_point > 0).all()


def test_hand_ppca_log_joint_and_nuts_posterior(ppca):
    program, x = ppca
    z = torch.randn(3, len(x), 2, dtype=torch.float64)
    expected = (dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
                + dist.Normal(z @ program.weight.T + program.loc, program.noise).log_prob(x).sum(-1))
    assert torch.allclose(log_joint(program.model, x, z), expected, atol=1e-10)
    posterior = program.posterior(x)
    result = sample_posterior(program.model, x, SHORT_NUTS, guide=program.poor_guide)
    assert result.samples.shape == (4, 400, len(x), 2)
    sd = posterior.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
    _nuts_mean_within(result, posterior.mean, sd)


def test_local_gaussian_fit_on_a_plain_function(ppca):
    program, x = ppca
    fit = fit_local_gaussian(program.model, x, guide=program.poor_guide, max_steps=600,
                             learning_rate=0.05)
    exact = program.log_marginal(x)
    q_star = elbo(program.model, x, 2000, guide=fit.posterior)
    poor = elbo(program.model, x, 2000, guide=program.poor_guide)
    assert (q_star.per_point <= exact + MC_Z * q_star.stderr).all()
    assert q_star.mean > poor.mean + 0.1
    assert (exact - q_star.per_point).max() < 0.5  # diagonal Gaussian near a correlated posterior


# ----- two latent sites per point ---------------------------------------------------------------

def test_two_site_model_every_estimator_and_nuts():
    program = TwoLayerGaussian.random()
    x = program.sample(6)
    structure = inspect_program(program.model, program.guide, x)
    assert [site.name for site in structure.continuous] == ["z1", "z2"]
    exact = program.log_marginal(x)
    _within(iwae(program.model, x, 4000, guide=program.guide), exact)
    _within(naive_prior(program.model, x, 40000), exact)
    assert (elbo(program.model, x, 500, guide=program.guide).per_point < exact).all()
    mean, covariance = program.posterior(x)
    result = sample_posterior(program.model, x, SHORT_NUTS, guide=program.guide)
    assert set(result.sites) == {"z1", "z2"} and result.samples.shape[-1] == 4
    _nuts_mean_within(result, mean, covariance.diagonal().sqrt())
    idata = result.to_inference_data()
    assert set(idata.posterior.data_vars) == {"z1", "z2"}
    fit = fit_local_gaussian(program.model, x, guide=program.guide, max_steps=300, learning_rate=0.05)
    q_star = elbo(program.model, x, 1000, guide=fit.posterior)
    assert (q_star.per_point <= exact + MC_Z * q_star.stderr).all()


# ----- a discrete latent the model enumerates -----------------------------------------------------

def test_mixture_prior_program_sums_the_component_out_exactly():
    program = MixturePriorLinear.random()
    x = program.sample(6)
    exact = program.log_marginal(x)
    structure = inspect_program(program.model, program.guide, x)
    assert [site.name for site in structure.enumerated] == ["c"]
    _within(iwae(program.model, x, 4000, guide=program.guide), exact)
    _within(naive_prior(program.model, x, 40000), exact)
    result = sample_posterior(program.model, x, SHORT_NUTS, guide=program.guide)
    draws = result.samples.flatten(0, 1)
    _nuts_mean_within(result, program.posterior_mean(x), draws.std(0))


def test_gaussian_mixture_class_trains_and_its_iwae_is_exact():
    torch.manual_seed(0)
    x = torch.randn(40, 3)
    model = GaussianMixture(3, 2)
    train(model, x, SVIConfig(epochs=2, batch_size=20))
    estimate = iwae(model, x, 5)
    assert torch.allclose(estimate.per_point, model.log_marginal(x).detach(), atol=1e-4)
    assert float(estimate.stderr.max()) < 1e-4  # nothing is sampled: every weight is p(x)


# ----- the whole comparison (NUTS, q*, flow, defensive log p(x), gaps) on user programs ----------

#: Small but complete: every method, NUTS long enough for the distances to mean something.
SMALL_COMPARE = CompareConfig(elbo_samples=300, iwae_samples=3000, fit_max_steps=400,
                              nuts=NUTSConfig(num_samples=300, warmup_steps=200, num_chains=2,
                                              parallel=False))


def _log_px_within(result, exact: torch.Tensor) -> None:
    """Every unflagged log p^(x) within MC_Z of its reported error of the exact value."""
    per_point = result.per_point
    log_px = torch.tensor(per_point["log_px"], dtype=exact.dtype)
    stderr = torch.tensor(per_point["log_px_stderr"], dtype=exact.dtype)
    flagged = torch.tensor(per_point["log_px_flagged"])
    assert int((~flagged).sum()) >= len(exact) - 1  # the check has teeth
    assert ((log_px - exact).abs() / stderr)[~flagged].max() < MC_Z


@pytest.mark.parametrize("program_class", [pytest.param(TwoLayerGaussian, marks=pytest.mark.slow),
                                           MixturePriorLinear])
def test_compare_posteriors_on_user_programs(program_class):
    """Two continuous sites, or one beside an enumerated discrete site: log p^(x) is exact.

    The two-site program runs with the slow tests (its other methods and NUTS are checked in
    the default run by ``test_two_site_model_every_estimator_and_nuts``).
    """
    program = program_class.random()
    x = program.sample(5)
    result = compare_posteriors(program.model, x, SMALL_COMPARE, guide=program.guide)
    _log_px_within(result, program.log_marginal(x))
    rows = {row.name: row for row in result.rows}
    assert set(rows) == {"nuts", "encoder", "local_gaussian", "flow"}
    assert result.nuts.samples.shape[-1] == (4 if program_class is TwoLayerGaussian else 2)
    # The guide is off the posterior on purpose; q*, fitted per point, lies closer to NUTS.
    assert rows["local_gaussian"].mean_error_sd < rows["encoder"].mean_error_sd
    assert set(result.gaps) == {"approximation", "amortization"}


@pytest.mark.slow
def test_compare_posteriors_on_a_plain_function_vae(digits_vae):
    """The 2-D-latent VAE as two functions: log p^(x) against grid quadrature.

    Slow: the default run checks ``compare_posteriors`` against quadrature on the class
    (test_compare_exact.py) and on a plain-function program (the mixture-prior one above).
    """
    vae, x = digits_vae
    vae = copy.deepcopy(vae).double()
    x = x[:6].double()
    model, guide = vae_functions(vae)
    result = compare_posteriors(model, x, SMALL_COMPARE, guide=guide)
    with torch.no_grad():
        exact, _ = grid_log_marginal(
            lambda z: dist.Normal(0.0, 1.0).log_prob(z).sum(-1)[:, None]
            + vae.decode(z[:, None, :]).log_prob(x), step=0.04)
    _log_px_within(result, exact)


def test_compare_posteriors_asks_a_plain_function_for_its_guide(digits_vae):
    vae, x = digits_vae
    model, _ = vae_functions(vae)
    with pytest.raises(ConfigError, match="pass guide="):
        compare_posteriors(model, x[:2], SMALL_COMPARE)


# ----- VAEs as plain functions and subclasses ---------------------------------------------------

def test_plain_function_vae_matches_the_class_and_grid_quadrature(digits_vae):
    vae, x = digits_vae
    vae = copy.deepcopy(vae).double()  # the fixture is shared by the whole session
    x = x[:50].double()
    model, guide = vae_functions(vae)
    pyro.set_rng_seed(3)
    from_functions = iwae(model, x, 300, guide=guide)
    pyro.set_rng_seed(3)
    from_class = iwae(vae, x, 300)
    assert has_direct_elbo(vae, x) and not has_direct_elbo(model, x)
    # The generic path on the functions draws what the direct path draws: same numbers.
    torch.testing.assert_close(from_functions.per_point, from_class.per_point, rtol=0, atol=1e-9)
    with torch.no_grad():
        exact, posterior_mean = grid_log_marginal(
            lambda z: dist.Normal(0.0, 1.0).log_prob(z).sum(-1)[:, None]
            + vae.decode(z[:, None, :]).log_prob(x), step=0.04)
    _within(iwae(model, x, 3000, guide=guide), exact)
    result = sample_posterior(model, x[:8], SHORT_NUTS, guide=guide)
    draws = result.samples.flatten(0, 1)
    _nuts_mean_within(result, posterior_mean[:8], draws.std(0))


def test_a_student_t_prior_is_used_by_every_method(digits_vae):
    vae, x = digits_vae
    heavy = StudentTVAE(64, 2, hidden_dims=(64,)).double()
    heavy.load_state_dict(vae.state_dict())
    x = x[:40].double()
    with torch.no_grad():
        exact, posterior_mean = grid_log_marginal(
            lambda z: dist.StudentT(3.0, 0.0, 1.0).log_prob(z).sum(-1)[:, None]
            + heavy.decode(z[:, None, :]).log_prob(x), half_width=7.0, step=0.04)
        under_normal, _ = grid_log_marginal(
            lambda z: dist.Normal(0.0, 1.0).log_prob(z).sum(-1)[:, None]
            + heavy.decode(z[:, None, :]).log_prob(x), half_width=7.0, step=0.04)
    # The encoder was trained for a Gaussian prior: under heavy tails its importance weights
    # are heavy-tailed too, and a single point's standard error can understate (see Pareto k).
    # So the check is on average: each estimate is far closer to log p(x) under the Student-t
    # prior than the two priors' log p(x) are to each other (0.27 nats on average here).
    prior_effect = (exact - under_normal).abs().mean()
    for estimate in (iwae(heavy, x, 3000), naive_prior(heavy, x, 20000)):
        assert (estimate.per_point - exact).abs().mean() < 0.25 * prior_effect
    z = torch.randn(len(x), 2, dtype=torch.float64)
    assert torch.allclose(log_joint(heavy, x, z), heavy.prior(x).log_prob(z) + heavy.decode(z).log_prob(x))
    result = sample_posterior(heavy, x[:8], SHORT_NUTS)
    _nuts_mean_within(result, posterior_mean[:8], result.samples.flatten(0, 1).std(0))


def test_sample_runs_the_model_program_and_its_prior():
    class ShiftedPrior(VAE):
        def prior(self, x):
            return dist.Normal(x.new_full((x.shape[0], self.latent_dim), 3.0), 1e-6).to_event(1)

    model = ShiftedPrior(6, 2, hidden_dims=(8,))
    expected = model.decode(torch.full((1, 2), 3.0)).mean
    assert torch.allclose(model.sample(5), expected.expand(5, 6), atol=1e-5)


class TwoStepVAE(VAE):
    """A subclass that rewrites model(): z2 | z ~ N(z, 0.1) sits between z and x."""

    def model(self, x, num_data=None, beta=1.0):
        pyro.module(f"{self.pyro_name}.decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x))
            z2 = pyro.sample("z2", dist.Normal(z, 0.1).to_event(1))
            pyro.sample("x", self.decode(z2), obs=x)

    def guide(self, x, num_data=None, beta=1.0):
        pyro.module(f"{self.pyro_name}.encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.guide_distribution(x))
            pyro.sample("z2", dist.Normal(z, 0.1).to_event(1))


def test_a_subclass_that_rewrites_model_and_guide_is_read_from_its_program(digits_vae):
    vae, x = digits_vae
    model = TwoStepVAE(64, 2, hidden_dims=(64,))
    model.load_state_dict(vae.state_dict())
    assert not has_direct_elbo(model, x)
    structure = inspect_program(model.model, model.guide, x)
    assert [site.name for site in structure.continuous] == ["z", "z2"]
    bound = iwae(model, x[:20], 200)
    lower = elbo(model, x[:20], 200)
    assert (bound.per_point > lower.per_point - MC_Z * lower.stderr).all()
    result = sample_posterior(model, x[:3], NUTSConfig(num_samples=50, warmup_steps=50, num_chains=2))
    assert result.samples.shape == (2, 50, 3, 4)
    history = train(model, x[:64], SVIConfig(epochs=2, batch_size=32)).history
    assert len(history) == 2 and math.isfinite(history[-1]["train_elbo"])


# ----- training programs -------------------------------------------------------------------------

def test_train_a_plain_function_program(ppca):
    program, _ = ppca
    x = program.sample(200, seed=5).float()
    decoder = torch.nn.Linear(2, 5)
    encoder = torch.nn.Linear(5, 4)

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(decoder(z), 0.5).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            out = encoder(x)
            pyro.sample("z", dist.Normal(out[..., :2], out[..., 2:].exp()).to_event(1))

    before = decoder.weight.detach().clone()
    result = train(model, x, SVIConfig(epochs=30, batch_size=50, learning_rate=0.02), guide=guide,
                   test_x=x[:50])
    assert not torch.equal(decoder.weight, before)
    assert result.history[-1]["test_elbo"] > result.history[0]["test_elbo"] + 1.0


@pytest.mark.parametrize("beta,num_data", [(1.0, None), (0.5, 40)])
def test_direct_iwae_loss_equals_the_programs(beta, num_data):
    torch.manual_seed(0)
    vae = VAE(6, 3, hidden_dims=(8,)).double()
    x = torch.bernoulli(torch.rand(5, 6, dtype=torch.float64))
    structure = inspect_program(vae.model, vae.guide, x)
    values, grads = [], []
    for loss in (lambda: direct_iwae_loss(vae, x, num_data, beta, num_particles=7),
                 lambda: program_iwae_loss(vae, x, num_data, beta, num_particles=7, structure=structure)):
        pyro.set_rng_seed(4)
        vae.zero_grad()
        value = loss()
        value.backward()
        values.append(value.detach())
        grads.append([p.grad.clone() for p in vae.parameters()])
    torch.testing.assert_close(values[0], values[1], rtol=1e-10, atol=1e-10)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_iwae_objective_trains_and_is_tighter(digits_vae):
    _, x = digits_vae
    from ppl_vae.data import load_dataset

    data = load_dataset("digits")
    model = VAE(64, 2, hidden_dims=(32,))
    config = SVIConfig(epochs=3, batch_size=64, objective="iwae", num_particles=5, binarize="dynamic")
    result = train(model, data.train_x, config, test_x=data.test_x)
    assert math.isfinite(result.history[-1]["test_elbo"])
    with pytest.raises(ConfigError, match="objective"):
        SVIConfig(objective="renyi")


# ----- Pyro's parameter store ----------------------------------------------------------------------

_SVI_SCRIPT = textwrap.dedent("""
    import pyro, torch
    from ppl_vae import VAE
    from pyro.infer import SVI, Trace_ELBO

    def fit(seed):
        pyro.set_rng_seed(seed)
        vae = VAE(8, 2, hidden_dims=(6,))
        x = torch.bernoulli(torch.rand(32, 8, generator=torch.Generator().manual_seed(seed)))
        svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
        for _ in range(20):
            svi.step(x)
        return vae
""")


def _fit_in_a_fresh_process(seed: int) -> torch.Tensor:
    code = _SVI_SCRIPT + f"print(float(sum(p.double().sum() for p in fit({seed}).parameters())))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return torch.tensor(float(out.stdout.strip().splitlines()[-1]), dtype=torch.float64)


def test_two_vaes_with_the_same_name_train_independently_through_plain_svi():
    namespace: dict = {}
    exec(compile(_SVI_SCRIPT, "svi_script", "exec"), namespace)
    first = namespace["fit"](1)
    second = namespace["fit"](2)  # same default name "vae", same process, same param store
    sums = [float(sum(p.double().sum() for p in model.parameters())) for model in (first, second)]
    for seed, value in zip((1, 2), sums):
        assert abs(value - float(_fit_in_a_fresh_process(seed))) < 1e-5


# ----- programs the per-point methods cannot handle -----------------------------------------------

def _global_latent(x):
    shift = pyro.sample("shift", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(shift, 1.0).expand([x.shape[0], x.shape[1]]).to_event(1), obs=x)


def _unenumerated_discrete(x):
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Bernoulli(0.5))
        pyro.sample("x", dist.Normal(c.unsqueeze(-1), 1.0).expand([x.shape[0], x.shape[1]]).to_event(1),
                    obs=x)


def _flattening_network(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.reshape(x.shape[0], 2).sum(-1, keepdim=True), 1.0)
                    .expand([x.shape[0], x.shape[1]]).to_event(1), obs=x)


def _empty_guide(x):
    pass


@pytest.mark.parametrize("model,guide,message", [
    (_global_latent, _empty_guide, "site 'shift' is not inside a plate over the data points"),
    (_unenumerated_discrete, _empty_guide, "'c'.*enumerate"),
])
def test_unsupported_programs_get_one_clear_error(model, guide, message):
    x = torch.randn(4, 3)
    with pytest.raises(ConfigError, match=message):
        iwae(model, x, 10, guide=guide)


# ----- programs that do not broadcast over an extra leading dimension -------------------------------

def test_a_program_that_does_not_broadcast_runs_one_pass_at_a_time():
    x = torch.randn(4, 3)
    with pytest.warns(UserWarning, match="one pass at a time") as record:
        estimate = naive_prior(_flattening_network, x, 10)
    assert len(record) == 1 and torch.isfinite(estimate.per_point).all()


def test_the_slower_path_gives_the_vectorized_numbers(ppca):
    """A broadcasting program forced down the one-pass-at-a-time path: the same log-weights.

    Its guide draws one Normal site of 8 points x 2 dimensions per sample, 16 values: torch
    fills a normal tensor in blocks of 16 values, so K such draws one at a time are the K
    draws at once for the same seed.
    """
    program, x = ppca
    structure = inspect_program(program.model, program.poor_guide, x)
    assert structure.broadcasts
    weights = []
    for path in (structure, dataclasses.replace(structure, broadcasts=False)):
        pyro.set_rng_seed(7)
        weights.append(program_log_terms(program.model, program.poor_guide, x, 50, path,
                                         scaled=False).log_weights)
    torch.testing.assert_close(weights[1], weights[0], rtol=0, atol=1e-12)


# ----- the command line with a user's model class ---------------------------------------------------

def test_cli_trains_evaluates_and_samples_a_user_class(tmp_path):
    from ppl_vae import load_checkpoint
    from ppl_vae.cli import main

    out = tmp_path / "run"
    common = ["--device", "cpu"]
    assert main(["train", "--data", "digits", "--model", "user_programs:StudentTVAE", "--latent-dim", "2",
                 "--hidden-dims", "16", "--epochs", "1", "--out", str(out), "--quiet", *common]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["model_class"] == "user_programs:StudentTVAE"
    # ppl_vae never imports code a checkpoint names: without --model it says what to pass.
    assert main(["evaluate", "--checkpoint", str(out), "--iwae-samples", "10", *common]) == 2
    assert main(["evaluate", "--checkpoint", str(out), "--iwae-samples", "10",
                 "--model", "user_programs:StudentTVAE", *common]) == 0
    assert main(["sample", "--checkpoint", str(out), "--out", str(tmp_path / "s.npy"),
                 "--model", "user_programs:StudentTVAE", *common]) == 0
    assert main(["train", "--data", "digits", "--model", "user_programs:NotThere", "--epochs", "1",
                 "--out", str(tmp_path / "other"), *common]) == 2
