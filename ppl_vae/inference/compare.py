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

with log p^(x) the IWAE estimate of the method whose importance weights
vary least (the smallest Monte Carlo standard error: the best proposal). A comparison whose NUTS
run has not converged is flagged in every report.
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
from ppl_vae.inference.diagnostics import ConvergenceReport, check_convergence
from ppl_vae.inference.likelihood import Estimate, elbo, iwae
from ppl_vae.inference.mcmc import MCMCResult, NUTSConfig, sample_posterior
from ppl_vae.inference.posteriors import fit_flow_posterior, fit_local_gaussian
from ppl_vae.models.base import ProbabilisticModel, check_batch, check_positive_int

METHODS = ("encoder", "local_gaussian", "flow")

#: Samples per point drawn from each q for the distances to the NUTS draws.
DISTANCE_SAMPLES = 1000


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
    seed : int
    """

    elbo_samples: int = 1000
    iwae_samples: int = 5000
    nuts: NUTSConfig = field(default_factory=NUTSConfig)
    methods: tuple[str, ...] = METHODS
    fit_max_steps: int = 5000
    num_flows: int = 2
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


@dataclass
class Comparison:
    """The table, the gap decomposition and the NUTS diagnostics.

    Attributes
    ----------
    rows : list of MethodResult
    gaps : dict
        ``approximation`` and ``amortization``: mean over points and its
        standard error across points, in nats.
    log_px_method : str
        The method whose IWAE bound serves as log p^(x).
    convergence : ConvergenceReport
    per_point : dict of list of float
        Each method's ELBO and IWAE per point, and log p^(x).
    point_index : list of int
    """

    rows: list[MethodResult]
    gaps: dict[str, dict[str, float]]
    log_px_method: str
    convergence: ConvergenceReport
    per_point: dict[str, list[float]]
    point_index: list[int]
    nuts: MCMCResult = field(repr=False)
    posteriors: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.convergence.converged

    def table(self) -> str:
        """A plain-text table of every method, the gaps, and a convergence warning if any."""
        def cell(value: float | None, digits: int = 2) -> str:
            return "—" if value is None else f"{value:.{digits}f}"

        lines = [f"{len(self.point_index)} points; nats per point; distances against NUTS",
                 f"{'method':<15}{'ELBO':>12}{'IWAE':>12}{'mean err/sd':>13}{'sd ratio':>10}"
                 f"{'energy dist':>13}{'time s':>9}"]
        for row in self.rows:
            lines.append(
                f"{row.name:<15}{cell(row.elbo):>12}{cell(row.iwae):>12}"
                f"{cell(row.mean_error_sd, 3):>13}{cell(row.sd_ratio, 3):>10}"
                f"{cell(row.energy_distance, 4):>13}{row.wall_time:>9.1f}")
        for name, gap in self.gaps.items():
            lines.append(f"{name} gap: {gap['mean']:.3f} ± {gap['stderr']:.3f} nats")
        lines.append(f"log p(x) estimated by the IWAE bound of: {self.log_px_method}")
        if not self.converged:
            lines.append("WARNING: NUTS did not converge; the distances to its draws are not "
                         "trustworthy:")
            lines.extend(f"  {reason}" for reason in self.convergence.reasons)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [asdict(row) for row in self.rows],
            "gaps": self.gaps,
            "log_px_method": self.log_px_method,
            "converged": self.converged,
            "convergence": self.convergence.to_dict(),
            "per_point": self.per_point,
            "point_index": self.point_index,
            "nuts_config": asdict(self.nuts.config),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def guide_samples(guide: Any, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Draws of ``"z"`` from a guide, shape (num_samples, num_points, latent_dim)."""
    with torch.no_grad(), pyro.plate("particles", num_samples, dim=-2):
        trace = poutine.trace(guide).get_trace(x)
    return trace.nodes["z"]["value"]


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


def _gap(values: torch.Tensor) -> dict[str, float]:
    return {"mean": float(values.mean()),
            "stderr": float(values.std() / math.sqrt(len(values))) if len(values) > 1 else math.nan}


def compare_posteriors(model: ProbabilisticModel, x: torch.Tensor,
                       config: CompareConfig = CompareConfig(),
                       point_index: Sequence[int] | None = None) -> Comparison:
    """Run every method on the points ``x`` and compare them with NUTS.

    Parameters
    ----------
    model : ProbabilisticModel
        A trained VAE (or LinearGaussian); it is not changed.
    x : Tensor, shape (num_points, data_dim)
        The data points, binarized already if the model was trained on binary data.
    config : CompareConfig
    point_index : sequence of int, optional
        Labels of the points for reports (e.g. their rows in the test set).

    Returns
    -------
    Comparison
    """
    check_batch(x, model.data_dim, "compare_posteriors")
    index = list(point_index) if point_index is not None else list(range(len(x)))
    started = time.perf_counter()
    nuts = sample_posterior(model, x, config.nuts, index)
    reference = nuts.samples.flatten(0, 1)
    convergence = check_convergence(nuts.to_inference_data())
    rows = [MethodResult("nuts", None, None, None, None, 0.0, 1.0, None,
                         time.perf_counter() - started)]

    guides: dict[str, Any] = {"encoder": model.guide}
    fit_times = {"encoder": 0.0}
    if "local_gaussian" in config.methods:
        fit = fit_local_gaussian(model, x, max_steps=config.fit_max_steps, seed=config.seed)
        guides["local_gaussian"], fit_times["local_gaussian"] = fit.posterior, fit.wall_time
    if "flow" in config.methods:
        fit = fit_flow_posterior(model, x, start=guides["local_gaussian"], num_flows=config.num_flows,
                                 max_steps=config.fit_max_steps, seed=config.seed, num_particles=8)
        guides["flow"], fit_times["flow"] = fit.posterior, fit.wall_time

    pyro.set_rng_seed(config.seed)
    elbos: dict[str, Estimate] = {}
    bounds: dict[str, Estimate] = {}
    for name, posterior in guides.items():
        guide = posterior if name == "encoder" else posterior.guide
        evaluated = time.perf_counter()
        elbos[name] = elbo(model, x, config.elbo_samples, guide=None if name == "encoder" else posterior)
        bounds[name] = iwae(model, x, config.iwae_samples, guide=None if name == "encoder" else posterior)
        draws = guide_samples(guide, x, DISTANCE_SAMPLES)
        mean_error, sd_ratio, distance = _distances(draws, reference)
        rows.append(MethodResult(
            name, elbos[name].mean, elbos[name].mean_stderr, bounds[name].mean,
            bounds[name].mean_stderr, mean_error, sd_ratio, distance,
            fit_times[name] + time.perf_counter() - evaluated))

    # The most reliable IWAE estimate (smallest standard error) has the best proposal;
    # the largest one would favour a noisy over-estimate from a poor proposal.
    log_px_method = min(bounds, key=lambda name: bounds[name].mean_stderr)
    log_px = bounds[log_px_method].per_point
    gaps = {}
    if "local_gaussian" in elbos:
        best_gaussian = elbos["local_gaussian"].per_point
        gaps["approximation"] = _gap(log_px - best_gaussian)
        gaps["amortization"] = _gap(best_gaussian - elbos["encoder"].per_point)
    per_point = {f"{name}_elbo": e.per_point.tolist() for name, e in elbos.items()}
    per_point |= {f"{name}_iwae": b.per_point.tolist() for name, b in bounds.items()}
    per_point["log_px"] = log_px.tolist()
    return Comparison(rows, gaps, log_px_method, convergence, per_point, index, nuts,
                      {k: v for k, v in guides.items() if k != "encoder"})
