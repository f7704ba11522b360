"""The training objective: Pyro's differentiable ELBO, or the same number without tracing.

Pyro computes the ELBO of ``model.model`` and ``model.guide`` by running both
programs under its effect handlers (trace, replay, plate, scale) and summing
the recorded log-densities. For the Gaussian-latent models (VAE and pPCA) the
two programs have one fixed structure,

    z ~ q(z | x)                   (the guide, ``model.guide_distribution(x)``)
    z ~ p(z),  x ~ p(x | z)        (the model, ``model.prior(x)``, ``model.decode(z)``)

inside a ``"data"`` plate scaled by ``num_data / batch`` and with ``beta`` on
the latent site, so the same objective can be written down directly, calling
the very methods the Pyro programs call. :func:`direct_elbo_loss` is that
transcription: it draws the same random numbers in the same order and gives
the same value and gradient as Pyro's ``Trace_ELBO`` / ``TraceMeanField_ELBO``
``differentiable_loss`` (``tests/test_objectives.py`` checks both, for every
such model, estimator, particle count and beta), without the per-step cost
of the effect handlers. Any other model, and any subclass that rewrites
``model()`` or ``guide()``, trains through Pyro.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from torch.distributions import (
    Bernoulli,
    Distribution,
    Independent,
    Normal,
    kl_divergence,
)
from torch.nn import functional as F

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.inference.program import (
    ProgramStructure,
    inspect_program,
    program_log_terms,
    untouched_param_store,
)
from ppl_vae.models.base import GaussianLatentModel

#: ELBO estimators by name: ``trace`` estimates the KL term by Monte Carlo,
#: ``meanfield`` uses the closed-form KL where one exists.
ELBO_ESTIMATORS = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO}

#: How the loss is computed: ``auto`` = ``direct`` where the model allows it, else ``pyro``.
ENGINES = ("auto", "direct", "pyro")

#: What training maximizes: the ELBO, or the importance-weighted bound with K = num_particles.
OBJECTIVES = ("elbo", "iwae")

#: ``loss(model, x, num_data=..., beta=...)`` -> scalar tensor, the negative ELBO.
Loss = Callable[..., torch.Tensor]


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
    log_likelihood = _log_likelihood_sum(model.decode(z), x)
    kl = None
    if estimator == "meanfield" and type(model).prior is GaussianLatentModel.prior:
        kl = _kl_to_standard_normal_sum(q)
        if kl is not None:
            return -scale * (log_likelihood - beta * num_particles * kl) / num_particles
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
    return -scale * (log_likelihood - beta * kl) / num_particles


def _log_likelihood_sum(likelihood: Distribution, x: torch.Tensor) -> torch.Tensor:
    """``likelihood.log_prob(x).sum()``; for independent Bernoulli pixels, one fused kernel."""
    base = likelihood.base_dist if isinstance(likelihood, Independent) else None
    if isinstance(base, Bernoulli) and "logits" in base.__dict__:
        return -F.binary_cross_entropy_with_logits(base.logits, x.expand_as(base.logits),
                                                   reduction="sum")
    return likelihood.log_prob(x).sum()


def likelihood_log_prob(likelihood: Distribution, x: torch.Tensor) -> torch.Tensor:
    """``likelihood.log_prob(x)``; for independent Bernoulli pixels given by logits, in fewer passes.

    The Bernoulli log-density of data ``x`` (0/1, or grey values as torch
    reads them) under logits ``l`` is ``x l - softplus(l)``; summed over the
    pixels as two reductions it reads the logits three times, where torch's
    ``log_prob`` makes seven passes (log-sigmoid, 1 - x, products, negation).
    Equal up to float rounding (``tests/test_likelihood.py``: in float64 to
    1e-14 relative; in float32 its mean error against float64 is within
    1.5x of torch's own); IWAE K = 5,000 on 500 digits about 5% faster.
    Any other distribution: its own ``log_prob``.

    Parameters
    ----------
    likelihood : Distribution
        ``decode(z)``, batch shape ``(..., num_points)``.
    x : Tensor, shape (num_points, data_dim)

    Returns
    -------
    Tensor, shape (..., num_points)
    """
    base = likelihood.base_dist if isinstance(likelihood, Independent) else None
    if (isinstance(base, Bernoulli) and "logits" in base.__dict__
            and likelihood.reinterpreted_batch_ndims == 1):
        logits = base.logits
        # softplus(l) = l above the threshold: exact to e^-40, below float64's resolution
        return (logits * x).sum(-1) - F.softplus(logits, threshold=40.0).sum(-1)
    return likelihood.log_prob(x)


def _standard_normal_kl(loc: torch.Tensor, scale: torch.Tensor, summed: bool) -> torch.Tensor:
    """The closed form ``(loc^2 + scale^2 - 1) / 2 - log scale``, elementwise or summed.

    The one formula behind :func:`gaussian_kl` and the ELBO's KL term. Summed,
    the two sums are taken apart (fewer kernels; the order of additions every
    training history was computed with); elementwise, one tensor of the
    shape of ``loc``. No check: a zero scale gives +inf, a negative one NaN.
    """
    if summed:
        return 0.5 * (loc.pow(2) + scale.pow(2) - 1.0).sum() - scale.log().sum()
    return 0.5 * (loc.pow(2) + scale.pow(2) - 1.0) - scale.log()


def gaussian_kl(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, scale^2) || N(0, 1)) elementwise, in nats: ``(loc^2 + scale^2 - 1) / 2 - log scale``.

    Per point and coordinate, this is the rate of a diagonal Gaussian code
    (divide by ln 2 for bits); summed over coordinates, the ELBO's KL term
    (:func:`direct_elbo_loss` computes it with the same formula).

    Parameters
    ----------
    loc, scale : Tensor, same shape, e.g. (num_points, latent_dim)
        Means and (positive) standard deviations, e.g. from ``model.encode(x)``.

    Returns
    -------
    Tensor, the shape of ``loc``

    Raises
    ------
    DataError
        If the shapes differ, or if a scale on the CPU is not positive. Scales
        on an accelerator are not checked, since reading the answer back would
        wait for the device on every call: there a zero scale gives +inf and
        a negative one NaN.
    """
    if not (isinstance(loc, torch.Tensor) and isinstance(scale, torch.Tensor)
            and loc.shape == scale.shape):
        raise DataError(
            "loc and scale must be tensors of one shape; got "
            f"{tuple(getattr(loc, 'shape', ()))} and {tuple(getattr(scale, 'shape', ()))}")
    if scale.device.type == "cpu" and not bool((scale > 0).all()):
        raise DataError("every scale must be positive; pass standard deviations (e.g. "
                        "log_scale.exp()), not log scales or variances")
    return _standard_normal_kl(loc, scale, summed=False)


def _kl_to_standard_normal_sum(q: Distribution) -> torch.Tensor | None:
    """Sum of KL(q || N(0, I)) over the batch for a diagonal Gaussian q, else None.

    The same value as ``kl_divergence(q, p).sum()`` with fewer kernels (see
    :func:`_standard_normal_kl`).
    """
    base = q.base_dist if isinstance(q, Independent) else None
    if not (isinstance(base, Normal) and q.reinterpreted_batch_ndims == 1):
        return None
    return _standard_normal_kl(base.loc, base.scale, summed=True)


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


def direct_iwae_loss(model: GaussianLatentModel, x: torch.Tensor, num_data: int | None = None,
                     beta: float = 1.0, *, num_particles: int) -> torch.Tensor:
    """The negative IWAE bound of a Gaussian-latent model, written out (see :func:`program_iwae_loss`).

    ``log w_k = log p(x | z_k) + beta (log p(z_k) - log q(z_k | x))`` with
    ``z_k = q.rsample((K,))``, the bound ``log (1/K) sum_k w_k`` per point, summed
    over the batch and scaled by ``num_data / batch``.

    Returns
    -------
    Tensor, shape ()
    """
    scale = 1.0 if num_data is None else num_data / x.shape[0]
    q = model.guide_distribution(x)
    z = q.rsample((num_particles,))
    log_weights = model.decode(z).log_prob(x) + beta * (model.prior(x).log_prob(z) - q.log_prob(z))
    return -scale * (log_weights.logsumexp(0) - math.log(num_particles)).sum()


def program_iwae_loss(model: Any, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0, *,
                      num_particles: int, structure: ProgramStructure) -> torch.Tensor:
    """The negative importance-weighted bound (Burda et al., 2016) from the program's log-weights.

    K = ``num_particles`` joint draws of every latent site per point from the
    guide, reparameterized, give ``log (1/K) sum_k p(x, z_k) / q(z_k | x)``
    per point (enumerated discrete latents summed out); its gradient is the
    IWAE estimator. ``beta`` weights the latent sites' log-densities, as in
    the ELBO; the sum over the batch is scaled by ``num_data / batch``.

    Returns
    -------
    Tensor, shape ()
    """
    scale = 1.0 if num_data is None else num_data / x.shape[0]
    terms = program_log_terms(model.model, model.guide, x, num_particles, structure, {"beta": beta})
    return -scale * (terms.log_weights.logsumexp(0) - math.log(num_particles)).sum()


def make_loss(model: Any, estimator: str, num_particles: int, engine: str = "auto",
              objective: str = "elbo", x: torch.Tensor | None = None) -> Loss:
    """The training loss for a model: the direct transcription when possible, else from the program.

    Parameters
    ----------
    model : ProbabilisticModel or PyroProgram
    estimator : {"meanfield", "trace"}
        For the ELBO: closed-form or Monte Carlo KL (programs with enumerated
        discrete latents use Pyro's ``TraceEnum_ELBO``).
    num_particles : int
        Samples per point: particles of the ELBO, or K of the IWAE bound.
    engine : {"auto", "direct", "pyro"}
        ``direct`` requires :func:`has_direct_elbo`.
    objective : {"elbo", "iwae"}
    x : Tensor, shape (batch, data_dim), optional
        Example data to trace the programs with.

    Returns
    -------
    callable
        ``loss(model, x, num_data=..., beta=...)`` -> the negative objective.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    direct = has_direct_elbo(model, x)
    if engine == "direct" and not direct:
        raise ConfigError(
            f"engine='direct' needs the model() and guide() programs of VAE or LinearGaussian (one "
            f"latent site 'z' from guide_distribution, prior and decode); a {type(model).__name__}, "
            "or a subclass that rewrites model() or guide(), trains with engine='pyro' or 'auto'"
        )
    use_direct = direct and engine != "pyro"
    if objective == "iwae" and use_direct:
        return partial(direct_iwae_loss, num_particles=num_particles)
    if use_direct:
        return partial(direct_elbo_loss, estimator=estimator, num_particles=num_particles)
    example = x if x is not None else torch.zeros(2, model.data_dim, dtype=model.dtype,
                                                  device=model.device)
    if objective == "iwae":
        structure = inspect_program(model.model, model.guide, example)
        if not structure.reparameterized:
            raise ConfigError(
                "the IWAE objective needs reparameterized guide sites (rsample); the guide samples "
                f"{list(structure.not_reparameterized)} without, so train it with objective='elbo'"
            )
        return partial(program_iwae_loss, num_particles=num_particles, structure=structure)
    try:  # an improper prior (the plain autoencoder) still has an ELBO, up to a constant
        structure = inspect_program(model.model, model.guide, example, proper_prior=False)
    except ConfigError:  # not per-point (e.g. a global factor): Pyro's ELBO still applies
        structure = None
    if structure is not None and structure.enumerated:
        elbo = TraceEnum_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                              max_plate_nesting=structure.max_plate_nesting)
    else:
        if estimator == "meanfield" and structure is not None and not structure.guide_in_model_order:
            # The closed-form KL of each site against its prior given the guide's draws of the
            # others is exact only when the guide draws the sites in the model's order.
            estimator = "trace"
        elbo = ELBO_ESTIMATORS[estimator](num_particles=num_particles,
                                          vectorize_particles=num_particles > 1)
    pyro_loss = elbo.differentiable_loss

    def loss(model: Any, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return pyro_loss(model.model, model.guide, x, **kwargs)

    return loss
