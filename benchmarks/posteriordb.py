"""posteriordb posteriors through ppl_vae's NUTS: a correctness check and a benchmark against NumPyro.

Usage::

    python benchmarks/posteriordb.py [--posterior eight_schools-eight_schools_noncentered ...]
                                     [--num-chains 4] [--warmup-steps 1000] [--num-samples 2000]
                                     [--repeats 3] [--seed 0] [--out benchmarks/results/posteriordb.json]
                                     [--sampler compiled|program|written]
    python benchmarks/posteriordb.py --quick      # tiny sizes, seconds; checks that both sides run

Three small posteriors of the public posteriordb (github.com/stan-dev/posteriordb;
BSD-3, see ``benchmarks/posteriordb/LICENSE`` and ``README.md`` there for the
source commit), each written as a Pyro program exactly as its Stan model (the
constrained scales as ``HalfCauchy``/``HalfNormal``, flat priors as
``ImproperUniform``):

* ``eight_schools-eight_schools_noncentered``: 10 parameters, the funnel
  taken apart by the non-centred form.
* ``kidiq-kidscore_momiq``: linear regression, 2 coefficients (flat prior) + sigma,
  434 points, strongly correlated coefficients. ``sample_posterior`` refuses
  improper priors, so this one runs :func:`batched_nuts` on the potential read
  from the same program (``inspect_program(..., proper_prior=False)``,
  ``program_log_joint``, ``to_constrained``), chains started from a proper guide.
* ``sblri-blr``: linear regression, 5 coefficients + sigma, 100 points.

A posterior of the whole data set is one "point" for :func:`ppl_vae.sample_posterior`:
the program takes ``x`` of shape ``(1, N)`` (the observed vector) with its
covariates bound by :func:`functools.partial`, and its global latents sit in a
plate of size one, so each chain samples all of them jointly.

ppl_vae's side runs one of three samplers (``--sampler``): by default
``batched_nuts(..., jit_compile=True)`` on the posterior written out as tensor
code (:func:`written_potential`, checked against the program's own potential
by the tests), timed on a second run after the first compiled; ``program``,
:func:`ppl_vae.sample_posterior` on the Pyro program (eager: a Pyro trace
cannot be compiled); ``written``, the written potential eagerly.

Every run is compared with posteriordb's reference draws (10 x 1,000 thinned
Stan draws, summarized in ``benchmarks/posteriordb/*.json``): the mean of each
parameter in Monte Carlo standard errors, the sd ratio, split R-hat and bulk ESS.
The same model in NumPyro (NUTS, dense mass, ``chain_method="vectorized"``,
float64 like ppl_vae) runs beside it: its compile time (the first run) is
reported separately from its run time (a second, compiled run). With
``--repeats`` the two sides alternate and the ratio is the median of the
paired ratios. Needs the ``bench`` extra for NumPyro; without it only
ppl_vae's side runs. Time on an idle machine only.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import missing_package  # noqa: E402
from svi_throughput import paired_ratio  # noqa: E402

from ppl_vae.inference.mcmc.api import NUTSConfig, sample_posterior, uniform_starts  # noqa: E402
from ppl_vae.inference.mcmc.batched_nuts import batched_nuts  # noqa: E402
from ppl_vae.inference.program import (  # noqa: E402
    ProgramStructure,
    inspect_program,
    program_log_joint,
    to_constrained,
)

DATA = Path(__file__).resolve().parent / "posteriordb"
DTYPE = torch.float64


# ---------------------------------------------------------------- the Pyro programs

def eight_schools_noncentered(y: torch.Tensor, sigma: torch.Tensor) -> None:
    """posteriordb ``eight_schools_noncentered``; ``y`` shape (1, J), ``sigma`` shape (J,)."""
    with pyro.plate("data", y.shape[0]):
        theta_trans = pyro.sample("theta_trans", dist.Normal(y.new_zeros(sigma.shape), 1.0).to_event(1))
        mu = pyro.sample("mu", dist.Normal(y.new_tensor(0.0), 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(y.new_tensor(5.0)))
        theta = theta_trans * tau.unsqueeze(-1) + mu.unsqueeze(-1)
        pyro.sample("y", dist.Normal(theta, sigma).to_event(1), obs=y)


def kidscore_momiq(kid_score: torch.Tensor, mom_iq: torch.Tensor) -> None:
    """posteriordb ``kidscore_momiq``; ``kid_score`` shape (1, N), ``mom_iq`` shape (N,)."""
    with pyro.plate("data", kid_score.shape[0]):
        beta = pyro.sample("beta", dist.ImproperUniform(constraints.real, (), (2,)))
        sigma = pyro.sample("sigma", dist.HalfCauchy(kid_score.new_tensor(2.5)))
        loc = beta[..., :1] + beta[..., 1:] * mom_iq
        pyro.sample("kid_score", dist.Normal(loc, sigma.unsqueeze(-1)).to_event(1), obs=kid_score)


def kidscore_momiq_start(kid_score: torch.Tensor, mom_iq: torch.Tensor) -> None:
    """Where :func:`kidscore_momiq`'s chains start: its flat prior cannot be sampled, so beta ~ N(0, 10)."""
    with pyro.plate("data", kid_score.shape[0]):
        pyro.sample("beta", dist.Normal(kid_score.new_zeros(2), 10.0).to_event(1))
        pyro.sample("sigma", dist.HalfCauchy(kid_score.new_tensor(2.5)))


def blr(y: torch.Tensor, X: torch.Tensor) -> None:  # noqa: N803 (Stan's name)
    """posteriordb ``blr``; ``y`` shape (1, N), ``X`` shape (N, D)."""
    with pyro.plate("data", y.shape[0]):
        beta = pyro.sample("beta", dist.Normal(y.new_zeros(X.shape[1]), 10.0).to_event(1))
        sigma = pyro.sample("sigma", dist.HalfNormal(y.new_tensor(10.0)))
        loc = (beta.unsqueeze(-2) * X).sum(-1)
        pyro.sample("y", dist.Normal(loc, sigma.unsqueeze(-1)).to_event(1), obs=y)


# ---------------------------------------------------------------- the posteriors

@dataclass(frozen=True)
class Posterior:
    """One posteriordb posterior: the program, its data and the reference summary.

    Attributes
    ----------
    name : str
        posteriordb's name, ``<data>-<model>``.
    program : callable
        ``program(x)`` with the covariates bound; ``x`` shape (1, N).
    x : Tensor, shape (1, N)
    data : dict
        The posteriordb data fields the model reads.
    reference : dict of str to dict
        Per reference parameter (posteriordb's names, e.g. ``"theta[1]"``):
        ``mean``, ``sd``, ``num_draws``, ``ess_bulk`` of the reference draws.
    guide : callable or None
        Where the chains start, for a program whose prior cannot be sampled
        (None: from prior draws).
    """

    name: str
    program: Callable[[torch.Tensor], None]
    x: torch.Tensor
    data: dict[str, Any]
    reference: dict[str, dict[str, float]]
    guide: Callable[[torch.Tensor], None] | None = None


def _eight_schools(data: dict[str, Any]) -> tuple[Callable, torch.Tensor, Callable | None]:
    sigma = torch.tensor(data["sigma"], dtype=DTYPE)
    return (functools.partial(eight_schools_noncentered, sigma=sigma),
            torch.tensor([data["y"]], dtype=DTYPE), None)


def _kidiq(data: dict[str, Any]) -> tuple[Callable, torch.Tensor, Callable | None]:
    mom_iq = torch.tensor(data["mom_iq"], dtype=DTYPE)
    return (functools.partial(kidscore_momiq, mom_iq=mom_iq), torch.tensor([data["kid_score"]], dtype=DTYPE),
            functools.partial(kidscore_momiq_start, mom_iq=mom_iq))


def _blr(data: dict[str, Any]) -> tuple[Callable, torch.Tensor, Callable | None]:
    X = torch.tensor(data["X"], dtype=DTYPE)  # noqa: N806
    return functools.partial(blr, X=X), torch.tensor([data["y"]], dtype=DTYPE), None


_BUILDERS = {
    "eight_schools-eight_schools_noncentered": _eight_schools,
    "kidiq-kidscore_momiq": _kidiq,
    "sblri-blr": _blr,
}

POSTERIORS = tuple(_BUILDERS)


# ---------------------------------------------------------------- the same posteriors as tensor code

def _normal(value: torch.Tensor, loc: torch.Tensor | float, scale: torch.Tensor | float) -> torch.Tensor:
    """log N(value; loc, scale) without its constant -log sqrt(2 pi), summed over the last dimension."""
    scale = torch.as_tensor(scale, dtype=value.dtype)
    return (-0.5 * ((value - loc) / scale) ** 2 - scale.log()).sum(-1)


def written_potential(posterior: Posterior) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``-log p(x, T(u)) - log |dT/du|`` of ``posterior`` written out in tensor code, up to a constant.

    The unconstrained coordinates are the program's, in its site order, with
    ``log`` for the positive scales: what :func:`batched_nuts` compiles with
    ``jit_compile=True`` (a Pyro program's trace cannot be compiled). The test
    ``tests/inference/mcmc/test_posteriordb.py`` checks that it differs from the
    program's own potential by one constant.
    """
    data = posterior.data
    if posterior.name == "eight_schools-eight_schools_noncentered":
        y, sigma = (torch.tensor(data[key], dtype=DTYPE) for key in ("y", "sigma"))
        num_schools = len(y)

        def log_density(u: torch.Tensor) -> torch.Tensor:
            theta_trans, mu, log_tau = u[:, :num_schools], u[:, num_schools], u[:, num_schools + 1]
            tau = log_tau.exp()
            theta = theta_trans * tau[:, None] + mu[:, None]
            return (_normal(theta_trans, 0.0, 1.0) + _normal(mu[:, None], 0.0, 5.0)
                    - torch.log1p((tau / 5) ** 2) + log_tau + _normal(y, theta, sigma))
    elif posterior.name == "kidiq-kidscore_momiq":
        kid_score, mom_iq = (torch.tensor(data[key], dtype=DTYPE) for key in ("kid_score", "mom_iq"))

        def log_density(u: torch.Tensor) -> torch.Tensor:
            log_sigma = u[:, 2]
            sigma = log_sigma.exp()
            loc = u[:, :1] + u[:, 1:2] * mom_iq
            return -torch.log1p((sigma / 2.5) ** 2) + log_sigma + _normal(kid_score, loc, sigma[:, None])
    else:
        y, X = torch.tensor(data["y"], dtype=DTYPE), torch.tensor(data["X"], dtype=DTYPE)  # noqa: N806
        num_coefficients, covariates = X.shape[1], X.T.contiguous()  # (D, N)

        def log_density(u: torch.Tensor) -> torch.Tensor:
            beta, log_sigma = u[:, :num_coefficients], u[:, num_coefficients]
            sigma = log_sigma.exp()
            return (_normal(beta, 0.0, 10.0) + _normal(sigma[:, None], 0.0, 10.0) + log_sigma
                    + _normal(y, beta @ covariates, sigma[:, None]))

    def potential(u: torch.Tensor, chains: torch.Tensor) -> torch.Tensor:
        return -log_density(u)

    return potential


def program_potential(posterior: Posterior, num_rows: int) -> tuple[Callable, ProgramStructure]:
    """The program's own potential on ``num_rows`` rows (as ``sample_posterior`` builds it, with the
    improper-prior check off), and its structure."""
    program, x = posterior.program, posterior.x
    structure = inspect_program(program, posterior.guide, x, need_guide=False, proper_prior=False)
    x_rows = x.repeat(num_rows, 1)

    def potential(u: torch.Tensor, chains: torch.Tensor) -> torch.Tensor:
        with pyro.validation_enabled(False):
            values, log_det = to_constrained(u, structure)
            return -(program_log_joint(program, x_rows[chains], values, structure) + log_det)

    return potential, structure


def load_posterior(name: str) -> Posterior:
    """The posterior ``name`` (one of :data:`POSTERIORS`) from the files in ``benchmarks/posteriordb``."""
    stored = json.loads((DATA / f"{name}.json").read_text())
    program, x, guide = _BUILDERS[name](stored["data"])
    return Posterior(name, program, x, stored["data"], stored["reference"], guide)


def reference_draws(name: str, sites: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Draws under posteriordb's parameter names, each shape (chain, draw).

    Parameters
    ----------
    sites : dict of str to ndarray, each shape (chain, draw) + event_shape
        Each latent site's draws on its support (the point dimension dropped).
    """
    if name == "eight_schools-eight_schools_noncentered":
        theta = sites["theta_trans"] * sites["tau"][..., None] + sites["mu"][..., None]
        flat = {f"theta[{j + 1}]": theta[..., j] for j in range(theta.shape[-1])}
        return {**flat, "mu": sites["mu"], "tau": sites["tau"]}
    out = {}
    for site, value in sites.items():
        if value.ndim == 2:
            out[site] = value
        else:
            out.update({f"{site}[{j + 1}]": value[..., j] for j in range(value.shape[-1])})
    return out


# ---------------------------------------------------------------- the comparison

def compare(draws: dict[str, np.ndarray], reference: dict[str, dict[str, float]]) -> list[dict[str, float]]:
    """Each parameter's draws against the reference summary.

    ``z`` is ``(mean - ref_mean) / sqrt(mcse**2 + ref_sd**2 / ref_ess)``: the
    difference in standard errors of the difference (the run's MCSE of the mean
    from its bulk ESS, the reference's from its own). ``sd_ratio`` is the run's
    sd over the reference sd.

    Parameters
    ----------
    draws : dict of str to ndarray, each shape (chain, draw)
    reference : dict of str to dict, as :attr:`Posterior.reference`
    """
    import arviz as az

    rows = []
    for name, ref in reference.items():
        value = np.asarray(draws[name], dtype=float)
        ess = float(az.ess(value, method="bulk"))
        mcse = float(az.mcse(value, method="mean"))
        se = math.sqrt(mcse**2 + ref["sd"] ** 2 / ref["ess_bulk"])
        rows.append({"parameter": name, "mean": float(value.mean()), "ref_mean": ref["mean"],
                     "z": (float(value.mean()) - ref["mean"]) / se,
                     "sd": float(value.std(ddof=1)), "ref_sd": ref["sd"],
                     "sd_ratio": float(value.std(ddof=1)) / ref["sd"],
                     "r_hat": float(az.rhat(value)), "ess_bulk": ess})
    return rows


SAMPLERS = ("compiled", "program", "written")


def run_ppl_vae(posterior: Posterior, config: NUTSConfig, sampler: str = "program"
                ) -> tuple[float, int, dict[str, np.ndarray]]:
    """ppl_vae's NUTS: (seconds, divergences, draws under posteriordb's names).

    ``sampler``:

    * ``"program"``: the Pyro program through :func:`ppl_vae.sample_posterior`
      where it accepts it; a program with a flat prior (which ``sample_posterior``
      refuses, as it does for every method that needs log p(x)) through
      :func:`batched_nuts` on the potential read from the same program.
    * ``"written"``: :func:`batched_nuts` on :func:`written_potential`, eager.
    * ``"compiled"``: the same with ``jit_compile=True``; the seconds are those
      of a second run, after the first compiled (see :func:`run_compiled`).
    """
    if sampler == "program" and posterior.guide is None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="NUTS on .* latent dimensions")
            result = sample_posterior(posterior.program, posterior.x, config)
        sites = {name: value[:, :, 0].numpy() for name, value in result.sites.items()}
        return result.wall_time, int(result.sample_stats["diverging"].sum()), reference_draws(posterior.name, sites)
    if sampler == "compiled":
        return run_compiled(posterior, config)[1:]
    potential, structure = program_potential(posterior, config.num_chains)
    if sampler == "written":
        potential = written_potential(posterior)
    return _batched(posterior, config, potential, structure, jit_compile=False)


def run_compiled(posterior: Posterior, config: NUTSConfig) -> tuple[float, float, int, dict[str, np.ndarray]]:
    """``jit_compile=True`` on :func:`written_potential`, twice with the same settings:
    (the first run's extra seconds, i.e. compilation; the second run's seconds; divergences; draws)."""
    _, structure = program_potential(posterior, config.num_chains)
    potential = written_potential(posterior)
    first, *_ = _batched(posterior, config, potential, structure, jit_compile=True)
    second, divergences, draws = _batched(posterior, config, potential, structure, jit_compile=True)
    return first - second, second, divergences, draws


def _batched(posterior: Posterior, config: NUTSConfig, potential: Callable, structure: ProgramStructure,
             jit_compile: bool) -> tuple[float, int, dict[str, np.ndarray]]:
    """:func:`batched_nuts` on ``potential``; chains start as ``sample_posterior`` starts a program
    without a guide (and as NumPyro does): uniform on (-2, 2) per unconstrained coordinate, unit mass."""
    like = torch.zeros(1, structure.latent_numel, dtype=DTYPE)
    inits = uniform_starts(like, config)
    started = time.perf_counter()
    run = batched_nuts(potential, torch.cat(inits), config.num_samples, config.warmup_steps,
                       inverse_mass=torch.ones(config.num_chains, structure.latent_numel, dtype=DTYPE),
                       dense_mass=config.dense_mass,
                       target_accept_prob=config.target_accept_prob, max_tree_depth=config.max_tree_depth,
                       generator=torch.Generator().manual_seed(config.seed), jit_compile=jit_compile)
    seconds = time.perf_counter() - started
    with torch.no_grad():
        sites, _ = to_constrained(run.samples, structure)
    draws = reference_draws(posterior.name, {name: value.numpy() for name, value in sites.items()})
    return seconds, int(run.diverging.sum()), draws


# ---------------------------------------------------------------- NumPyro

def _numpyro_model(name: str, data: dict[str, Any]) -> Callable[[], None]:
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as ndist

    if name == "eight_schools-eight_schools_noncentered":
        y, sigma = jnp.asarray(data["y"]), jnp.asarray(data["sigma"])

        def model() -> None:
            theta_trans = numpyro.sample("theta_trans", ndist.Normal(jnp.zeros(len(sigma)), 1.0).to_event(1))
            mu = numpyro.sample("mu", ndist.Normal(0.0, 5.0))
            tau = numpyro.sample("tau", ndist.HalfCauchy(5.0))
            numpyro.sample("y", ndist.Normal(theta_trans * tau + mu, sigma), obs=y)
    elif name == "kidiq-kidscore_momiq":
        kid_score, mom_iq = jnp.asarray(data["kid_score"]), jnp.asarray(data["mom_iq"])

        def model() -> None:
            beta = numpyro.sample("beta", ndist.ImproperUniform(ndist.constraints.real, (), (2,)))
            sigma = numpyro.sample("sigma", ndist.HalfCauchy(2.5))
            numpyro.sample("kid_score", ndist.Normal(beta[0] + beta[1] * mom_iq, sigma), obs=kid_score)
    else:
        y, X = jnp.asarray(data["y"]), jnp.asarray(data["X"])  # noqa: N806

        def model() -> None:
            beta = numpyro.sample("beta", ndist.Normal(jnp.zeros(X.shape[1]), 10.0).to_event(1))
            sigma = numpyro.sample("sigma", ndist.HalfNormal(10.0))
            numpyro.sample("y", ndist.Normal(X @ beta, sigma), obs=y)
    return model


def run_numpyro(posterior: Posterior, config: NUTSConfig) -> tuple[float, float, dict[str, np.ndarray]]:
    """NumPyro NUTS on the same model: (first run's seconds incl. compilation, compiled run's seconds, draws).

    Both runs use the same settings and key; the first compiles, the second
    is the run time. Chains are vectorized, the mass matrix dense, float64.
    """
    import jax
    from numpyro.infer import MCMC, NUTS

    jax.config.update("jax_enable_x64", True)
    model = _numpyro_model(posterior.name, posterior.data)
    mcmc = MCMC(NUTS(model, dense_mass=config.dense_mass, target_accept_prob=config.target_accept_prob,
                     max_tree_depth=config.max_tree_depth),
                num_warmup=config.warmup_steps, num_samples=config.num_samples, num_chains=config.num_chains,
                chain_method="vectorized", progress_bar=False, jit_model_args=False)
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(config.seed))
        jax.block_until_ready(mcmc.get_samples())
        seconds.append(time.perf_counter() - started)
    sites = {name: np.asarray(value) for name, value in mcmc.get_samples(group_by_chain=True).items()}
    return seconds[0] - seconds[1], seconds[1], reference_draws(posterior.name, sites)


def run_numpyro_apart(name: str, config: NUTSConfig) -> tuple[float, float, dict[str, np.ndarray]]:
    """:func:`run_numpyro` in a fresh process: JAX's thread pool, once started, slowed torch's
    following runs in the same process by 1.5-1.9x (kidiq: 5.6-6.8 s alone, 9.8-12.2 s after
    a NumPyro run), so each side runs in a process of its own."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_numpyro_by_name, (name, config))


def _numpyro_by_name(name: str, config: NUTSConfig) -> tuple[float, float, dict[str, np.ndarray]]:
    return run_numpyro(load_posterior(name), config)


# ---------------------------------------------------------------- driver

def _summary(rows: list[dict[str, float]], seconds: float) -> dict[str, float]:
    min_ess = min(row["ess_bulk"] for row in rows)
    return {"seconds": seconds, "min_ess_bulk": min_ess, "ess_per_s": min_ess / seconds,
            "max_abs_z": max(abs(row["z"]) for row in rows),
            "max_r_hat": max(row["r_hat"] for row in rows),
            "sd_ratio_range": [min(row["sd_ratio"] for row in rows), max(row["sd_ratio"] for row in rows)]}


def bench_posterior(name: str, config: NUTSConfig, repeats: int, with_numpyro: bool,
                    sampler: str = "compiled") -> dict[str, Any]:
    """ppl_vae and NumPyro alternated ``repeats`` times on one posterior; the record of the run."""
    posterior = load_posterior(name)
    record: dict[str, Any] = {"posterior": name, "sampler": sampler, "ppl_vae": [], "ppl_vae_compile_s": [],
                              "numpyro": [], "numpyro_compile_s": []}
    for _ in range(repeats):
        if sampler == "compiled":
            compile_s, seconds, divergences, draws = run_compiled(posterior, config)
            record["ppl_vae_compile_s"].append(compile_s)
        else:
            seconds, divergences, draws = run_ppl_vae(posterior, config, sampler)
        rows = compare(draws, posterior.reference)
        record["ppl_vae"].append({**_summary(rows, seconds), "divergences": divergences})
        record["ppl_vae_rows"] = rows
        if with_numpyro:
            compile_s, run_s, peer_draws = run_numpyro_apart(name, config)
            peer_rows = compare(peer_draws, posterior.reference)
            record["numpyro"].append(_summary(peer_rows, run_s))
            record["numpyro_compile_s"].append(compile_s)
            record["numpyro_rows"] = peer_rows
    if with_numpyro:
        record["ratio_seconds"] = paired_ratio([r["seconds"] for r in record["ppl_vae"]],
                                               [r["seconds"] for r in record["numpyro"]])
        record["ratio_ess_per_s"] = paired_ratio([r["ess_per_s"] for r in record["ppl_vae"]],
                                                 [r["ess_per_s"] for r in record["numpyro"]])
    return record


def _print(record: dict[str, Any]) -> None:
    print(f"\n{record['posterior']} (ppl_vae: {record['sampler']})")
    print(f"  {'parameter':<12}{'mean':>10}{'ref':>10}{'z':>7}{'sd ratio':>10}{'R-hat':>7}{'ESS':>7}")
    for row in record["ppl_vae_rows"]:
        print(f"  {row['parameter']:<12}{row['mean']:>10.3f}{row['ref_mean']:>10.3f}{row['z']:>7.2f}"
              f"{row['sd_ratio']:>10.3f}{row['r_hat']:>7.3f}{row['ess_bulk']:>7.0f}")
    for side in ("ppl_vae", "numpyro"):
        for i, run in enumerate(record[side]):
            compiles = record[f"{side}_compile_s"]
            extra = f", compile {compiles[i]:.2f} s" if compiles else ""
            print(f"  {side:<8} repeat {i}: {run['seconds']:.2f} s{extra}, min ESS {run['min_ess_bulk']:.0f}, "
                  f"ESS/s {run['ess_per_s']:.1f}, max |z| {run['max_abs_z']:.2f}, "
                  f"max R-hat {run['max_r_hat']:.3f}")
    if "ratio_seconds" in record:
        print(f"  ppl_vae / NumPyro (median of paired ratios): seconds {record['ratio_seconds']:.2f}, "
              f"ESS/s {record['ratio_ess_per_s']:.2f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posterior", nargs="+", choices=POSTERIORS, default=list(POSTERIORS))
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--warmup-steps", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-numpyro", action="store_true", help="run ppl_vae's side only")
    parser.add_argument("--sampler", choices=SAMPLERS, default="compiled",
                        help="ppl_vae's side: batched_nuts(jit_compile=True) on the posterior written as "
                             "tensor code (default), sample_posterior on the Pyro program, or the written "
                             "potential eagerly")
    parser.add_argument("--quick", action="store_true", help="4 x (100 + 100), one repeat")
    parser.add_argument("--out", type=Path, help="write the record as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup_steps, args.num_samples, args.repeats = 100, 100, 1
    config = NUTSConfig(num_samples=args.num_samples, warmup_steps=args.warmup_steps,
                        num_chains=args.num_chains, seed=args.seed)
    missing = None if args.no_numpyro else missing_package(("jax", "numpyro"))
    if missing:
        print(f"NumPyro skipped: {missing}")
    with_numpyro = not args.no_numpyro and missing is None
    pyro.set_rng_seed(args.seed)
    records = [bench_posterior(name, config, args.repeats, with_numpyro, args.sampler) for name in args.posterior]
    for record in records:
        _print(record)
    out = {"config": {"num_chains": args.num_chains, "warmup_steps": args.warmup_steps,
                      "num_samples": args.num_samples, "repeats": args.repeats, "seed": args.seed,
                      "dtype": "float64", "torch_threads": torch.get_num_threads(), "sampler": args.sampler},
           "posteriors": records}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
