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

Each estimator compiles the model once (:func:`~ppl_vae.inference.compiled.compile_program`,
or takes a :class:`~ppl_vae.inference.compiled.Program`) and draws its weights from
it: for the library's Gaussian-latent programs from the transcription
(:mod:`ppl_vae.inference.direct`: same draws and densities, no tracing), where
the compiled program found, by tracing them, that they compute the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyro
import torch

from ppl_vae.errors import DataError
from ppl_vae.inference import direct
from ppl_vae.inference.compiled import Program, check_data, resolve, row_guide
from ppl_vae.inference.program import LogDensityTerms, ProgramStructure, program_log_terms
from ppl_vae.inference.psis import is_reliable, trusted_stderr
from ppl_vae.inference.streaming import RunningLogMeanExp, RunningMean
from ppl_vae.models.base import check_positive_int

__all__ = ["Estimate", "check_data", "elbo", "elbo_terms", "iwae", "log_density_terms",
           "log_importance_weights", "log_joint", "naive_prior"]

#: Largest number of decoder outputs (particles x points x data_dim) held at once.
#: 2^21 (8 MiB of float32 per tensor) on CPUs, where passes that stay in cache beat larger
#: ones; GPUs want large passes and use 2^24 (``benchmarks/iwae_evaluation.py`` measures both).
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


def log_joint(model: Any, x: torch.Tensor, z: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(x, z) per data point for given latent values, discrete latents summed out.

    Read from the model's program with the latent sites conditioned; for the
    library's Gaussian-latent programs the same density is computed directly
    (``prior(x).log_prob(z) + decode(z).log_prob(x)``, checked against the
    trace), which samplers calling it thousands of times prefer.

    Parameters
    ----------
    model : ProbabilisticModel or callable or Program
    x : Tensor, shape (num_points, data_dim)
    z : Tensor, shape (..., num_points, latent_dim), or dict of str to Tensor
        The value of the latent site (models with one continuous latent site),
        or of every continuous latent site, each ``(..., num_points, *event_shape)``.

    Returns
    -------
    Tensor, shape (..., num_points)
    """
    return resolve(model, x, None, None).log_joint(x, z)


def log_density_terms(model: Any, guide: Callable[..., None] | None, x: torch.Tensor,
                      num_samples: int) -> dict[str, torch.Tensor]:
    """Each sample site's share of ``log p(x, z_k) - log q(z_k | x)``, with ``z_k ~ q(z | x)``.

    An observed site contributes ``log p(x | z_k)``; a latent site contributes
    ``log p(z_k) - log q(z_k | x)``, whose negative mean is a Monte Carlo KL.

    Parameters
    ----------
    model : ProbabilisticModel or callable or Program
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
    terms = setup.terms(x, num_samples)
    if setup.structure.enumerated:
        return {"log_likelihood": terms.log_likelihood,
                "latent": terms.log_weights - terms.log_likelihood}
    return terms.sites


def log_importance_weights(model: Any, guide: Callable[..., None] | None, x: torch.Tensor,
                           num_samples: int) -> torch.Tensor:
    """Log importance weights ``log p(x, z_k) - log q(z_k | x)`` with ``z_k ~ q(z | x)``.

    Parameters
    ----------
    model : ProbabilisticModel or callable or Program
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
    return setup.terms(x, num_samples).log_weights


#: The transcribed weights, for the tests that compare them with the traces'.
_direct_log_weights = direct.log_weights


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


@dataclass(frozen=True)
class _Setup:
    program: Program
    structure: ProgramStructure
    prior: bool
    per_point: int

    def terms(self, x: torch.Tensor, num_samples: int, rows: slice = slice(None)) -> LogDensityTerms:
        """Per-point log-densities of K draws for the points ``rows`` (``x``), traced."""
        with torch.no_grad(), pyro.validation_enabled(False):
            return program_log_terms(self.program.model, row_guide(self.program.guide, rows), x,
                                     num_samples, self.structure, scaled=False)


def _setup(model: Any, x: torch.Tensor, num_samples: int, guide: Any, where: str,
           prior_proposal: bool = False, proper_prior: bool = True) -> _Setup:
    program = resolve(model, x, guide, where)
    check_positive_int(num_samples, "num_samples")
    if not prior_proposal and program.guide is None:
        raise DataError(f"{where} needs a guide: pass guide=... (a Pyro program over the "
                        "model's latent sites)")
    structure = program.require(x, where, need_guide=not prior_proposal, proper_prior=proper_prior)
    per_point = max(x[0].numel(), structure.constrained_numel, 1)
    return _Setup(program, structure, prior_proposal, per_point)


def _weights_of_rows(setup: _Setup, batch: torch.Tensor, rows: slice) -> Callable[[int], torch.Tensor]:
    """``k -> log w`` of shape ``(k, len(batch))`` for one block of points.

    On the direct path the guide's distribution for the block is computed
    once here and every piece of samples draws from it, in the same order.
    """
    program = setup.program
    if program.direct and not setup.prior:
        with torch.no_grad():
            posterior = program.source.guide_distribution(batch)
        return partial(program.log_weights, batch, posterior=posterior)
    return partial(program.log_weights, batch, rows=rows, prior=setup.prior)


def _estimate(model: Any, x: torch.Tensor, num_samples: int,
              accumulator: type[RunningMean | RunningLogMeanExp],
              guide: Any = None, where: str = "", prior_proposal: bool = False) -> Estimate:
    setup = _setup(model, x, num_samples, guide, where, prior_proposal)
    values, errors, diagnostics = [], [], []
    for rows, pieces in _chunks(x, num_samples, setup.per_point):
        log_weights = _weights_of_rows(setup, x[rows], rows)
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
    model : ProbabilisticModel or callable or Program
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

    Examples
    --------
    A program of your own: two Pyro functions over the sites ``"z"`` and
    ``"x"``, inside a plate over the data points. Here the guide is the exact
    posterior, so every log weight equals log p(x) and the bound is tight.

    >>> import pyro
    >>> import pyro.distributions as dist
    >>> import torch
    >>> from ppl_vae import elbo
    >>> def model(x):                          # z ~ N(0, 1), x | z ~ N(z, 1)
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):                          # p(z | x) = N(x / 2, 1 / 2)
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5 ** 0.5))
    >>> pyro.set_rng_seed(0)
    >>> x = torch.linspace(-2.0, 2.0, 10)
    >>> bound = elbo(model, x, num_samples=1000, guide=guide)
    >>> bound.per_point.shape
    torch.Size([10])
    >>> log_px = dist.Normal(0.0, 2 ** 0.5).log_prob(x)    # exact: x ~ N(0, 2)
    >>> torch.allclose(bound.per_point, log_px, atol=1e-4)
    True

    A poorer guide, the prior itself, gives a lower bound on every point
    (short by KL(q || p(z | x)), at least 0.15 nats here):

    >>> def prior_guide(x):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(0.0, 1.0))
    >>> poorer = elbo(model, x, num_samples=1000, guide=prior_guide)
    >>> bool((poorer.per_point < log_px).all())
    True
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
    model : ProbabilisticModel or callable or Program
    x : Tensor, shape (num_points, data_dim)
    num_samples : int
        Samples K per point.
    guide : callable, optional
        As for :func:`elbo`.

    Returns
    -------
    dict with keys ``"reconstruction"`` and ``"kl"``, each an Estimate

    Examples
    --------
    Probabilistic PCA, with its guide set to the exact posterior: the two
    terms of the same draws then add up to the exact log p(x).

    >>> import pyro
    >>> import torch
    >>> from ppl_vae import LinearGaussian
    >>> from ppl_vae.inference import elbo_terms
    >>> pyro.set_rng_seed(0)
    >>> ppca = LinearGaussian(data_dim=64, latent_dim=2, noise_scale=0.1).double()
    >>> x = ppca.sample(10, mean=False)
    >>> ppca.set_guide_to_posterior()            # q(z | x) = p(z | x)
    >>> terms = elbo_terms(ppca, x, num_samples=100)
    >>> sorted(terms)
    ['kl', 'reconstruction']
    >>> bound = terms["reconstruction"].per_point - terms["kl"].per_point
    >>> torch.allclose(bound, ppca.log_marginal(x))
    True
    >>> bool((terms["kl"].per_point > 0).all())      # what x tells about z, in nats
    True
    """
    setup = _setup(model, x, num_samples, guide, "elbo_terms", proper_prior=False)
    parts: dict[str, list] = {"reconstruction": [], "kl": []}
    for rows, pieces in _chunks(x, num_samples, setup.per_point):
        running = {"reconstruction": RunningMean(), "kl": RunningMean()}
        for k in pieces:
            terms = setup.terms(x[rows], k, rows)
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
    model : ProbabilisticModel or callable or Program
    x : Tensor, shape (num_points, data_dim)
    num_samples : int
        Importance samples K per point.
    guide : callable, optional
        The proposal q(z | x) (default ``model.guide``), as for :func:`elbo`.

    Returns
    -------
    Estimate

    Examples
    --------
    On the same model and data, the importance-weighted bound lies above the
    ELBO (by a few tenths of a nat per point here, many times its Monte Carlo error):

    >>> import pyro
    >>> import torch
    >>> from ppl_vae import VAE, elbo, iwae
    >>> pyro.set_rng_seed(0)
    >>> vae = VAE(data_dim=64, latent_dim=2, hidden_dims=(32,))
    >>> x = torch.bernoulli(torch.full((10, 64), 0.3))
    >>> elbo_value = elbo(vae, x, num_samples=1000)
    >>> iwae_value = iwae(vae, x, num_samples=1000)
    >>> bool(iwae_value.mean >= elbo_value.mean)
    True
    >>> iwae_value.pareto_k.shape                 # one k-hat per point: can its error bar be trusted?
    torch.Size([10])
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
    model : ProbabilisticModel or callable or Program
    x : Tensor, shape (num_points, data_dim)
    num_samples : int
        Prior draws K per point.

    Returns
    -------
    Estimate

    Examples
    --------
    Probabilistic PCA, whose log p(x) is known exactly; its posterior is far
    narrower than the prior, so prior draws rarely explain a point:

    >>> import pyro
    >>> import torch
    >>> from ppl_vae import LinearGaussian
    >>> from ppl_vae.inference import naive_prior
    >>> pyro.set_rng_seed(0)
    >>> ppca = LinearGaussian(data_dim=64, latent_dim=2, noise_scale=0.1)
    >>> x = ppca.sample(10, mean=False)
    >>> exact = ppca.log_marginal(x)
    >>> naive = naive_prior(ppca, x, num_samples=1000)
    >>> bool(naive.mean < exact.mean() - 1)       # more than a nat short, even with 1000 draws
    True
    >>> bool(naive.flagged.all())                 # and the Pareto k-hat flags every point
    True
    """
    return _estimate(model, x, num_samples, RunningLogMeanExp, None, "naive_prior",
                     prior_proposal=True)
