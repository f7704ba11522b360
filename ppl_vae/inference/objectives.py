"""The training objective: Pyro's differentiable ELBO, or the same number without tracing.

Pyro computes the ELBO of ``model.model`` and ``model.guide`` by running both
programs under its effect handlers (trace, replay, plate, scale) and summing
the recorded log-densities. For the Gaussian-latent models (VAE and pPCA) the
same objective is also written down directly (:mod:`ppl_vae.inference.direct`:
:func:`direct_elbo_loss`, :func:`direct_iwae_loss`), drawing the same random
numbers in the same order and giving the same value and gradient as Pyro's
``Trace_ELBO`` / ``TraceMeanField_ELBO`` ``differentiable_loss``
(``tests/inference/test_objectives.py`` checks both, for every such model, estimator,
particle count and beta), without the effect handlers. :func:`make_loss`
compiles the model (:func:`~ppl_vae.inference.compiled.compile_program`) and
returns the program's loss (:meth:`~ppl_vae.inference.compiled.Program.elbo_loss`):
the transcription where the programs compute what it computes, Pyro's
otherwise (any other model, and any subclass that rewrites ``model()`` or ``guide()``).
"""

from __future__ import annotations

from typing import Any

import torch

from ppl_vae.errors import DataError
from ppl_vae.inference.compiled import (
    ELBO_ESTIMATORS,
    ENGINES,
    OBJECTIVES,
    Loss,
    Program,
    _compile,
    program_iwae_loss,
)
from ppl_vae.inference.direct import (  # noqa: F401 (the private name for its tests)
    _kl_to_standard_normal_sum,
    direct_elbo_loss,
    direct_iwae_loss,
    has_direct_elbo,
    likelihood_log_prob,
    standard_normal_kl,
)

__all__ = ["ELBO_ESTIMATORS", "ENGINES", "OBJECTIVES", "Loss", "direct_elbo_loss", "direct_iwae_loss",
           "gaussian_kl", "has_direct_elbo", "likelihood_log_prob", "make_loss", "program_iwae_loss"]


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
    return standard_normal_kl(loc, scale, summed=False)


def make_loss(model: Any, estimator: str, num_particles: int, engine: str = "auto",
              objective: str = "elbo", x: torch.Tensor | None = None) -> Loss:
    """The training loss for a model: the direct transcription when possible, else from the program.

    Parameters
    ----------
    model : ProbabilisticModel or PyroProgram or Program
        A model object, or one compiled already (:func:`~ppl_vae.inference.compiled.compile_program`).
    estimator, num_particles, engine, objective
        As for :meth:`~ppl_vae.inference.compiled.Program.elbo_loss`.
    x : Tensor, shape (batch, data_dim), optional
        Example data to trace the programs with.

    Returns
    -------
    callable
        ``loss(model, x, num_data=..., beta=...)`` -> the negative objective.
    """
    if not isinstance(model, Program):
        example = x if x is not None else torch.zeros(2, model.data_dim, dtype=model.dtype,
                                                      device=model.device)
        model = _compile(model, example)
    return model.elbo_loss(estimator, num_particles, engine, objective)
