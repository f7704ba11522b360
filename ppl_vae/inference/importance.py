"""Per-data-point estimates of log p(x): the ELBO, the importance-weighted bound, naive MC.

All of them come from the log importance weights of the model's Pyro program

    log w_k = log p(x, z_k) - log q(z_k | x),     z_k ~ q(z | x),

read from traces of the model and the guide (:mod:`ppl_vae.inference.program`):
every latent site of the data plate is drawn jointly, discrete sites the model
enumerates are summed out exactly, and the estimators accept a ppl_vae model,
a subclass, or two plain functions ``model(x)`` and ``guide(x)``. They are
computed here, per point, rather than with Pyro's ``RenyiELBO``, which is not
a correct importance-weighted bound for local latents under subsampling.

* ELBO:  mean_k log w_k                          (a lower bound on log p(x))
* IWAE:  log (1/K) sum_k w_k                     (a tighter bound, -> log p(x) as K grows)
* naive: log (1/K) sum_k p(x | z_k), z_k ~ p(z)   (the prior as proposal)

For the library's Gaussian-latent programs the weights are also written out
directly (same draws and densities, no tracing); that path is taken only when
:func:`~ppl_vae.inference.objectives.has_direct_elbo` finds, by tracing the
programs, that they compute what the transcription computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyro
import torch
from torch.distributions import Distribution

from ppl_vae.errors import DataError
from ppl_vae.inference.objectives import has_direct_elbo, likelihood_log_prob
from ppl_vae.inference.program import (
    ProgramStructure,
    check_observed_support,
    inspect_program,
    program_log_joint,
    program_log_terms,
    program_pair,
    refuse_scaled,
    unflatten_latents,
)
from ppl_vae.inference.psis import is_reliable, trusted_stderr
from ppl_vae.inference.streaming import RunningLogMeanExp, RunningMean
from ppl_vae.models.base import ProbabilisticModel, check_points, check_positive_int

#: Largest number of decoder outputs (particles x points x data_dim) held at once.
#: 2^21 (8 MiB of float32 per tensor) is the fastest on CPUs, where passes that stay in
#: cache beat larger ones (IWAE K = 5,000 on mnist5k: 2^21 about 1.9x faster than 2^24);
#: GPUs want large passes and use 2^24.
MAX_CHUNK_ELEMENTS = 2**21
MAX_CHUNK_ELEMENTS_CUDA = 2**24


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate per data point.

    Attributes
    ----------
    per_point : Tensor, shape (num_points,)
        The estimate for each data point.
    stderr : Tensor, shape (num_points,)
        Its Monte Carlo standard error; for an importance-sampling estimate,
        ``inf`` where the Pareto k̂ exceeds 0.7 (no error bar can be trusted
        there; ``delta_stderr`` keeps the delta-method value).
    num_samples : int
        Number of importance samples K per point.
    pareto_k : Tensor, shape (num_points,), optional
        Pareto k̂ of the importance weights (:mod:`ppl_vae.inference.psis`);
        None for plain averages (the ELBO), which have no weights to diagnose.
    ess : Tensor, shape (num_points,), optional
        Effective sample size of the weights, ``(sum w)^2 / sum w^2``; None for averages.
    delta_stderr : Tensor, shape (num_points,), optional
        The delta-method standard error before the k̂ rule; None for averages.
    reliable : Tensor of bool, shape (num_points,), optional
        Where the error bar can be trusted, for estimators whose rule is not
        k̂ alone (AIS over a few chains: :func:`~ppl_vae.inference.ais.ais`);
        when given, :attr:`flagged` is its negation.
    """

    per_point: torch.Tensor
    stderr: torch.Tensor
    num_samples: int
    pareto_k: torch.Tensor | None = None
    ess: torch.Tensor | None = None
    delta_stderr: torch.Tensor | None = None
    reliable: torch.Tensor | None = None

    @property
    def mean(self) -> float:
        """Average over data points."""
        return float(self.per_point.mean())

    @property
    def mean_stderr(self) -> float:
        """Monte Carlo standard error of :attr:`mean` (not the spread across points)."""
        return float(self.stderr.pow(2).sum().sqrt() / self.stderr.numel())

    @property
    def flagged(self) -> torch.Tensor:
        """Bool, shape (num_points,): k̂ above 0.7 (stricter for K < 2,155; see
        :func:`~ppl_vae.inference.psis.pareto_k_threshold`) or not computable: not to be trusted.

        All False for an average without importance weights.
        """
        if self.reliable is not None:
            return ~self.reliable
        if self.pareto_k is None:
            return torch.zeros_like(self.per_point, dtype=torch.bool)
        return ~is_reliable(self.pareto_k, self.num_samples)

    @property
    def flagged_share(self) -> float:
        """Share of :attr:`flagged` points, in [0, 1]."""
        return float(self.flagged.double().mean())


def collect_estimate(values: list[torch.Tensor], errors: list[torch.Tensor],
                     diagnostics: list[dict[str, torch.Tensor]], num_samples: int) -> Estimate:
    """One :class:`Estimate` from the accumulators' results of every chunk of points.

    With importance-weight diagnostics the standard error follows the k̂ rule
    of :func:`ppl_vae.inference.psis.trusted_stderr`.
    """
    per_point, delta_stderr = torch.cat(values), torch.cat(errors)
    if not diagnostics or not diagnostics[0]:
        return Estimate(per_point, delta_stderr, num_samples)
    k = torch.cat([d["pareto_k"] for d in diagnostics]).to(per_point.device)
    ess = torch.cat([d["ess"] for d in diagnostics]).to(per_point.dtype)
    return Estimate(per_point, trusted_stderr(delta_stderr, k, num_samples), num_samples, k, ess,
                    delta_stderr)


def check_data(model: Any, x: Any, where: str) -> None:
    """Check data points before scoring: the model's own checks, or generic ones for a function.

    Raises
    ------
    DataError
        If ``x`` is not a non-empty floating-point tensor with finite values
        (plus shape, device and range checks for a ppl_vae model).
    """
    if isinstance(model, ProbabilisticModel):
        check_points(model, x, where)
        return
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] == 0:
        raise DataError(f"{where} expects a non-empty torch.Tensor of data points (rows); got "
                        f"{type(x).__name__ if not isinstance(x, torch.Tensor) else tuple(x.shape)}")
    if not x.is_floating_point():
        raise DataError(f"{where} expects a floating-point tensor; got {x.dtype}. Convert it with x.float()")
    if x.is_meta:
        raise DataError(f"{where}: the data are on the meta device (shapes without values); "
                        "load real values, e.g. x.to('cpu') after filling them")
    if not bool(torch.isfinite(x).all()):
        raise DataError(f"{where}: the data hold NaN or infinite values; remove or impute them")


def check_per_point(model: Any, program: Callable[..., None], structure: ProgramStructure,
                    x: torch.Tensor, where: str) -> None:
    """What a per-point method needs of a program beyond :func:`inspect_program`, checked once per call.

    No site scaled by ``poutine.scale`` (the scale of a subsampled data plate
    is undone instead), and, for a program that is not a ppl_vae model (whose
    own checks cover it), data inside the observed sites' supports.

    Raises
    ------
    ConfigError
        If a site is scaled.
    DataError
        If an observed value lies outside its site's support.
    """
    refuse_scaled(structure, where)
    if not isinstance(model, ProbabilisticModel):
        check_observed_support(program, x, where)


def log_joint(model: Any, x: torch.Tensor, z: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(x, z) per data point for given latent values, discrete latents summed out.

    Read from the model's program with the latent sites conditioned; for the
    library's Gaussian-latent programs the same density is computed directly
    (``prior(x).log_prob(z) + decode(z).log_prob(x)``, checked against the
    trace), which samplers calling it thousands of times prefer.

    Parameters
    ----------
    model : ProbabilisticModel or callable
    x : Tensor, shape (num_points, data_dim)
    z : Tensor, shape (..., num_points, latent_dim), or dict of str to Tensor
        The value of the latent site (models with one continuous latent site),
        or of every continuous latent site, each ``(..., num_points, *event_shape)``.

    Returns
    -------
    Tensor, shape (..., num_points)
    """
    if not isinstance(z, dict) and has_direct_elbo(model, x):
        return model.prior(x).log_prob(z) + model.decode(z).log_prob(x)
    program, guide = program_pair(model)
    structure = inspect_program(program, guide, x, need_guide=False)
    values = z if isinstance(z, dict) else unflatten_latents(z, structure)
    first = values[structure.continuous[0].name]
    lead = first.shape[:first.dim() - len(structure.continuous[0].event_shape) - 1]
    rows = x.repeat(lead.numel(), *([1] * (x.dim() - 1)))
    flat = {name: value.reshape(-1, *value.shape[len(lead) + 1:]) for name, value in values.items()}
    return program_log_joint(program, rows, flat, structure).reshape(*lead, x.shape[0])


def log_density_terms(model: Any, guide: Callable[..., None] | None, x: torch.Tensor,
                      num_samples: int) -> dict[str, torch.Tensor]:
    """Each sample site's share of ``log p(x, z_k) - log q(z_k | x)``, with ``z_k ~ q(z | x)``.

    An observed site contributes ``log p(x | z_k)``; a latent site contributes
    ``log p(z_k) - log q(z_k | x)``, whose negative mean is a Monte Carlo KL.

    Parameters
    ----------
    model : ProbabilisticModel or callable
        A model, or a Pyro program taking ``x`` with its sites inside a plate over ``x``.
    guide : callable, optional
        The guide (default: the model object's).
    x : Tensor, shape (batch, data_dim)
    num_samples : int
        Number of samples K drawn in one vectorized pass.

    Returns
    -------
    dict of str to Tensor, each shape (num_samples, batch)
        Keyed by site name (``"x"`` and ``"z"`` for ppl_vae models).
    """
    setup = _setup(model, x, num_samples, guide, "log_density_terms")
    with torch.no_grad(), pyro.validation_enabled(False):
        terms = program_log_terms(setup.program, _row_guide(setup.guide, slice(None)), x, num_samples,
                                  setup.structure, scaled=False)
    if setup.structure.enumerated:
        return {"log_likelihood": terms.log_likelihood,
                "latent": terms.log_weights - terms.log_likelihood}
    return terms.sites


def log_importance_weights(model: Any, guide: Callable[..., None] | None, x: torch.Tensor,
                           num_samples: int) -> torch.Tensor:
    """Log importance weights ``log p(x, z_k) - log q(z_k | x)`` with ``z_k ~ q(z | x)``.

    Parameters
    ----------
    model : ProbabilisticModel or callable
    guide : callable, optional
        The guide (default: the model object's), in any form :func:`elbo` takes.
    x : Tensor, shape (batch, data_dim)
    num_samples : int
        Number of samples K drawn in one vectorized pass.

    Returns
    -------
    Tensor, shape (num_samples, batch)
    """
    setup = _setup(model, x, num_samples, guide, "log_importance_weights")
    with torch.no_grad(), pyro.validation_enabled(False):
        return program_log_terms(setup.program, _row_guide(setup.guide, slice(None)), x, num_samples,
                                 setup.structure, scaled=False).log_weights


@torch.no_grad()
def _direct_log_weights(model: ProbabilisticModel, x: torch.Tensor, num_samples: int,
                        posterior: Distribution | None = None) -> torch.Tensor:
    """:func:`log_importance_weights` of the model's own programs, without tracing them.

    For models whose programs :func:`~ppl_vae.inference.objectives.has_direct_elbo`
    transcribes: the same draws (z = q.rsample((K,))) and densities as the Pyro
    traces, at a fraction of the per-pass cost. ``posterior`` is
    ``model.guide_distribution(x)`` when the caller already has it (the
    streaming estimators compute it once per block of points, not once per
    piece of samples: the encoder was a fifth of an IWAE pass).
    """
    if posterior is None:
        posterior = model.guide_distribution(x)
    z = posterior.rsample((num_samples,))
    return (likelihood_log_prob(model.decode(z), x) + model.prior(x).log_prob(z)
            - posterior.log_prob(z))


def _chunks(x: torch.Tensor, num_samples: int, per_point: int):
    """Yield ``(rows, particles)`` pieces so that no pass holds more than MAX_CHUNK_ELEMENTS.

    ``per_point`` is the number of values one sample of one point makes (the
    larger of the data and latent sizes).
    """
    limit = MAX_CHUNK_ELEMENTS_CUDA if x.device.type == "cuda" else MAX_CHUNK_ELEMENTS
    rows = max(1, min(x.shape[0], limit // per_point))
    for start in range(0, x.shape[0], rows):
        batch = x[start:start + rows]
        particles = max(1, min(num_samples, limit // (per_point * batch.shape[0])))
        yield slice(start, start + batch.shape[0]), [particles] * (num_samples // particles) + (
            [num_samples % particles] if num_samples % particles else []
        )


def _row_guide(guide: Callable[..., None] | None, rows: slice) -> Callable[..., None] | None:
    """The guide for some rows: a fitted per-point guide's ``restrict(rows)``, else itself."""
    restrict = getattr(guide, "restrict", None)
    return restrict(rows) if restrict is not None else guide


def _guide_object(guide: Any) -> Any:
    """A fitted per-point posterior passed as its ``guide`` method, as the object itself."""
    owner = getattr(guide, "__self__", None)
    return owner if hasattr(owner, "restrict") else guide


def _guide_callable(guide: Any) -> Callable[..., None] | None:
    """A guide argument as a program: a per-point guide object's ``guide`` method, or itself."""
    if guide is None or not hasattr(guide, "restrict"):
        return guide
    return guide.guide


@dataclass(frozen=True)
class _Setup:
    program: Callable[..., None]
    guide: Any
    structure: ProgramStructure
    direct: bool
    per_point: int


def _setup(model: Any, x: torch.Tensor, num_samples: int, guide: Any, where: str,
           prior_proposal: bool = False, proper_prior: bool = True) -> _Setup:
    check_data(model, x, where)
    check_positive_int(num_samples, "num_samples")
    guide = _guide_object(guide)
    program, own_guide = program_pair(model, _guide_callable(guide))
    proposal = None if prior_proposal else (guide if guide is not None else own_guide)
    if not prior_proposal and proposal is None:
        raise DataError(f"{where} needs a guide: pass guide=... (a Pyro program over the "
                        "model's latent sites)")
    # inspect_program traces the first two rows; a per-point guide restricted to them
    look = _row_guide(guide, slice(0, 2)) if hasattr(guide, "restrict") else own_guide
    structure = inspect_program(program, look, x, need_guide=not prior_proposal,
                                proper_prior=proper_prior)
    check_per_point(model, program, structure, x, where)
    direct = guide is None and not prior_proposal and has_direct_elbo(model, x)
    per_point = max(x[0].numel(), structure.constrained_numel, 1)
    return _Setup(program, proposal, structure, direct, per_point)


def _weights_of_rows(setup: _Setup, model: Any, batch: torch.Tensor,
                     rows: slice) -> Callable[[int], torch.Tensor]:
    """``k -> log w`` of shape ``(k, len(batch))`` for one block of points.

    On the direct path the guide's distribution for the block is computed
    once here and every piece of samples draws from it, in the same order.
    """
    if setup.direct:
        with torch.no_grad():
            posterior = model.guide_distribution(batch)
        return partial(_direct_log_weights, model, batch, posterior=posterior)
    guide = _row_guide(setup.guide, rows)

    def traced(num_samples: int) -> torch.Tensor:
        with torch.no_grad(), pyro.validation_enabled(False):
            return program_log_terms(setup.program, guide, batch, num_samples,
                                     setup.structure, scaled=False).log_weights

    return traced


def _estimate(model: Any, x: torch.Tensor, num_samples: int,
              accumulator: type[RunningMean | RunningLogMeanExp],
              guide: Any = None, where: str = "", prior_proposal: bool = False) -> Estimate:
    setup = _setup(model, x, num_samples, guide, where, prior_proposal)
    values, errors, diagnostics = [], [], []
    for rows, pieces in _chunks(x, num_samples, setup.per_point):
        log_weights = _weights_of_rows(setup, model, x[rows], rows)
        running = accumulator(num_samples)
        for k in pieces:
            running.update(log_weights(k))
        value, error = running.result(x.dtype)
        values.append(value)
        errors.append(error)
        diagnostics.append(running.diagnostics())
    estimate = collect_estimate(values, errors, diagnostics, num_samples)
    _check_finite(estimate.per_point, where)
    return estimate


def _check_finite(per_point: torch.Tensor, where: str) -> None:
    """Refuse log-densities that came out NaN or infinite (one host sync per estimate)."""
    bad = ~torch.isfinite(per_point)
    if bool(bad.any()):
        rows = bad.nonzero().flatten()[:5].tolist()
        raise DataError(
            f"{where}: the log-density of {int(bad.sum())} point(s) (rows {rows}) is not finite; "
            "values that far from the model's range overflow its densities. Rescale the data "
            "(e.g. to [0, 1]) or check them for outliers"
        )


def elbo(model: Any, x: torch.Tensor, num_samples: int = 1,
         guide: Callable[..., None] | None = None) -> Estimate:
    """The ELBO per data point, ``E_q[log p(x, z) - log q(z | x)]``, from K samples.

    Parameters
    ----------
    model : ProbabilisticModel or callable
        A trained model (its guide is the variational posterior), or a Pyro
        program ``model(x)`` with its latent sites inside a plate over the rows of ``x``.
    x : Tensor, shape (num_points, data_dim)
    num_samples : int
        Samples K per point (the standard error is NaN for K = 1).
    guide : callable, optional
        Another variational posterior over the model's latent sites (default
        ``model.guide``; required with a plain function); a guide for fixed
        points has a ``restrict(rows)`` method.

    Returns
    -------
    Estimate
    """
    return _estimate(model, x, num_samples, RunningMean, guide, "elbo")


def elbo_terms(model: Any, x: torch.Tensor, num_samples: int = 1,
               guide: Callable[..., None] | None = None) -> dict[str, Estimate]:
    """The ELBO's two terms per data point: reconstruction E_q[log p(x | z)] and KL(q(z | x) || p(z)).

    The reconstruction is the observed sites' log-density (averaged over the
    exact posterior of enumerated discrete latents), and ``kl`` is the Monte
    Carlo average of ``log q - log p`` over every latent site, so the ELBO is
    ``reconstruction - kl`` for the same draws.

    Parameters
    ----------
    model : ProbabilisticModel or callable
    x : Tensor, shape (num_points, data_dim)
    num_samples : int
        Samples K per point.
    guide : callable, optional
        As for :func:`elbo`.

    Returns
    -------
    dict with keys ``"reconstruction"`` and ``"kl"``, each an Estimate
    """
    setup = _setup(model, x, num_samples, guide, "elbo_terms", proper_prior=False)
    parts: dict[str, list] = {"reconstruction": [], "kl": []}
    for rows, pieces in _chunks(x, num_samples, setup.per_point):
        batch, row_guide = x[rows], _row_guide(setup.guide, rows)
        running = {"reconstruction": RunningMean(), "kl": RunningMean()}
        for k in pieces:
            with torch.no_grad(), pyro.validation_enabled(False):
                terms = program_log_terms(setup.program, row_guide, batch, k, setup.structure,
                                          scaled=False)
            running["reconstruction"].update(terms.log_likelihood)
            latent = [term for name, term in terms.sites.items() if name not in setup.structure.observed]
            running["kl"].update(-sum(latent) if latent else terms.log_likelihood - terms.log_weights)
        for name, accumulator in running.items():
            parts[name].append(accumulator.result(x.dtype))
    return {name: Estimate(torch.cat([v for v, _ in chunks]), torch.cat([e for _, e in chunks]),
                           num_samples)
            for name, chunks in parts.items()}


def iwae(model: Any, x: torch.Tensor, num_samples: int = 1000,
         guide: Callable[..., None] | None = None) -> Estimate:
    """The importance-weighted bound ``log (1/K) sum_k p(x, z_k) / q(z_k | x)`` per point.

    It rises with K towards log p(x) (Burda et al., 2016) and is the standard
    estimate of a VAE's test log-likelihood. Memory stays bounded for any K.
    The result carries the Pareto k̂ and the ESS of each point's weights
    (:mod:`ppl_vae.inference.psis`, from the same streamed pieces); where k̂
    is too large its standard error is ``inf`` and the point is ``flagged``.

    Parameters
    ----------
    model : ProbabilisticModel or callable
    x : Tensor, shape (num_points, data_dim)
    num_samples : int
        Importance samples K per point.
    guide : callable, optional
        The proposal q(z | x) (default ``model.guide``), as for :func:`elbo`.

    Returns
    -------
    Estimate
    """
    return _estimate(model, x, num_samples, RunningLogMeanExp, guide, "iwae")


def naive_prior(model: Any, x: torch.Tensor, num_samples: int = 1000) -> Estimate:
    """The naive Monte Carlo estimate log (1/K) sum_k p(x | z_k) with z_k ~ p(z).

    Its exponent is an unbiased estimate of p(x), but almost every prior draw
    explains a given image badly, so for a neural decoder the estimate is
    ruled by a few lucky draws, and a feasible K falls far short of log p(x):
    the reason the integral is called intractable (Exercise 3). The draws come
    from the model program's own prior (whatever ``prior`` a subclass defines),
    every latent site jointly; enumerated discrete latents are summed out.

    Its weights ``p(x | z_k)`` are diagnosed like any importance weights: where
    their Pareto k̂ exceeds the threshold the delta-method error understates
    the real one on most points (the few lucky draws were not drawn), so the
    standard error is reported as ``inf`` and the point is ``flagged``;
    elsewhere it is the delta-method error (on 500 replicates of a pPCA point,
    every unflagged estimate lies within 4 such errors of the exact value).

    Parameters
    ----------
    model : ProbabilisticModel or callable
    x : Tensor, shape (num_points, data_dim)
    num_samples : int
        Prior draws K per point.

    Returns
    -------
    Estimate
    """
    return _estimate(model, x, num_samples, RunningLogMeanExp, None, "naive_prior",
                     prior_proposal=True)
