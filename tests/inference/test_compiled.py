"""The compiled program: read once per entry point, accepted everywhere, a potential without side effects."""

from __future__ import annotations

import copy
import sys
from collections import Counter

import pyro
import pytest
import torch

from ppl_vae.evaluation.compare import CompareConfig, compare_posteriors
from ppl_vae.inference import (
    NUTSConfig,
    Program,
    compile_program,
    elbo,
    elbo_terms,
    fit_local_gaussian,
    iwae,
    log_importance_weights,
    log_joint,
    naive_prior,
    sample_posterior,
)
from ppl_vae.inference.ais import AISConfig, ais
from ppl_vae.inference.defensive import defensive_mixture
from ppl_vae.inference.local_vi import fit_flow_posterior
from ppl_vae.inference.program import inspect_program
from ppl_vae.models import VAE
from ppl_vae.training import SVIConfig, train
from user_programs import TwoLayerGaussian, vae_functions

TINY_NUTS = NUTSConfig(num_samples=20, warmup_steps=20, num_chains=2, parallel=False)
TINY_AIS = AISConfig(num_temperatures=5, num_chains=4, tuning_chains=2)
#: The functions that read a program's structure by tracing it (not those that compute with it).
READERS = ("inspect_program", "has_direct_elbo", "check_observed_support")


def _vae_and_points(num_points: int = 5) -> tuple[VAE, torch.Tensor]:
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden_dims=(8,)).double()
    return vae, torch.bernoulli(torch.full((num_points, 6), 0.4, dtype=torch.float64))


@pytest.fixture
def reads(monkeypatch):
    """How often each reader ran: every ppl_vae module's reference to it counts."""
    counts: Counter = Counter()
    for name in READERS:
        originals = {getattr(module, name) for module_name, module in list(sys.modules.items())
                     if module_name.startswith("ppl_vae") and callable(getattr(module, name, None))}
        for original in originals:
            def counted(*args, _original=original, _name=name, **kwargs):
                counts[_name] += 1
                return _original(*args, **kwargs)

            for module_name, module in list(sys.modules.items()):
                if module_name.startswith("ppl_vae") and getattr(module, name, None) is original:
                    monkeypatch.setattr(module, name, counted)
    return counts


@pytest.mark.parametrize("methods", [("encoder",), ("encoder", "local_gaussian", "flow")])
def test_compare_posteriors_reads_the_program_once(reads, methods):
    vae, x = _vae_and_points()
    config = CompareConfig(elbo_samples=20, iwae_samples=20, nuts=TINY_NUTS, methods=methods,
                           fit_max_steps=100, ais=TINY_AIS)
    compare_posteriors(vae, x, config)
    assert reads == Counter(inspect_program=1, has_direct_elbo=1)


def test_compare_posteriors_reads_a_function_program_once(reads):
    vae, x = _vae_and_points()
    model, guide = vae_functions(vae)
    config = CompareConfig(elbo_samples=20, iwae_samples=20, nuts=TINY_NUTS,
                           methods=("encoder", "local_gaussian"), fit_max_steps=100)
    compare_posteriors(model, x, config, guide=guide)
    # with a guide of its own the fast path is out of the question; the data are checked
    # against the observed sites' supports once
    assert reads == Counter(inspect_program=1, check_observed_support=1)


def test_training_reads_the_program_once_for_every_epoch(reads):
    vae, x = _vae_and_points(32)
    train(vae, x, SVIConfig(epochs=3, batch_size=16), test_x=x[:8], progress=False)
    assert reads == Counter(inspect_program=1, has_direct_elbo=1)


def _networks_state(vae: VAE) -> list[bool]:
    return [parameter.requires_grad for parameter in vae.parameters()]


@pytest.mark.parametrize("form", ["object", "functions"])
@pytest.mark.parametrize("requires_grad", [True, False])
def test_the_potential_has_no_side_effects(form, requires_grad):
    vae, x = _vae_and_points(4)
    vae.requires_grad_(requires_grad)
    vae.encoder.requires_grad_(True)  # a mixed state, to be found as it was
    found = _networks_state(vae)
    threads = torch.get_num_threads()
    program = compile_program(vae, x) if form == "object" else compile_program(
        *vae_functions(vae)[:1], x, guide=vae_functions(vae)[1])
    u = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    for _ in range(2):  # the first call of a function registers its networks with Pyro
        value = program.potential(x, u)
        (gradient,) = torch.autograd.grad(value.sum(), u)
        assert _networks_state(vae) == found
        assert torch.get_num_threads() == threads
    expected = -(vae.prior(x).log_prob(u) + vae.decode(u).log_prob(x))
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    assert gradient.shape == u.shape
    # no autograd graph reaches the networks: without a gradient in u there is none at all
    assert not program.potential(x, u.detach()).requires_grad
    assert _networks_state(vae) == found


def test_the_potential_holds_networks_of_a_pyro_program_fixed():
    from ppl_vae.models import PyroProgram

    vae, x = _vae_and_points(4)
    model, guide = vae_functions(vae)
    program = compile_program(PyroProgram(model, guide, x), x)
    found = _networks_state(vae)
    program.potential(x, torch.zeros(4, 2, dtype=torch.float64))
    assert not program.potential(x, torch.zeros(4, 2, dtype=torch.float64)).requires_grad
    assert _networks_state(vae) == found


def _same_estimate(first, second) -> None:
    assert torch.equal(first.per_point, second.per_point)
    assert torch.equal(first.stderr, second.stderr)


@pytest.mark.parametrize("form", ["object", "functions"])
def test_every_entry_point_takes_a_program_and_gives_the_same_numbers(form):
    vae, x = _vae_and_points()
    model, guide = (vae, None) if form == "object" else vae_functions(vae)
    program = compile_program(model, x, guide=guide)
    assert isinstance(program, Program) and program.direct == (form == "object")

    def both(call):
        pyro.set_rng_seed(3)
        raw = call(model, guide)
        pyro.set_rng_seed(3)
        return raw, call(program, None)

    for estimator in (elbo, iwae):
        _same_estimate(*both(lambda m, g, estimator=estimator: estimator(m, x, 50, guide=g)))
    _same_estimate(*both(lambda m, g: naive_prior(m, x, 50)))
    raw, compiled = both(lambda m, g: elbo_terms(m, x, 10, guide=g))
    for name in raw:
        _same_estimate(raw[name], compiled[name])
    raw, compiled = both(lambda m, g: log_importance_weights(m, g, x, 7))
    assert torch.equal(raw, compiled)
    z = torch.randn(3, len(x), 2, dtype=torch.float64)
    raw, compiled = both(lambda m, g: log_joint(m, x, z))
    assert torch.equal(raw, compiled)
    raw, compiled = both(lambda m, g: sample_posterior(m, x, TINY_NUTS, guide=g))
    assert torch.equal(raw.samples, compiled.samples)
    raw, compiled = both(lambda m, g: fit_local_gaussian(m, x, guide=g, max_steps=100))
    assert torch.equal(raw.posterior.loc, compiled.posterior.loc)
    start = raw.posterior
    raw, compiled = both(lambda m, g: fit_flow_posterior(m, x, start=start, guide=g, max_steps=100))
    assert raw.losses == compiled.losses
    mixtures = both(lambda m, g: defensive_mixture(m, x, guide=g, seed=1))
    _same_estimate(*both(lambda m, g: iwae(m, x, 30, guide=mixtures[m is program])))
    _same_estimate(*both(lambda m, g: ais(m, x, guide=g, config=TINY_AIS)))


def test_train_takes_a_program_and_gives_the_same_history():
    vae, x = _vae_and_points(32)
    twin = copy.deepcopy(vae)
    config = SVIConfig(epochs=2, batch_size=16)
    raw = train(vae, x, config, test_x=x[:8], progress=False)
    pyro.clear_param_store()
    compiled = train(compile_program(twin, x), x, config, test_x=x[:8], progress=False)
    assert [{k: v for k, v in row.items() if k != "wall_time"} for row in raw.history] == \
        [{k: v for k, v in row.items() if k != "wall_time"} for row in compiled.history]


@pytest.mark.parametrize("subject", ["vae", "two_layer"])
def test_a_fitted_posterior_gets_the_structure_a_trace_would_give(subject):
    if subject == "vae":
        model, x = _vae_and_points()
        program = compile_program(model, x)
    else:
        model = TwoLayerGaussian.random()
        x = model.sample(5)
        program = compile_program(model.model, x, guide=model.guide)
    fitted = fit_local_gaussian(program, x, max_steps=100).posterior
    flow = fit_flow_posterior(program, x, start=fitted, max_steps=100).posterior
    mixture = defensive_mixture(program, x, fitted.loc.detach(), fitted.scale.detach())
    for posterior in (fitted, flow, mixture):
        derived = program.with_guide(posterior).structure
        traced = inspect_program(program.model, posterior.restrict(slice(0, 2)), x)
        for name in ("data_plate", "max_plate_nesting", "observed", "guide_sites", "broadcasts",
                     "scaled", "not_reparameterized", "latent_numel", "constrained_numel"):
            assert getattr(derived, name) == getattr(traced, name), (posterior, name)
        assert [(site.name, site.event_shape, site.enumerated) for site in derived.latent] == \
            [(site.name, site.event_shape, site.enumerated) for site in traced.latent]
