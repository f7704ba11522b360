"""ppl_vae's NUTS against posteriordb's reference posteriors (benchmarks/posteriordb.py).

Each posterior is a Pyro program written as its Stan model; the reference is
posteriordb's 10,000 thinned Stan draws, summarized per parameter in
``benchmarks/posteriordb/*.json``. A run passes when every parameter's mean is
within ``MEAN_Z`` standard errors of the difference (the run's MCSE and the
reference's), its sd within ``SD_RATIO_Z`` standard errors of the sd ratio of
one, and its split R-hat below ``MAX_R_HAT``.

What this catches: a wrong potential or Jacobian of a constrained site (tau,
sigma: the scales' means and sds move by many standard errors), draws mapped
back to the wrong site or support, a mass-matrix or step-size adaptation that
leaves chains stuck (R-hat, sd ratio), and a sampler that is biased on a
funnel-shaped hierarchical posterior (eight schools' tau).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import posteriordb as pdb  # noqa: E402

from ppl_vae.inference.mcmc.api import NUTSConfig  # noqa: E402

#: Means within this many standard errors of the difference: with up to 10
#: parameters per posterior and three posteriors, a false alarm about once in
#: 10,000 runs of the whole file (two-sided normal tail 6e-5 per parameter).
MEAN_Z = 4.0

#: The sd ratio within this many of its standard errors of 1. The sd of a sample
#: sd is about sd / sqrt(2 ESS) (normal draws); heavy tails (tau) make it wider,
#: hence a bound wider than MEAN_Z.
SD_RATIO_Z = 5.0

#: Split R-hat of every parameter below this (4 chains).
MAX_R_HAT = 1.05

FAST = ("sblri-blr", NUTSConfig(num_samples=200, warmup_steps=200, num_chains=4, seed=0))
SLOW = [(name, NUTSConfig(num_samples=1000, warmup_steps=1000, num_chains=4, seed=1))
        for name in pdb.POSTERIORS]


def _check(name: str, config: NUTSConfig) -> None:
    posterior = pdb.load_posterior(name)
    _, _, draws = pdb.run_ppl_vae(posterior, config)
    rows = pdb.compare(draws, posterior.reference)
    problems = []
    for row in rows:
        ref = posterior.reference[row["parameter"]]
        sd_se = math.sqrt(1 / (2 * row["ess_bulk"]) + 1 / (2 * ref["ess_bulk"]))
        if abs(row["z"]) > MEAN_Z:
            problems.append(f"{row['parameter']}: mean {row['mean']:.3f} vs {row['ref_mean']:.3f} "
                            f"({row['z']:+.1f} standard errors)")
        if abs(row["sd_ratio"] - 1) > SD_RATIO_Z * sd_se:
            problems.append(f"{row['parameter']}: sd ratio {row['sd_ratio']:.3f} (allowed 1 +- "
                            f"{SD_RATIO_Z * sd_se:.3f})")
        if not row["r_hat"] < MAX_R_HAT:
            problems.append(f"{row['parameter']}: R-hat {row['r_hat']:.3f}")
    assert not problems, f"{name}: " + "; ".join(problems)


def test_fast_posterior_matches_reference():
    """The default suite's check: sblri-blr (6 parameters), 4 chains x (200 + 200)."""
    _check(*FAST)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "config"), SLOW, ids=[name for name, _ in SLOW])
def test_posterior_matches_reference(name, config):
    _check(name, config)


def test_compare_flags_a_wrong_posterior():
    """The check can fail: reference draws shifted by 0.5 sd or scaled by 1.3 are caught."""
    import numpy as np

    posterior = pdb.load_posterior("sblri-blr")
    rng = np.random.default_rng(0)
    ref = posterior.reference["sigma"]
    good = ref["mean"] + ref["sd"] * rng.standard_normal((4, 500))
    assert abs(pdb.compare({"sigma": good}, {"sigma": ref})[0]["z"]) < MEAN_Z
    shifted = pdb.compare({"sigma": good + 0.5 * ref["sd"]}, {"sigma": ref})[0]
    assert abs(shifted["z"]) > MEAN_Z
    wide = pdb.compare({"sigma": ref["mean"] + 1.3 * (good - ref["mean"])}, {"sigma": ref})[0]
    assert abs(wide["sd_ratio"] - 1) > SD_RATIO_Z * math.sqrt(1 / (2 * wide["ess_bulk"]) + 1 / (2 * ref["ess_bulk"]))


def test_every_posterior_has_its_files():
    """Each posterior's data and reference are stored, and the program's parameters cover the reference."""
    for name in pdb.POSTERIORS:
        posterior = pdb.load_posterior(name)
        assert posterior.x.shape[0] == 1
        assert all(ref["num_draws"] == 10_000 for ref in posterior.reference.values())
    assert (BENCHMARKS / "posteriordb" / "LICENSE").is_file()


@pytest.mark.parametrize("name", pdb.POSTERIORS)
def test_the_written_potentials_are_the_programs_up_to_a_constant(name):
    """What ``--sampler compiled`` samples is the Pyro program's posterior: the tensor code differs
    from the program's own potential by one constant (the normalizers it leaves out)."""
    import torch

    posterior = pdb.load_posterior(name)
    program, structure = pdb.program_potential(posterior, num_rows=6)
    written = pdb.written_potential(posterior)
    u = torch.randn(6, structure.latent_numel, dtype=pdb.DTYPE, generator=torch.Generator().manual_seed(0))
    chains = torch.arange(6)
    difference = written(u, chains) - program(u, chains)
    assert float(difference.std()) < 1e-9 * float(difference.abs().max() + 1)
