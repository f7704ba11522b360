"""Per-data-point estimates of log p(x): the ELBO and the importance-weighted bound.

Both come from the same log importance weights

    log w_k = log p(x, z_k) - log q(z_k | x),     z_k ~ q(z | x),

computed from Pyro traces of the model and guide, so they work for any model
with a latent site ``"z"`` and an observed site ``"x"``. They are computed
here, per point, rather than with Pyro's ``RenyiELBO``, which is not a
correct importance-weighted bound for local latents under subsampling.

* ELBO:  mean_k log w_k                          (a lower bound on log p(x))
* IWAE:  log (1/K) sum_k w_k                     (a tighter bound, -> log p(x) as K grows)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine

from ppl_vae.models.base import ProbabilisticModel, check_positive_int

#: Largest number of decoder outputs (particles x points x data_dim) held at once.
MAX_CHUNK_ELEMENTS = 2**24


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate per data point.

    Attributes
    ----------
    per_point : Tensor, shape (num_points,)
        The estimate for each data point.
    stderr : Tensor, shape (num_points,)
        Its Monte Carlo standard error.
    num_samples : int
        Number of importance samples K per point.
    """

    per_point: torch.Tensor
    stderr: torch.Tensor
    num_samples: int

    @property
    def mean(self) -> float:
        """Average over data points."""
        return float(self.per_point.mean())

    @property
    def mean_stderr(self) -> float:
        """Monte Carlo standard error of :attr:`mean` (not the spread across points)."""
        return float(self.stderr.pow(2).sum().sqrt() / self.stderr.numel())


def log_importance_weights(
    model: Callable[..., None], guide: Callable[..., None], x: torch.Tensor, num_samples: int
) -> torch.Tensor:
    """Log importance weights ``log p(x, z_k) - log q(z_k | x)`` with ``z_k ~ q(z | x)``.

    Parameters
    ----------
    model, guide : callable
        Pyro programs taking ``x``; sites inside a ``"data"`` plate over ``x``.
    x : Tensor, shape (batch, data_dim)
    num_samples : int
        Number of samples K drawn in one vectorized pass.

    Returns
    -------
    Tensor, shape (num_samples, batch)
    """
    with torch.no_grad(), pyro.plate("particles", num_samples, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    log_weight = x.new_zeros(num_samples, x.shape[0])
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in trace.nodes.values():
            if site["type"] == "sample" and not _is_subsample(site):
                if trace is guide_trace and site["is_observed"]:
                    continue
                log_weight = log_weight + sign * site["fn"].log_prob(site["value"])
    return log_weight


def _is_subsample(site: dict) -> bool:
    return type(site["fn"]).__name__ == "_Subsample"


def _chunks(model: ProbabilisticModel, x: torch.Tensor, num_samples: int):
    """Yield ``(rows, particles)`` pieces so that no pass holds more than MAX_CHUNK_ELEMENTS."""
    per_point = max(model.data_dim, model.latent_dim)
    rows = max(1, min(x.shape[0], MAX_CHUNK_ELEMENTS // per_point))
    for batch in x.split(rows):
        particles = max(1, min(num_samples, MAX_CHUNK_ELEMENTS // (per_point * batch.shape[0])))
        yield batch, [particles] * (num_samples // particles) + (
            [num_samples % particles] if num_samples % particles else []
        )


def _estimate(
    model: ProbabilisticModel, x: torch.Tensor, num_samples: int, reduce: Callable
) -> Estimate:
    check_positive_int(num_samples, "num_samples")
    values, errors = [], []
    for batch, pieces in _chunks(model, x, num_samples):
        log_weights = torch.cat(
            [log_importance_weights(model.model, model.guide, batch, k) for k in pieces]
        )
        value, error = reduce(log_weights)
        values.append(value)
        errors.append(error)
    return Estimate(torch.cat(values), torch.cat(errors), num_samples)


def _elbo_reduce(log_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    num_samples = log_weights.shape[0]
    spread = log_weights.std(0) if num_samples > 1 else torch.full_like(log_weights[0], math.nan)
    return log_weights.mean(0), spread / math.sqrt(num_samples)


def _iwae_reduce(log_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    num_samples = log_weights.shape[0]
    estimate = torch.logsumexp(log_weights, 0) - math.log(num_samples)
    # Delta method: se(log mean w) = sd(w) / (sqrt(K) mean w), in a stable form.
    relative = (log_weights - estimate).exp()
    spread = relative.std(0) if num_samples > 1 else torch.full_like(estimate, math.nan)
    return estimate, spread / math.sqrt(num_samples)


def elbo(model: ProbabilisticModel, x: torch.Tensor, num_samples: int = 1) -> Estimate:
    """The ELBO per data point, ``E_q[log p(x, z) - log q(z | x)]``, from K samples.

    Parameters
    ----------
    model : ProbabilisticModel
        A trained model; its guide is the variational posterior.
    x : Tensor, shape (num_points, data_dim)
    num_samples : int
        Samples K per point (the standard error is NaN for K = 1).

    Returns
    -------
    Estimate
    """
    return _estimate(model, x, num_samples, _elbo_reduce)


def iwae(model: ProbabilisticModel, x: torch.Tensor, num_samples: int = 1000) -> Estimate:
    """The importance-weighted bound ``log (1/K) sum_k p(x, z_k) / q(z_k | x)`` per point.

    It rises with K towards log p(x) (Burda et al., 2016) and is the standard
    estimate of a VAE's test log-likelihood. Memory stays bounded for any K.

    Parameters
    ----------
    model : ProbabilisticModel
    x : Tensor, shape (num_points, data_dim)
    num_samples : int
        Importance samples K per point.

    Returns
    -------
    Estimate
    """
    return _estimate(model, x, num_samples, _iwae_reduce)
