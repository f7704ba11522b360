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

from collections.abc import Callable
from functools import partial

import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import Bernoulli, Distribution, Independent, Normal, kl_divergence
from torch.nn import functional as F

from ppl_vae.errors import ConfigError
from ppl_vae.models.base import GaussianLatentModel, ProbabilisticModel
from ppl_vae.models.linear_gaussian import LinearGaussian
from ppl_vae.models.vae import VAE

#: ELBO estimators by name: ``trace`` estimates the KL term by Monte Carlo,
#: ``meanfield`` uses the closed-form KL where one exists.
ELBO_ESTIMATORS = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO}

#: How the loss is computed: ``auto`` = ``direct`` where the model allows it, else ``pyro``.
ENGINES = ("auto", "direct", "pyro")

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
    posterior = model.guide_distribution(x)
    z = posterior.rsample() if num_particles == 1 else posterior.rsample((num_particles,))
    log_likelihood = _log_likelihood_sum(model.decode(z), x)
    kl = None
    if estimator == "meanfield" and type(model).prior is GaussianLatentModel.prior:
        kl = _kl_to_standard_normal_sum(posterior)
        if kl is not None:
            return -scale * (log_likelihood - beta * num_particles * kl) / num_particles
    prior = model.prior(x)
    if estimator == "meanfield":
        if num_particles > 1:  # as Pyro's particle plate does; it decides which KL rules apply
            shape = (num_particles, *posterior.batch_shape)
            posterior, prior = posterior.expand(shape), prior.expand(shape)
        try:
            kl = kl_divergence(posterior, prior).sum()
        except NotImplementedError:  # Pyro falls back on the Monte Carlo term too
            kl = None
    if kl is None:
        kl = (posterior.log_prob(z) - prior.log_prob(z)).sum()
    return -scale * (log_likelihood - beta * kl) / num_particles


def _log_likelihood_sum(likelihood: Distribution, x: torch.Tensor) -> torch.Tensor:
    """``likelihood.log_prob(x).sum()``; for independent Bernoulli pixels, one fused kernel."""
    base = likelihood.base_dist if isinstance(likelihood, Independent) else None
    if isinstance(base, Bernoulli) and "logits" in base.__dict__:
        return -F.binary_cross_entropy_with_logits(base.logits, x.expand_as(base.logits),
                                                   reduction="sum")
    return likelihood.log_prob(x).sum()


def _kl_to_standard_normal_sum(posterior: Distribution) -> torch.Tensor | None:
    """Sum of KL(q || N(0, I)) over the batch for a diagonal Gaussian q, else None.

    The same value as ``kl_divergence(q, p).sum()`` with fewer kernels:
    ``sum (loc^2 + scale^2 - 1) / 2 - log scale``.
    """
    base = posterior.base_dist if isinstance(posterior, Independent) else None
    if not (isinstance(base, Normal) and posterior.reinterpreted_batch_ndims == 1):
        return None
    loc, scale = base.loc, base.scale
    return 0.5 * (loc.pow(2) + scale.pow(2) - 1.0).sum() - scale.log().sum()


def has_direct_elbo(model: ProbabilisticModel) -> bool:
    """Whether :func:`direct_elbo_loss` is the ELBO of this model's Pyro programs.

    True when ``model.model`` and ``model.guide`` are the library's own programs
    (a subclass may change ``prior``, ``decode`` or ``guide_distribution``, which
    the transcription calls, but not the programs themselves).
    """
    program, guide = (getattr(getattr(model, name, None), "__func__", None)
                      for name in ("model", "guide"))  # also sees overrides on the instance
    return (isinstance(model, GaussianLatentModel) and program is GaussianLatentModel.model
            and any(guide is known.guide for known in (VAE, LinearGaussian)))


def make_loss(model: ProbabilisticModel, estimator: str, num_particles: int,
              engine: str = "auto") -> Loss:
    """The training loss for a model: the direct transcription when possible, else Pyro's.

    Parameters
    ----------
    model : ProbabilisticModel
    estimator : {"meanfield", "trace"}
    num_particles : int
    engine : {"auto", "direct", "pyro"}
        ``direct`` requires :func:`has_direct_elbo`.

    Returns
    -------
    callable
        ``loss(model, x, num_data=..., beta=...)`` -> the negative ELBO.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    direct = has_direct_elbo(model)
    if engine == "direct" and not direct:
        raise ConfigError(
            f"engine='direct' needs the model and guide programs of VAE or LinearGaussian; a "
            f"{type(model).__name__} (or a subclass that rewrites model() or guide()) trains "
            "with engine='pyro' or 'auto'"
        )
    if direct and engine != "pyro":
        return partial(direct_elbo_loss, estimator=estimator, num_particles=num_particles)
    pyro_loss = ELBO_ESTIMATORS[estimator](
        num_particles=num_particles, vectorize_particles=num_particles > 1
    ).differentiable_loss

    def loss(model: ProbabilisticModel, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return pyro_loss(model.model, model.guide, x, **kwargs)

    return loss
