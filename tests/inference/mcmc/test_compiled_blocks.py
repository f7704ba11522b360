"""batched_nuts(jit_compile=True): the compiled blocks are the eager sampler's steps, and sample exactly."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppl_vae.errors import ConfigError
from ppl_vae.evaluation.diagnostics import check_convergence, to_inference_data
from ppl_vae.inference.mcmc.api import NUTSConfig, sample_posterior
from ppl_vae.inference.mcmc.batched_nuts import batched_nuts
from ppl_vae.inference.mcmc.compiled_blocks import BLOCK_STEPS, has_cpp_compiler

pytestmark = pytest.mark.skipif(not has_cpp_compiler(), reason="torch.compile needs a C++ compiler on the CPU")

# Deviation allowed, in Monte Carlo standard errors (|Z| > 4.5 has p < 1e-5 per check).
MC_Z = 4.5
NUM_CHAINS, DIM = 4, 3
MEAN = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
FACTOR = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [-0.5, 0.2, 2.0]], dtype=torch.float64)
PRECISION = torch.cholesky_inverse(FACTOR)


def potential(z: torch.Tensor, chains: torch.Tensor) -> torch.Tensor:
    """A correlated Gaussian N(MEAN, FACTOR FACTOR^T), one module-level function so that every test
    reuses one compiled graph."""
    centred = z - MEAN
    return 0.5 * ((centred @ PRECISION) * centred).sum(-1)


def _init() -> torch.Tensor:
    return MEAN + 2 * torch.randn(NUM_CHAINS, DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


def _run(num_samples: int, warmup_steps: int):
    return batched_nuts(potential, _init(), num_samples, warmup_steps, jit_compile=True,
                        generator=torch.Generator().manual_seed(0))


def test_compiled_blocks_take_the_steps_the_same_code_takes_eagerly():
    compiled = _run(20, 0)
    with torch.compiler.set_stance("force_eager"):  # the same blocks, not compiled
        eager = _run(20, 0)
    assert torch.equal(compiled.num_steps, eager.num_steps)
    torch.testing.assert_close(compiled.samples, eager.samples, rtol=0, atol=1e-12)
    # With adaptation the graph's exp/sqrt/pow round differently from eager's in the last bit,
    # and NUTS is chaotic; after a short warm-up the draws still agree to rounding.
    compiled = _run(10, 10)
    with torch.compiler.set_stance("force_eager"):
        eager = _run(10, 10)
    torch.testing.assert_close(compiled.step_size, eager.step_size, rtol=1e-9, atol=0)
    torch.testing.assert_close(compiled.samples, eager.samples, rtol=0, atol=1e-6)
    assert compiled.num_gradient_batches % BLOCK_STEPS == eager.num_gradient_batches % BLOCK_STEPS


def test_compiled_blocks_sample_a_correlated_gaussian_exactly():
    run = _run(1000, 300)
    report = check_convergence(to_inference_data(run.samples[:, :, None, :]))
    assert float(report.r_hat.max()) < 1.02
    ess = torch.as_tensor(report.ess_bulk).flatten()
    assert float(ess.min()) > 1000
    covariance = FACTOR @ FACTOR.T
    sd = covariance.diagonal().sqrt()
    pooled = run.samples.flatten(0, 1)
    assert bool(((pooled.mean(0) - MEAN).abs() < MC_Z * sd / ess.sqrt()).all())
    # Var of a sample variance of a Gaussian: 2 sigma^4 / (n - 1).
    assert bool(((pooled.var(0) - sd ** 2).abs() < MC_Z * sd ** 2 * (2 / (ess - 1)).sqrt()).all())
    assert not bool(run.diverging.any())
    assert run.inverse_mass.shape == (NUM_CHAINS, DIM, DIM)  # dense, per chain


def test_settings_a_compiled_run_cannot_have_are_refused():
    with pytest.raises(ConfigError, match="masked=True"):
        batched_nuts(potential, _init(), 5, 5, jit_compile=True, masked=False)
    with pytest.raises(ConfigError, match="scheme='batched'"):
        NUTSConfig(scheme="joint", jit_compile=True)


def test_a_program_the_compiler_cannot_trace_gets_one_line_naming_the_switch():
    def model(x: torch.Tensor) -> None:  # a user's program, outside the direct path: traced by Pyro
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1), 1.0), obs=x[:, 0])

    x = torch.zeros(2, 1)
    config = NUTSConfig(num_samples=5, warmup_steps=5, num_chains=1, jit_compile=True)
    with pytest.raises(ConfigError, match=r"jit_compile=True: torch.compile could not .*pass jit_compile=False"):
        sample_posterior(model, x, config)


@pytest.mark.slow
def test_a_library_model_has_the_same_posterior_compiled_and_eager():
    """sample_posterior(jit_compile=True) on a VAE (the direct path, traced into the graph) against
    the eager sampler: posterior means within Monte Carlo error of each other, per point and
    coordinate."""
    from ppl_vae import VAE

    torch.manual_seed(0)
    vae = VAE(data_dim=64, latent_dim=2, hidden_dims=(32,))
    x = torch.bernoulli(torch.full((3, 64), 0.3))
    means, errors = [], []
    for jit_compile in (False, True):
        config = NUTSConfig(num_samples=500, warmup_steps=300, jit_compile=jit_compile, adapt_threads=False)
        result = sample_posterior(vae, x, config)
        report = check_convergence(result.to_inference_data())
        assert float(report.r_hat.max()) < 1.02
        draws = result.samples.flatten(0, 1)  # (draws, points, latent_dim)
        ess = torch.as_tensor(report.ess_bulk, dtype=draws.dtype).reshape(draws.shape[1:])
        means.append(draws.mean(0))
        errors.append(draws.std(0) / ess.sqrt())
    difference = (means[0] - means[1]).abs()
    assert bool((difference < MC_Z * (errors[0] ** 2 + errors[1] ** 2).sqrt()).all()), difference
