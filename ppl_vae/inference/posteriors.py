"""Variational posteriors fitted to fixed data points, beyond the amortized encoder.

* :class:`LocalGaussian`: one free Gaussian q_i(z) = N(m_i, diag s_i^2) per point.
  Optimized to convergence it is q*, the best Gaussian for that point; its
  ELBO minus the encoder's is the *amortization gap* (Cremer et al., 2018).
* :class:`FlowPosterior`: the same Gaussian pushed through conditional
  normalizing flows (Pyro's spline autoregressive transforms), a family that
  can bend and skew to follow a non-Gaussian posterior.

Both are fitted by SVI on the model's own ELBO with the decoder held fixed (a
frozen copy: no gradient reaches the decoder and nothing enters Pyro's
parameter store), and both expose a Pyro ``guide(x)`` over site ``"z"`` for
exactly the points they were fitted to, so :func:`ppl_vae.inference.elbo`,
:func:`ppl_vae.inference.iwae` and the comparison evaluate them like the encoder.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.infer import Trace_ELBO
from torch import nn

from ppl_vae.errors import DataError
from ppl_vae.models.base import ProbabilisticModel, check_batch, check_positive_int, data_plate

#: Convergence: stop when a window of steps improves the mean loss by less than this (nats per point).
CONVERGENCE_TOLERANCE = 1e-3
WINDOW = 100


def frozen_copy(model: ProbabilisticModel) -> ProbabilisticModel:
    """A copy of ``model`` with no trainable parameters (so ``pyro.module`` registers nothing)."""
    return copy.deepcopy(model).requires_grad_(False).eval()


class _PointGuide(nn.Module):
    """A guide over ``"z"`` for a fixed set of points; ``restrict(rows)`` selects some of them."""

    num_points: int

    def distribution(self, rows: slice) -> dist.TorchDistribution:
        raise NotImplementedError

    def _guide(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0, *,
               rows: slice = slice(None)) -> None:
        expected = len(range(self.num_points)[rows])
        if x.dim() != 2 or x.shape[0] != expected:
            raise DataError(
                f"this guide was fitted to {expected} points; it got data of shape {tuple(x.shape)}. "
                "Evaluate it on the same points it was fitted to."
            )
        with data_plate(x, num_data):
            pyro.sample("z", self.distribution(rows))

    def guide(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> None:
        """q(z) for every fitted point; ``x`` must be those points, shape (num_points, data_dim)."""
        self._guide(x, num_data, beta)

    def restrict(self, rows: slice) -> Callable[..., None]:
        """The guide for the points ``rows`` only."""
        return functools.partial(self._guide, rows=rows)


class LocalGaussian(_PointGuide):
    """A free diagonal Gaussian per data point.

    Parameters
    ----------
    loc, scale : Tensor, shape (num_points, latent_dim)
        Starting mean and standard deviation (e.g. the encoder's output).
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.num_points = loc.shape[0]
        self.loc = nn.Parameter(loc.detach().clone())
        self.log_scale = nn.Parameter(scale.detach().log())

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def distribution(self, rows: slice) -> dist.TorchDistribution:
        return dist.Normal(self.loc[rows], self.scale[rows]).to_event(1)


class FlowPosterior(_PointGuide):
    """A per-point Gaussian followed by conditional spline autoregressive flows.

    ``u ~ N(0, I)``, ``u' = f_K(...f_1(u; c_i))``, ``z = m_i + s_i * u'``, where the
    flows are conditioned on the point's context ``c_i`` (its starting mean
    and log standard deviation), so one set of flow weights serves every point.

    Parameters
    ----------
    loc, scale : Tensor, shape (num_points, latent_dim)
        Starting per-point Gaussian (e.g. q*).
    num_flows : int
        Number of spline layers.
    count_bins : int
        Spline segments per coordinate.
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, num_flows: int = 2,
                 count_bins: int = 8) -> None:
        super().__init__()
        check_positive_int(num_flows, "num_flows")
        self.num_points, latent_dim = loc.shape
        self.base = LocalGaussian(loc, scale)
        self.register_buffer("context", torch.cat([loc, scale.log()], -1).detach().clone())
        context_dim = 2 * latent_dim
        make = (T.conditional_spline_autoregressive if latent_dim > 1 else T.conditional_spline)
        self.flows = nn.ModuleList(
            make(latent_dim, context_dim, count_bins=count_bins, bound=4.0) for _ in range(num_flows)
        )
        self.to(loc.device, loc.dtype)

    def distribution(self, rows: slice) -> dist.TorchDistribution:
        loc, scale, context = self.base.loc[rows], self.base.scale[rows], self.context[rows]
        standard = dist.Normal(torch.zeros_like(loc), torch.ones_like(loc)).to_event(1)
        transforms = [flow.condition(context) for flow in self.flows]
        transforms.append(T.AffineTransform(loc, scale, event_dim=1))
        return dist.TransformedDistribution(standard, transforms)


@dataclass
class FitResult:
    """A fitted point guide and how the fit went.

    Attributes
    ----------
    posterior : LocalGaussian or FlowPosterior
    losses : list of float
        Mean negative ELBO per point of every window of steps.
    num_steps : int
    wall_time : float
        Seconds.
    """

    posterior: _PointGuide
    losses: list[float]
    num_steps: int
    wall_time: float


def fit_point_guide(model: ProbabilisticModel, x: torch.Tensor, posterior: _PointGuide, *,
                    max_steps: int = 5000, learning_rate: float = 0.01, num_particles: int = 16,
                    seed: int = 0) -> FitResult:
    """Maximize the ELBO of ``posterior`` for the points ``x`` by SVI, the decoder held fixed.

    Adam runs in windows of :data:`WINDOW` steps; the learning rate halves
    whenever a window fails to improve the mean loss by
    :data:`CONVERGENCE_TOLERANCE` nats per point, and the fit stops after the
    third such window or ``max_steps``.

    Parameters
    ----------
    model : ProbabilisticModel
    x : Tensor, shape (num_points, data_dim)
    posterior : LocalGaussian or FlowPosterior
        Trained in place.
    max_steps, learning_rate, num_particles, seed
        Optimization settings; ``num_particles`` samples of z per step.

    Returns
    -------
    FitResult
    """
    check_batch(x, model.data_dim, "fit_point_guide")
    pyro.set_rng_seed(seed)
    frozen = frozen_copy(model)
    loss_fn = Trace_ELBO(num_particles=num_particles, vectorize_particles=True,
                         max_plate_nesting=1).differentiable_loss
    optimizer = torch.optim.Adam(posterior.parameters(), lr=learning_rate)
    losses: list[float] = []
    best, stalls, step = math.inf, 0, 0
    started = time.perf_counter()
    with pyro.validation_enabled(False):
        while step < max_steps and stalls < 3:
            total = x.new_zeros(())
            for _ in range(WINDOW):
                loss = loss_fn(frozen.model, posterior.guide, x)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total = total + loss.detach()
                step += 1
            losses.append(float(total) / (WINDOW * len(x)))
            if not math.isfinite(losses[-1]):
                raise DataError("the posterior fit diverged (non-finite ELBO); lower learning_rate")
            if losses[-1] > best - CONVERGENCE_TOLERANCE:
                stalls += 1
                for group in optimizer.param_groups:
                    group["lr"] *= 0.5
            best = min(best, losses[-1])
    return FitResult(posterior, losses, step, time.perf_counter() - started)


def fit_local_gaussian(model: ProbabilisticModel, x: torch.Tensor, **kwargs) -> FitResult:
    """q*: per-point Gaussians started at the encoder's q(z | x) and fitted to convergence.

    Keyword arguments go to :func:`fit_point_guide`.
    """
    with torch.no_grad():
        loc, scale = model.encode(x)
    return fit_point_guide(model, x, LocalGaussian(loc, scale), **kwargs)


def fit_flow_posterior(model: ProbabilisticModel, x: torch.Tensor, start: LocalGaussian | None = None,
                       num_flows: int = 2, **kwargs) -> FitResult:
    """A flow posterior per point, started at ``start`` (e.g. q*) or the encoder.

    Keyword arguments go to :func:`fit_point_guide`.
    """
    with torch.no_grad():
        loc, scale = (start.loc, start.scale) if start is not None else model.encode(x)
    flow = FlowPosterior(loc, scale, num_flows=num_flows)
    return fit_point_guide(model, x, flow, **kwargs)
