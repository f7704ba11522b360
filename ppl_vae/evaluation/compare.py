"""Variational inference against MCMC on the same trained model and the same data points.

For each data point the comparison fits or runs

* ``encoder``: the amortized q(z | x) the VAE was trained with;
* ``local_gaussian``: q*, a free Gaussian per point fitted to convergence;
* ``flow``: q* pushed through conditional spline flows;
* ``nuts``: NUTS draws of the exact posterior p(z | x), the reference;

and reports, per method, the ELBO and the IWAE bound (nats per point), how far
its posterior lies from the NUTS draws, and its wall time. It also splits the
encoder's gap to log p(x) as Cremer, Li and Duvenaud (2018) do:

    approximation gap  = log p^(x) - ELBO[q*]        (the Gaussian family's limit)
    amortization gap   = ELBO[q*] - ELBO[encoder]    (the price of one network for all x)

with log p^(x) chosen per point (:func:`choose_log_px`) among the IWAE
estimates of every method, of a defensive mixture proposal
(:mod:`ppl_vae.inference.defensive`, bounded weights) and, when
``CompareConfig.ais`` is set, annealed importance sampling
(:mod:`ppl_vae.inference.ais`, no proposal to miss mass with): of those whose
importance weights are trustworthy (Pareto k̂ <= 0.7,
:mod:`ppl_vae.inference.psis`) and that no other proposal's estimate
contradicts (lies far above: a missed posterior mode, which k̂ cannot see),
the one with the smallest Monte Carlo standard error. A point with none is
flagged, and its error reported as unknown.
Every per-point value comes with its Monte Carlo standard error, and the
gaps' Monte Carlo error is kept apart from their spread across points. A
comparison whose NUTS run has not converged is flagged in every report.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyro
import torch
from pyro import poutine

from ppl_vae.errors import ConfigError
from ppl_vae.evaluation.diagnostics import ConvergenceReport, check_convergence
from ppl_vae.inference.ais import AISConfig, ais
from ppl_vae.inference.defensive import defensive_mixture
from ppl_vae.inference.compiled import resolve
from ppl_vae.inference.importance import Estimate, elbo, iwae
from ppl_vae.inference.local_vi import fit_flow_posterior, fit_local_gaussian
from ppl_vae.inference.mcmc import MCMCResult, NUTSConfig, sample_posterior
from ppl_vae.inference.program import (
    PARTICLES,
    ProgramStructure,
    flatten_latents,
)
from ppl_vae.models.base import check_positive_int
from ppl_vae.rng import keeps_global_rng
from ppl_vae.storage import json_safe

METHODS = ("encoder", "local_gaussian", "flow")

#: Samples per point drawn from each q for the distances to the NUTS draws.
DISTANCE_SAMPLES = 1000

#: Name of the defensive mixture proposal (:mod:`ppl_vae.inference.defensive`) in the reports.
DEFENSIVE = "defensive"
#: Name of annealed importance sampling (:mod:`ppl_vae.inference.ais`) in the reports.
AIS = "ais"

#: An estimate lying this many combined standard errors below another proposal's is taken to
#: have missed mass (4: a false alarm from Gaussian noise has odds ~3e-5 per pair; the
#: check only ever moves a point to another proposal or flags it, never towards overconfidence).
DISAGREE_Z = 4.0


@dataclass(frozen=True)
class CompareConfig:
    """Settings of :func:`compare_posteriors`.

    Attributes
    ----------
    elbo_samples, iwae_samples : int
        Samples per point for the ELBO and for the IWAE bound.
    nuts : NUTSConfig
        The reference sampler's settings.
    methods : tuple of str
        Variational methods to fit, from :data:`METHODS`.
    fit_max_steps : int
        Step budget of the per-point fits (they usually converge sooner).
    num_flows : int
        Spline layers of the flow posterior.
    ais : AISConfig, optional
        Also estimate log p(x) by annealed importance sampling: a row
        ``"ais"`` and a candidate for log p^(x) (off by default: the IWAE
        candidates are enough on small latents).
    seed : int
    """

    elbo_samples: int = 1000
    iwae_samples: int = 5000
    nuts: NUTSConfig = field(default_factory=NUTSConfig)
    methods: tuple[str, ...] = METHODS
    fit_max_steps: int = 5000
    num_flows: int = 2
    ais: AISConfig | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int(self.elbo_samples, "elbo_samples")
        check_positive_int(self.iwae_samples, "iwae_samples")
        check_positive_int(self.fit_max_steps, "fit_max_steps")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or "encoder" not in self.methods:
            raise ConfigError(f"methods must include 'encoder' and come from {', '.join(METHODS)}; "
                              f"got {self.methods}")
        if "flow" in self.methods and "local_gaussian" not in self.methods:
            raise ConfigError("the flow starts from q*: include 'local_gaussian' with 'flow'")


@dataclass
class MethodResult:
    """One row of the comparison (averages over points; standard errors are Monte Carlo)."""

    name: str
    elbo: float | None
    elbo_stderr: float | None
    iwae: float | None
    iwae_stderr: float | None
    mean_error_sd: float | None
    sd_ratio: float | None
    energy_distance: float | None
    wall_time: float
    pareto_k_max: float | None = None
    flagged_share: float | None = None


@dataclass
class Comparison:
    """The table, the gap decomposition and the NUTS diagnostics.

    Attributes
    ----------
    rows : list of MethodResult
    gaps : dict
        ``approximation`` and ``amortization``, each with ``mean`` (over
        points), ``mc_stderr`` (Monte Carlo error of that mean; ``inf`` when a
        point's log p^(x) is flagged), ``spread`` (standard deviation across
        points, not an error bar) and ``sem_across_points`` (spread / sqrt(n):
        the error of the mean as an estimate for the population of points).
    convergence : ConvergenceReport
    per_point : dict of list
        Per method: ``{name}_elbo``, ``{name}_elbo_stderr``, ``{name}_iwae``,
        ``{name}_iwae_stderr`` (``inf`` where k̂ is too large),
        ``{name}_iwae_delta_stderr`` (the delta-method error, whatever k̂),
        ``{name}_pareto_k``, ``{name}_ess``; and ``log_px``,
        ``log_px_stderr``, ``log_px_method`` (the proposal used, a str),
        ``log_px_pareto_k``, ``log_px_flagged`` (bool), and each gap with its
        ``_stderr``.
    point_index : list of int
    """

    rows: list[MethodResult]
    gaps: dict[str, dict[str, float]]
    convergence: ConvergenceReport
    per_point: dict[str, list]
    point_index: list[int]
    nuts: MCMCResult = field(repr=False)
    posteriors: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.convergence.converged

    @property
    def log_px_sources(self) -> dict[str, int]:
        """How many points took log p^(x) from each proposal."""
        sources: dict[str, int] = {}
        for name in self.per_point["log_px_method"]:
            sources[name] = sources.get(name, 0) + 1
        return sources

    @property
    def log_px_method(self) -> str:
        """The proposals that gave log p^(x), with their point counts, e.g. ``"flow (9), encoder (1)"``."""
        ranked = sorted(self.log_px_sources.items(), key=lambda item: -item[1])
        return ", ".join(f"{name} ({count})" for name, count in ranked)

    @property
    def flagged_points(self) -> list[int]:
        """Labels of the points whose log p^(x) no proposal estimates trustworthily."""
        return [point for point, flagged in zip(self.point_index, self.per_point["log_px_flagged"])
                if flagged]

    def table(self) -> str:
        """A plain-text table of every method, the gaps, and a convergence warning if any."""
        def cell(value: float | None, digits: int = 2) -> str:
            return "—" if value is None else f"{value:.{digits}f}"

        def share(value: float | None) -> str:
            return "—" if value is None else f"{100 * value:.0f}%"

        lines = [f"{len(self.point_index)} points; nats per point; distances against NUTS",
                 f"{'method':<15}{'ELBO':>12}{'IWAE':>12}{'k̂>0.7':>8}{'mean err/sd':>13}{'sd ratio':>10}"
                 f"{'energy dist':>13}{'time s':>9}"]
        for row in self.rows:
            lines.append(
                f"{row.name:<15}{cell(row.elbo):>12}{cell(row.iwae):>12}{share(row.flagged_share):>8}"
                f"{cell(row.mean_error_sd, 3):>13}{cell(row.sd_ratio, 3):>10}"
                f"{cell(row.energy_distance, 4):>13}{row.wall_time:>9.1f}")
        lines.append("k̂>0.7: share of points whose IWAE importance weights have Pareto k̂ above "
                     "the threshold (their error bars cannot be trusted)")
        if any(row.name == AIS for row in self.rows):
            lines.append("ais: log p(x) by annealed importance sampling (IWAE column; its share: "
                         "points whose chains' weights are too uneven for an error bar)")
        for name, gap in self.gaps.items():
            mc = ("unknown (a flagged point's log p(x) has no trustworthy error)"
                  if not math.isfinite(gap["mc_stderr"]) else f"{gap['mc_stderr']:.3f}")
            lines.append(f"{name} gap: mean {gap['mean']:.3f} nats; Monte Carlo error of the mean "
                         f"± {mc}; spread across points: sd {gap['spread']:.3f}")
        lines.append(f"log p(x) per point: the trustworthy estimate with the smallest error, "
                     f"from: {self.log_px_method}")
        flagged = self.flagged_points
        lines.append(f"flagged points (no proposal with k̂ <= 0.7 that the others do not contradict): "
                     f"{len(flagged)} of {len(self.point_index)}"
                     + (f": {', '.join(map(str, flagged))}" if flagged else ""))
        if not self.converged:
            lines.append("WARNING: NUTS did not converge; the distances to its draws are not "
                         "trustworthy:")
            lines.extend(f"  {reason}" for reason in self.convergence.reasons)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain Python values; non-finite numbers become None (valid JSON)."""
        return json_safe({
            "rows": [asdict(row) for row in self.rows],
            "gaps": self.gaps,
            "log_px_method": self.log_px_method,
            "log_px_sources": self.log_px_sources,
            "flagged_points": self.flagged_points,
            "converged": self.converged,
            "convergence": self.convergence.to_dict(),
            "per_point": self.per_point,
            "point_index": self.point_index,
            "nuts_config": asdict(self.nuts.config),
        })

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


def guide_samples(guide: Any, x: torch.Tensor, num_samples: int,
                  structure: ProgramStructure | None = None) -> torch.Tensor:
    """Draws of the continuous latent sites from a guide, flat per point.

    Parameters
    ----------
    guide : callable
        A guide program ``guide(x)``.
    x : Tensor, shape (num_points, data_dim)
    num_samples : int
    structure : ProgramStructure, optional
        Which sites to collect and where the particle plate goes (default:
        the guide's own ``structure`` attribute, else the site ``"z"``).

    Returns
    -------
    Tensor, shape (num_samples, num_points, latent_dim)
        Every continuous site's value (on its support), concatenated in
        program order, as :attr:`MCMCResult.samples <ppl_vae.inference.mcmc.MCMCResult>` holds them.
    """
    structure = structure or getattr(getattr(guide, "__self__", None), "structure", None)
    particle_dim = structure.particle_dim if structure is not None else -2
    with torch.no_grad(), pyro.plate(PARTICLES, num_samples, dim=particle_dim):
        trace = poutine.trace(guide).get_trace(x)
    if structure is None:
        return trace.nodes["z"]["value"]
    values = {site.name: trace.nodes[site.name]["value"] for site in structure.continuous}
    return flatten_latents(values, structure).reshape(num_samples, len(x), -1)


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Unbiased energy distance between two samples per point.

    Parameters
    ----------
    a : Tensor, shape (n, num_points, dim)
    b : Tensor, shape (m, num_points, dim)

    Returns
    -------
    Tensor, shape (num_points,)
        ``2 E|A - B| - E|A - A'| - E|B - B'|``, zero in expectation when the
        distributions agree.
    """
    a, b = a.transpose(0, 1), b.transpose(0, 1)
    n, m = a.shape[1], b.shape[1]
    cross = torch.cdist(a, b).mean((-2, -1))
    within_a = torch.cdist(a, a).sum((-2, -1)) / (n * (n - 1))
    within_b = torch.cdist(b, b).sum((-2, -1)) / (m * (m - 1))
    return 2 * cross - within_a - within_b


def _distances(draws: torch.Tensor, reference: torch.Tensor) -> tuple[float, float, float]:
    """Mean error in reference-sd units, sd ratio and energy distance, averaged over points."""
    ref_mean, ref_sd = reference.mean(0), reference.std(0)
    mean_error = ((draws.mean(0) - ref_mean).abs() / ref_sd).mean()
    sd_ratio = (draws.std(0) / ref_sd).mean()
    thinned = reference[torch.linspace(0, len(reference) - 1, DISTANCE_SAMPLES).long()]
    return float(mean_error), float(sd_ratio), float(energy_distance(draws, thinned).mean())


def _gap(values: torch.Tensor, stderr: torch.Tensor) -> dict[str, float]:
    """Mean of a per-point gap, its Monte Carlo error and its spread across points, kept apart."""
    count = len(values)
    spread = float(values.std()) if count > 1 else math.nan
    return {"mean": float(values.mean()),
            "mc_stderr": float(stderr.pow(2).sum().sqrt() / count),
            "spread": spread,
            "sem_across_points": spread / math.sqrt(count)}


def _pareto_k(estimate: Estimate) -> torch.Tensor:
    """k̂ per point, float64; NaN where the estimate has none (AIS over fewer than 25 chains)."""
    if estimate.pareto_k is None:
        return torch.full_like(estimate.per_point, math.nan, dtype=torch.float64)
    return estimate.pareto_k.double()


def choose_log_px(estimates: dict[str, Estimate], fallback: str = DEFENSIVE) -> dict[str, Any]:
    """Per point, the trustworthy, uncontradicted estimate with the smallest standard error.

    An estimate is trustworthy where its k̂ is below the threshold (finite
    ``stderr``). It is *contradicted* where another proposal's estimate lies
    above it by more than :data:`DISAGREE_Z` combined errors: every one of
    them estimates the same p(x) without bias, and heavy-tailed ones err low,
    so a much higher value means this proposal missed mass, typically a
    second posterior mode it never visits, which its own weights (and k̂)
    cannot show. Where no estimate qualifies, the ``fallback``'s value is
    reported, flagged, with an infinite error.

    Parameters
    ----------
    estimates : dict of str to Estimate
        IWAE estimates of the same points under different proposals,
        ``fallback`` among them.
    fallback : str

    Returns
    -------
    dict with ``log_px``, ``stderr``, ``pareto_k`` (Tensor, shape (num_points,)),
    ``method`` (list of str) and ``flagged`` (Tensor of bool)
    """
    names = list(estimates)
    values = torch.stack([estimates[name].per_point.double() for name in names])
    stderr = torch.stack([estimates[name].stderr.double() for name in names])  # inf where flagged
    delta = torch.stack([estimates[name].delta_stderr.double() for name in names])
    excess = values[None, :, :] - values[:, None, :]  # [j, l, i]: estimate l above estimate j
    contradicted = (excess > DISAGREE_Z * torch.hypot(stderr[:, None, :], delta[None, :, :])).any(1)
    usable = torch.isfinite(stderr) & ~contradicted
    best = torch.where(usable, stderr, math.inf).argmin(0)[None]
    flagged = ~usable.gather(0, best).squeeze(0)
    spare = names.index(fallback)
    pick = torch.where(flagged, spare, best.squeeze(0))[None]
    k = torch.stack([_pareto_k(estimates[name]) for name in names])
    dtype = estimates[fallback].per_point.dtype
    return {"log_px": values.gather(0, pick).squeeze(0).to(dtype),
            "stderr": torch.where(flagged, math.inf, stderr.gather(0, pick).squeeze(0)).to(dtype),
            "pareto_k": k.gather(0, pick).squeeze(0),
            "method": [names[i] for i in pick.squeeze(0).tolist()],
            "flagged": flagged}


@keeps_global_rng
def compare_posteriors(model: Any, x: torch.Tensor, config: CompareConfig = CompareConfig(),
                       point_index: Sequence[int] | None = None, guide: Any = None) -> Comparison:
    """Run every method on the points ``x`` and compare them with NUTS.

    Parameters
    ----------
    model : ProbabilisticModel or callable or Program
        A trained model object (VAE, LinearGaussian, a subclass), or a Pyro
        program ``model(x)`` whose local latent sites lie in a plate over the
        rows of ``x``, or either compiled; it is not changed, and it is read
        (traced) once for all the methods. Every method covers all continuous
        latent sites jointly (one flat vector per point, each site on its
        support); enumerated discrete sites are summed out.
    x : Tensor, shape (num_points, data_dim)
        The data points, binarized already if the model was trained on binary data.
    config : CompareConfig
    point_index : sequence of int, optional
        Labels of the points for reports (e.g. their rows in the test set).
    guide : callable, optional
        The amortized guide q(z | x), reported as ``encoder`` (default: the
        model object's own; required with a plain function).

    Returns
    -------
    Comparison

    Examples
    --------
    Settings small enough to see the output's parts (far too small for its
    numbers: the NUTS reference has not converged, and every report says so):

    >>> import pyro
    >>> import torch
    >>> from ppl_vae import VAE
    >>> from ppl_vae.evaluation import CompareConfig, compare_posteriors
    >>> from ppl_vae.inference import NUTSConfig
    >>> pyro.set_rng_seed(0)
    >>> vae = VAE(data_dim=64, latent_dim=2, hidden_dims=(32,))
    >>> x = torch.bernoulli(torch.full((2, 64), 0.3))
    >>> config = CompareConfig(elbo_samples=50, iwae_samples=100, fit_max_steps=100,
    ...                        methods=("encoder", "local_gaussian"),
    ...                        nuts=NUTSConfig(num_chains=2, warmup_steps=20, num_samples=20))
    >>> comparison = compare_posteriors(vae, x, config)
    >>> [row.name for row in comparison.rows]
    ['nuts', 'encoder', 'local_gaussian']
    >>> sorted(comparison.gaps)                   # Cremer et al.'s split of the encoder's gap
    ['amortization', 'approximation']
    >>> comparison.converged
    False
    >>> print(comparison.table())                 # doctest: +ELLIPSIS
    2 points; nats per point; distances against NUTS
    ...
    WARNING: NUTS did not converge; the distances to its draws are not trustworthy:
    ...
    """
    program = resolve(model, x, guide, "compare_posteriors")  # read once, handed to every method
    own_guide = program.guide_program
    if own_guide is None:
        raise ConfigError("compare_posteriors needs the amortized guide q(z | x) the model was "
                          "trained with: pass guide=")
    structure = program.require(x, "compare_posteriors", per_point=False)
    index = list(point_index) if point_index is not None else list(range(len(x)))
    started = time.perf_counter()
    nuts = sample_posterior(program, x, config.nuts, index)
    reference = nuts.samples.flatten(0, 1)
    convergence = check_convergence(nuts.to_inference_data())
    rows = [MethodResult("nuts", None, None, None, None, 0.0, 1.0, None,
                         time.perf_counter() - started)]

    guides: dict[str, Any] = {"encoder": own_guide}
    fit_times = {"encoder": 0.0}
    if "local_gaussian" in config.methods:
        fit = fit_local_gaussian(program, x, max_steps=config.fit_max_steps, seed=config.seed)
        guides["local_gaussian"], fit_times["local_gaussian"] = fit.posterior, fit.wall_time
    if "flow" in config.methods:
        fit = fit_flow_posterior(program, x, start=guides["local_gaussian"], num_flows=config.num_flows,
                                 max_steps=config.fit_max_steps, seed=config.seed, num_particles=8)
        guides["flow"], fit_times["flow"] = fit.posterior, fit.wall_time

    pyro.set_rng_seed(config.seed)
    elbos: dict[str, Estimate] = {}
    bounds: dict[str, Estimate] = {}
    for name, fitted in guides.items():
        proposal = program if name == "encoder" else program.with_guide(fitted)
        evaluated = time.perf_counter()
        elbos[name] = elbo(proposal, x, config.elbo_samples)
        bounds[name] = iwae(proposal, x, config.iwae_samples)
        program_of = own_guide if name == "encoder" else fitted.guide
        draws = guide_samples(program_of, x, DISTANCE_SAMPLES, structure)
        mean_error, sd_ratio, distance = _distances(draws, reference)
        rows.append(MethodResult(
            name, elbos[name].mean, elbos[name].mean_stderr, bounds[name].mean,
            bounds[name].mean_stderr, mean_error, sd_ratio, distance,
            fit_times[name] + time.perf_counter() - evaluated))

    for row in rows[1:]:
        row.pareto_k_max = float(bounds[row.name].pareto_k.max())
        row.flagged_share = bounds[row.name].flagged_share

    # Among trustworthy estimates the smallest standard error marks the best proposal (the
    # largest estimate would favour a noisy over-estimate from a poor one). The defensive
    # mixture, whose weights are bounded, is a candidate too and the cross-check on all points.
    q_star = guides.get("local_gaussian")
    mixture = defensive_mixture(program, x, *((q_star.loc.detach(), q_star.scale.detach())
                                              if q_star is not None else ()), seed=config.seed)
    candidates = bounds | {DEFENSIVE: iwae(program, x, config.iwae_samples, guide=mixture)}
    if config.ais is not None:
        annealed = time.perf_counter()
        candidates[AIS] = ais(program, x, config=config.ais)
        rows.append(MethodResult(AIS, None, None, candidates[AIS].mean, candidates[AIS].mean_stderr,
                                 None, None, None, time.perf_counter() - annealed,
                                 flagged_share=candidates[AIS].flagged_share))
    chosen = choose_log_px(candidates)
    log_px, log_px_stderr = chosen["log_px"], chosen["stderr"]
    gaps, per_point = {}, {}
    for name in guides:
        per_point |= {f"{name}_elbo": elbos[name].per_point.tolist(),
                      f"{name}_elbo_stderr": elbos[name].stderr.tolist()}
    for name in candidates:
        per_point |= {f"{name}_iwae": candidates[name].per_point.tolist(),
                      f"{name}_iwae_stderr": candidates[name].stderr.tolist(),
                      f"{name}_iwae_delta_stderr": candidates[name].delta_stderr.tolist(),
                      f"{name}_pareto_k": _pareto_k(candidates[name]).tolist(),
                      f"{name}_ess": candidates[name].ess.tolist()}
    per_point |= {"log_px": log_px.tolist(), "log_px_stderr": log_px_stderr.tolist(),
                  "log_px_method": chosen["method"], "log_px_pareto_k": chosen["pareto_k"].tolist(),
                  "log_px_flagged": chosen["flagged"].tolist()}
    if "local_gaussian" in elbos:
        best_gaussian, encoder = elbos["local_gaussian"], elbos["encoder"]
        parts = {"approximation": (log_px - best_gaussian.per_point,
                                   torch.hypot(log_px_stderr, best_gaussian.stderr)),
                 "amortization": (best_gaussian.per_point - encoder.per_point,
                                  torch.hypot(best_gaussian.stderr, encoder.stderr))}
        for name, (values, stderr) in parts.items():
            gaps[name] = _gap(values, stderr)
            per_point[f"{name}_gap"] = values.tolist()
            per_point[f"{name}_gap_stderr"] = stderr.tolist()
    return Comparison(rows, gaps, convergence, per_point, index, nuts,
                      {k: v for k, v in guides.items() if k != "encoder"})


