"""The transcribed path: every density of a Gaussian-latent model's programs, written out once.

For the VAE and pPCA the two Pyro programs have one fixed structure,

    z ~ q(z | x)                   (the guide, ``model.guide_distribution(x)``)
    z ~ p(z),  x ~ p(x | z)        (the model, ``model.prior(x)``, ``model.decode(z)``)

inside a ``"data"`` plate scaled by ``num_data / batch`` and with ``beta`` on
the latent site, so every quantity the inference layer reads from their
traces can be written down directly, calling the very methods the programs
call and drawing the same random numbers in the same order:

* :func:`direct_elbo_loss` and :func:`direct_iwae_loss`, the training objectives (equal in
  value and gradient to Pyro's ``Trace_ELBO`` / ``TraceMeanField_ELBO``
  ``differentiable_loss`` and to the traced IWAE bound, ``tests/inference/test_objectives.py``
  and ``tests/inference/test_program.py``);
* :func:`log_weights`, the importance weights of ``elbo``, ``iwae`` and the
  streaming estimators;
* :func:`log_joint` and :func:`log_prior_and_joint`, the densities NUTS and
  annealed importance sampling move on.

:func:`has_direct_elbo` decides, by tracing the programs once, whether a model
may use them; :class:`~ppl_vae.inference.compiled.Program` records the answer,
so callers never ask again. Every log-likelihood goes through one function,
:func:`log_likelihood`.
"""

from __future__ import annotations

import math
from typing import Any

import pyro
import torch
from pyro import poutine
from torch.distributions import Bernoulli, Distribution, Independent, Normal, kl_divergence
from torch.nn import functional as F

from ppl_vae.inference.program import untouched_param_store
from ppl_vae.models.base import GaussianLatentModel


def log_likelihood(likelihood: Distribution, x: torch.Tensor, reduction: str = "point",
                   fused: bool = True) -> torch.Tensor:
    """``likelihood.log_prob(x)`` per point or summed; independent Bernoulli pixels in fewer passes.

    The one log-likelihood kernel of the transcribed path. For independent
    Bernoulli pixels given by logits ``l`` (``fused``), the log-density of data
    ``x`` (0/1, or grey values as torch reads them) is ``x l - softplus(l)``:

    * ``reduction="point"``: per point, as two reductions over the pixels
      (three reads of the logits where torch's ``log_prob`` makes seven passes);
    * ``reduction="sum"``: one scalar, ``-binary_cross_entropy_with_logits(..., "sum")``,
      a single fused kernel (the training ELBO's).

    The two orders of summation round differently in the last bits, and
    torch's own ``log_prob`` differently again; each caller keeps the one its
    numbers were computed with (``fused=False`` gives torch's ``log_prob``,
    summed for ``"sum"``). All agree up to float rounding
    (``tests/inference/test_importance.py``). Any other distribution: its own ``log_prob``.

    Parameters
    ----------
    likelihood : Distribution
        ``decode(z)``, batch shape ``(..., num_points)``.
    x : Tensor, shape (num_points, data_dim)
    reduction : {"point", "sum"}
    fused : bool
        Use the Bernoulli kernels above where they apply.

    Returns
    -------
    Tensor, shape (..., num_points) for ``"point"``, () for ``"sum"``
    """
    base = likelihood.base_dist if isinstance(likelihood, Independent) else None
    bernoulli = fused and isinstance(base, Bernoulli) and "logits" in base.__dict__
    if reduction == "sum":
        if bernoulli:
            return -F.binary_cross_entropy_with_logits(base.logits, x.expand_as(base.logits),
                                                       reduction="sum")
        return likelihood.log_prob(x).sum()
    if bernoulli and likelihood.reinterpreted_batch_ndims == 1:
        logits = base.logits
        # softplus(l) = l above the threshold: exact to e^-40, below float64's resolution
        return (logits * x).sum(-1) - F.softplus(logits, threshold=40.0).sum(-1)
    return likelihood.log_prob(x)


def likelihood_log_prob(likelihood: Distribution, x: torch.Tensor) -> torch.Tensor:
    """:func:`log_likelihood` per point (the name importance sampling and AIS have used)."""
    return log_likelihood(likelihood, x)


def standard_normal_kl(loc: torch.Tensor, scale: torch.Tensor, summed: bool) -> torch.Tensor:
    """The closed form ``(loc^2 + scale^2 - 1) / 2 - log scale``, elementwise or summed.

    The one formula behind :func:`~ppl_vae.inference.objectives.gaussian_kl`
    and the ELBO's KL term. Summed, the two sums are taken apart (fewer
    kernels; the order of additions every training history was computed
    with); elementwise, one tensor of the shape of ``loc``. No check: a zero
    scale gives +inf, a negative one NaN.
    """
    if summed:
        return 0.5 * (loc.pow(2) + scale.pow(2) - 1.0).sum() - scale.log().sum()
    return 0.5 * (loc.pow(2) + scale.pow(2) - 1.0) - scale.log()


def _kl_to_standard_normal_sum(q: Distribution) -> torch.Tensor | None:
    """Sum of KL(q || N(0, I)) over the batch for a diagonal Gaussian q, else None.

    The same value as ``kl_divergence(q, p).sum()`` with fewer kernels.
    """
    base = q.base_dist if isinstance(q, Independent) else None
    if not (isinstance(base, Normal) and q.reinterpreted_batch_ndims == 1):
        return None
    return standard_normal_kl(base.loc, base.scale, summed=True)


def direct_elbo_loss(model: GaussianLatentModel, x: torch.Tensor, num_data: int | None = None,
              beta: float = 1.0, *, estimator: str = "meanfield",
              num_particles: int = 1) -> torch.Tensor:
    """The negative ELBO of a Gaussian-latent model, equal to Pyro's differentiable loss.

    Parameters
    ----------
    model : GaussianLatentModel
        A VAE or LinearGaussian.
    x : Tensor, shape (batch, data_dim)
    num_data : int, optional
        Size of the full data set; the batch's terms are scaled by ``num_data / batch``.
    beta : float
        Weight of the latent terms (KL warm-up, beta-VAE).
    estimator : {"meanfield", "trace"}
        ``meanfield``: the closed-form KL(q || p) where one exists, as
        ``TraceMeanField_ELBO``; ``trace``: ``log q(z) - log p(z)`` at the
        sample, as ``Trace_ELBO``.
    num_particles : int
        Samples of z per point, drawn in one vectorized pass (shape
        ``(num_particles, batch, latent_dim)``, as Pyro's vectorized particles).

    Returns
    -------
    Tensor, shape ()
        ``-ELBO``, summed over the batch and scaled to the data set.
    """
    scale = 1.0 if num_data is None else num_data / x.shape[0]
    q = model.guide_distribution(x)
    z = q.rsample() if num_particles == 1 else q.rsample((num_particles,))
    likelihood = log_likelihood(model.decode(z), x, reduction="sum")
    kl = None
    if estimator == "meanfield" and type(model).prior is GaussianLatentModel.prior:
        kl = _kl_to_standard_normal_sum(q)
        if kl is not None:
            return -scale * (likelihood - beta * num_particles * kl) / num_particles
    prior = model.prior(x)
    if estimator == "meanfield":
        if num_particles > 1:  # as Pyro's particle plate does; it decides which KL rules apply
            shape = (num_particles, *q.batch_shape)
            q, prior = q.expand(shape), prior.expand(shape)
        try:
            kl = kl_divergence(q, prior).sum()
        except NotImplementedError:  # Pyro falls back on the Monte Carlo term too
            kl = None
    if kl is None:
        kl = (q.log_prob(z) - prior.log_prob(z)).sum()
    return -scale * (likelihood - beta * kl) / num_particles


def direct_iwae_loss(model: GaussianLatentModel, x: torch.Tensor, num_data: int | None = None,
              beta: float = 1.0, *, num_particles: int) -> torch.Tensor:
    """The negative IWAE bound of a Gaussian-latent model, written out.

    ``log w_k = log p(x | z_k) + beta (log p(z_k) - log q(z_k | x))`` with
    ``z_k = q.rsample((K,))``, the bound ``log (1/K) sum_k w_k`` per point, summed
    over the batch and scaled by ``num_data / batch`` (the traced version is
    :func:`~ppl_vae.inference.objectives.program_iwae_loss`).

    Returns
    -------
    Tensor, shape ()
    """
    scale = 1.0 if num_data is None else num_data / x.shape[0]
    q = model.guide_distribution(x)
    z = q.rsample((num_particles,))
    weights = (log_likelihood(model.decode(z), x, fused=False)
               + beta * (model.prior(x).log_prob(z) - q.log_prob(z)))
    return -scale * (weights.logsumexp(0) - math.log(num_particles)).sum()


@torch.no_grad()
def log_weights(model: GaussianLatentModel, x: torch.Tensor, num_samples: int,
                posterior: Distribution | None = None) -> torch.Tensor:
    """``log p(x, z_k) - log q(z_k | x)`` with ``z_k = q.rsample((K,))``, shape (K, num_points).

    The same draws and densities as the traces of the model's programs.
    ``posterior`` is ``model.guide_distribution(x)`` when the caller already
    has it (the streaming estimators compute it once per block of points, not
    once per piece of samples).
    """
    if posterior is None:
        posterior = model.guide_distribution(x)
    z = posterior.rsample((num_samples,))
    return log_likelihood(model.decode(z), x) + model.prior(x).log_prob(z) - posterior.log_prob(z)


def log_joint(model: GaussianLatentModel, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``log p(z) + log p(x | z)`` per point for ``z`` of shape (..., num_points, latent_dim).

    Torch's own ``log_prob`` for the likelihood: the numbers NUTS and
    :func:`~ppl_vae.inference.importance.log_joint` have always computed.
    """
    return model.prior(x).log_prob(z) + log_likelihood(model.decode(z), x, fused=False)


def log_prior_and_joint(model: GaussianLatentModel, x: torch.Tensor, z: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``log p(z)`` and ``log p(x, z)`` per point (the two ends of an annealing path)."""
    log_prior = model.prior(x).log_prob(z)
    return log_prior, log_prior + log_likelihood(model.decode(z), x)


def has_direct_elbo(model: Any, x: torch.Tensor | None = None) -> bool:
    """Whether the direct transcriptions compute exactly what this model's Pyro programs compute.

    True only when both programs are methods the transcription was written
    for (marked with :func:`~ppl_vae.models.base.transcribed`: one trace cannot
    prove that a rewritten ``model()`` or ``guide()`` agrees on every input, so
    a subclass that rewrites either is computed from its traces), and when
    their behaviour confirms it: ``model.guide`` and ``model.model`` are traced
    once on two rows (without touching the global random state or the
    parameter store), the guide samples one site ``"z"``, the model has that
    latent and one observed site ``"x"`` and nothing else, the sites carry the
    scales the transcription applies (``num_data / batch``, and ``beta`` on
    ``"z"``), and their log-densities at the traced values equal
    ``guide_distribution(x)``'s, ``prior(x)``'s and ``decode(z)``'s. So a
    subclass that changes ``prior``, ``decode`` or ``guide_distribution``
    keeps the fast path (the transcription calls them) unless they add sites.

    Parameters
    ----------
    model : object
        A ppl_vae model, or anything else (then the answer is False).
    x : Tensor, shape (batch, data_dim), optional
        Data to trace with (the first two rows); zeros by default.
    """
    methods = ("model", "guide", "guide_distribution", "prior", "decode")
    if not isinstance(model, GaussianLatentModel) or not all(
            callable(getattr(model, name, None)) for name in methods):
        return False
    if not all(getattr(getattr(model, name), "transcribed_by_direct_elbo", False)
               for name in ("model", "guide")):
        return False
    rows = x[:2] if x is not None else torch.zeros(2, model.data_dim, dtype=model.dtype,
                                                   device=model.device)
    devices = [rows.device] if rows.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad(), \
                pyro.validation_enabled(False), untouched_param_store():
            return _traces_match(model, rows)
    except Exception:  # a program that does not even run is left to the generic path's errors
        return False


def _traces_match(model: GaussianLatentModel, x: torch.Tensor) -> bool:
    num_data, beta = 2 * x.shape[0] + 1, 0.5
    kwargs = {"num_data": num_data, "beta": beta}
    guide_trace = poutine.trace(model.guide).get_trace(x, **kwargs)
    model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x, **kwargs)

    def sites(trace: poutine.Trace) -> dict[str, dict]:
        return {name: site for name, site in trace.nodes.items()
                if site["type"] == "sample" and type(site["fn"]).__name__ != "_Subsample"}

    guide_sites, model_sites = sites(guide_trace), sites(model_trace)
    if set(guide_sites) != {"z"} or set(model_sites) != {"z", "x"}:
        return False
    z, observed = model_sites["z"], model_sites["x"]
    scale = num_data / x.shape[0]
    if (observed["is_observed"] is not True or z["is_observed"] or observed["value"] is not x
            or not _same(guide_sites["z"]["scale"], beta * scale) or not _same(z["scale"], beta * scale)
            or not _same(observed["scale"], scale)):
        return False
    value = z["value"]
    pairs = [(guide_sites["z"]["fn"].log_prob(value), model.guide_distribution(x).log_prob(value)),
             (z["fn"].log_prob(value), model.prior(x).log_prob(value)),
             (observed["fn"].log_prob(x), model.decode(value).log_prob(x))]
    return all(a.shape == b.shape and torch.allclose(a, b, rtol=1e-6, atol=1e-6) for a, b in pairs)


def _same(scale: Any, expected: float) -> bool:
    return abs(float(scale) - expected) <= 1e-9 * expected
