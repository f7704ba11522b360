"""Variational posteriors fitted to fixed data points, beyond the amortized encoder.

* :class:`LocalGaussian`: one free Gaussian q_i(z) = N(m_i, diag s_i^2) per point.
  Optimized to convergence it is q*, the best Gaussian for that point; its
  ELBO minus the encoder's is the *amortization gap* (Cremer et al., 2018).
* :class:`FlowPosterior`: the same Gaussian pushed through conditional
  normalizing flows (Pyro's spline autoregressive transforms), a family that
  can bend and skew to follow a non-Gaussian posterior.

Both are fitted by SVI on the model program's own ELBO with the networks
held fixed (gradients are taken with respect to the posterior's parameters
only, and a model object is evaluated through a frozen copy, so nothing
enters Pyro's parameter store), and both expose a Pyro ``guide(x)`` for
exactly the points they were fitted to, so :func:`ppl_vae.inference.elbo`,
:func:`ppl_vae.inference.iwae` and the comparison evaluate them like the encoder.

They work for any program: the Gaussian lives on one flat vector per point,
every continuous latent site in program order, mapped to each site's support
by ``biject_to`` (as Pyro's autoguides do). A program with a single
real-valued site samples it directly; otherwise the guide samples the vector
as an auxiliary site and each latent site as a ``Delta`` at its slice, with
the log-Jacobian carried in the Delta's density.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.infer import Trace_ELBO
from torch import nn

from ppl_vae.errors import DataError, TrainingDivergedError
from ppl_vae.inference.compiled import Program, check_data, resolve
from ppl_vae.inference.program import (
    ProgramStructure,
    Unscaled,
    is_real_support,
    program_pair,
    to_constrained,
)
from ppl_vae.models.base import ProbabilisticModel, check_positive_int, data_plate
from ppl_vae.rng import keeps_global_rng

#: Name of the auxiliary site that holds the flat vector of every continuous latent.
FLAT_LATENT = "_ppl_vae_latent"

#: Convergence: stop when a window of steps improves the mean loss by less than this (nats per point).
CONVERGENCE_TOLERANCE = 1e-3
WINDOW = 100


def frozen_copy(model: ProbabilisticModel) -> ProbabilisticModel:
    """A copy of ``model`` with no trainable parameters (so ``pyro.module`` registers nothing)."""
    return copy.deepcopy(model).requires_grad_(False).eval()


class PointPosterior(nn.Module):
    """A variational posterior q_i(z) for each point of a fixed set (not amortized over x).

    Its Pyro program is :meth:`guide` (the word "guide" keeps Pyro's meaning:
    a program); ``restrict(rows)`` gives the program for some of the points.

    ``structure`` (set by the fitting functions) names the sites and the data
    plate; without one the guide samples ``"z"`` inside ``"data"``.
    """

    num_points: int
    structure: ProgramStructure | None = None

    def distribution(self, rows: slice) -> dist.TorchDistribution:
        raise NotImplementedError

    def _guide(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0, *,
               rows: slice = slice(None)) -> None:
        expected = len(range(self.num_points)[rows])
        if x.dim() == 0 or x.shape[0] != expected:
            raise DataError(
                f"this guide was fitted to {expected} points; it got data of shape {tuple(x.shape)}. "
                "Evaluate it on the same points it was fitted to."
            )
        structure = self.structure
        if structure is None or _single_real_site(structure):
            name = "z" if structure is None else structure.continuous[0].name
            with _plate(x, num_data, structure):
                pyro.sample(name, self.distribution(rows))
            return
        with _plate(x, num_data, structure):
            flat = pyro.sample(FLAT_LATENT, self.distribution(rows), infer={"is_auxiliary": True})
            values, log_det = to_constrained(flat, structure)
            for k, site in enumerate(structure.continuous):
                density = -log_det if k == 0 else torch.zeros_like(log_det)
                pyro.sample(site.name, dist.Delta(values[site.name], log_density=density,
                                                  event_dim=len(site.event_shape)))

    def guide(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> None:
        """q(z) for every fitted point; ``x`` must be those points, shape (num_points, data_dim)."""
        self._guide(x, num_data, beta)

    def restrict(self, rows: slice) -> Callable[..., None]:
        """The guide for the points ``rows`` only."""
        return functools.partial(self._guide, rows=rows)

    def sites(self) -> tuple[str, ...]:
        """The sample sites of :meth:`guide` in order; the first is drawn from ``distribution(rows)``."""
        structure = self.structure
        if structure is None or _single_real_site(structure):
            return ("z" if structure is None else structure.continuous[0].name,)
        return (FLAT_LATENT, *(site.name for site in structure.continuous))


def _single_real_site(structure: ProgramStructure) -> bool:
    sites = structure.continuous
    return len(sites) == 1 and len(sites[0].event_shape) == 1 and is_real_support(sites[0].support)


def _plate(x: torch.Tensor, num_data: int | None, structure: ProgramStructure | None) -> pyro.plate:
    if structure is None or structure.data_plate == "data":
        return data_plate(x, num_data)
    return pyro.plate(structure.data_plate, x.shape[0], dim=-1)


class LocalGaussian(PointPosterior):
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


class FlowPosterior(PointPosterior):
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
    """A fitted point posterior and how the fit went.

    Attributes
    ----------
    posterior : LocalGaussian or FlowPosterior
    losses : list of float
        Mean negative ELBO per point of every window of steps.
    num_steps : int
    wall_time : float
        Seconds.
    """

    posterior: PointPosterior
    losses: list[float]
    num_steps: int
    wall_time: float


@keeps_global_rng
def fit_point_posterior(model: ProbabilisticModel | Callable[..., None], x: torch.Tensor,
                        posterior: PointPosterior, *, max_steps: int = 5000, learning_rate: float = 0.01,
                        num_particles: int = 16, seed: int = 0) -> FitResult:
    """Maximize the ELBO of ``posterior`` for the points ``x`` by SVI, the decoder held fixed.

    Adam runs in windows of :data:`WINDOW` steps; the learning rate halves
    whenever a window fails to improve the mean loss by
    :data:`CONVERGENCE_TOLERANCE` nats per point, and the fit stops after the
    third such window or ``max_steps``.

    Parameters
    ----------
    model : ProbabilisticModel or callable or Program
        A model, or a Pyro program ``model(x)``.
    x : Tensor, shape (num_points, data_dim)
    posterior : LocalGaussian or FlowPosterior
        Trained in place; its ``structure`` says which sites it covers.
    max_steps, learning_rate, num_particles, seed
        Optimization settings; ``num_particles`` samples of z per step.

    Returns
    -------
    FitResult

    Raises
    ------
    DataError
        If ``x`` does not fit the model (shape, values, device).
    TrainingDivergedError
        If the ELBO becomes NaN or infinite; lower ``learning_rate``.
    """
    if isinstance(model, Program):
        model.check(x, "fit_point_posterior")
        model = model.source
    else:
        check_data(model, x, "fit_point_posterior")
    pyro.set_rng_seed(seed)
    program, _ = program_pair(frozen_copy(model) if isinstance(model, nn.Module) else model)
    program = Unscaled()(program)  # one point's density, not a subsampled plate's scaled one
    structure = posterior.structure
    nesting = structure.max_plate_nesting if structure is not None else 1
    loss_fn = Trace_ELBO(num_particles=num_particles,
                         vectorize_particles=structure is None or structure.broadcasts,
                         max_plate_nesting=nesting).differentiable_loss
    parameters = list(posterior.parameters())
    optimizer = torch.optim.Adam(parameters, lr=learning_rate)
    losses: list[float] = []
    best, stalls, step = math.inf, 0, 0
    started = time.perf_counter()
    with pyro.validation_enabled(False):
        while step < max_steps and stalls < 3:
            total = x.new_zeros(())
            for _ in range(WINDOW):
                loss = loss_fn(program, posterior.guide, x)
                # Gradients of the posterior's parameters only: nothing accumulates in the model.
                for parameter, grad in zip(parameters, torch.autograd.grad(loss, parameters)):
                    parameter.grad = grad
                optimizer.step()
                total = total + loss.detach()
                step += 1
            losses.append(float(total) / (WINDOW * len(x)))
            if not math.isfinite(losses[-1]):
                raise TrainingDivergedError(
                    "the posterior fit diverged (non-finite ELBO); lower learning_rate")
            if losses[-1] > best - CONVERGENCE_TOLERANCE:
                stalls += 1
                for group in optimizer.param_groups:
                    group["lr"] *= 0.5
            best = min(best, losses[-1])
    return FitResult(posterior, losses, step, time.perf_counter() - started)


def _start(model: Any, x: torch.Tensor, guide: Any, seed: int
           ) -> tuple[torch.Tensor, torch.Tensor, Program]:
    """The compiled program and a per-point Gaussian to start from (the encoder's, or the guide's draws)."""
    program = resolve(model, x, guide, "fitting a per-point posterior")
    structure = program.require(x, "fitting a per-point posterior")
    if not structure.continuous:
        raise DataError("the model has no continuous latent site to fit a posterior to")
    loc, scale = program.starting_region(x, seed)
    return loc, scale, program


def fit_local_gaussian(model: Any, x: torch.Tensor, guide: Any = None, **kwargs) -> FitResult:
    """q*: per-point Gaussians started at the encoder's q(z | x) and fitted to convergence.

    Parameters
    ----------
    model : ProbabilisticModel or callable or Program
    x : Tensor, shape (num_points, data_dim)
    guide : callable, optional
        Where to start (default: the model's own guide; the prior for a plain
        function without one).
    **kwargs
        Go to :func:`fit_point_posterior`.

    Returns
    -------
    FitResult

    Raises
    ------
    DataError
        If ``x`` does not fit the model, or the model has no continuous latent site.
    TrainingDivergedError
        If the fit diverges (see :func:`fit_point_posterior`).

    Examples
    --------
    q*, fitted to each point, beats the encoder's q(z | x) on those points; the
    difference of their ELBOs is the amortization gap:

    >>> import pyro
    >>> import torch
    >>> from ppl_vae import VAE, elbo
    >>> from ppl_vae.inference import fit_local_gaussian
    >>> pyro.set_rng_seed(0)
    >>> vae = VAE(data_dim=64, latent_dim=2, hidden_dims=(32,))
    >>> x = torch.bernoulli(torch.full((10, 64), 0.3))
    >>> fit = fit_local_gaussian(vae, x, max_steps=100)
    >>> fit.posterior.loc.shape                   # one Gaussian per point
    torch.Size([10, 2])
    >>> encoder = elbo(vae, x, num_samples=1000)
    >>> q_star = elbo(vae, x, num_samples=1000, guide=fit.posterior)
    >>> bool(q_star.mean > encoder.mean)
    True
    """
    loc, scale, program = _start(model, x, guide, kwargs.get("seed", 0))
    posterior = LocalGaussian(loc, scale)
    posterior.structure = program.structure
    return fit_point_posterior(program, x, posterior, **kwargs)


def fit_flow_posterior(model: Any, x: torch.Tensor, start: LocalGaussian | None = None,
                       num_flows: int = 2, guide: Any = None, **kwargs) -> FitResult:
    """A flow posterior per point, started at ``start`` (e.g. q*) or the encoder.

    Parameters
    ----------
    model : ProbabilisticModel or callable or Program
    x : Tensor, shape (num_points, data_dim)
    start : LocalGaussian, optional
        The per-point Gaussians to start from (default: the model's guide, as
        :func:`fit_local_gaussian`).
    num_flows : int
        Conditional spline layers on each point's Gaussian (see :class:`FlowPosterior`).
    guide : callable, optional
        Where to start without ``start`` (default: the model's own guide).
    **kwargs
        Go to :func:`fit_point_posterior`.

    Returns
    -------
    FitResult

    Raises
    ------
    DataError
        If ``x`` does not fit the model, or the model has no continuous latent site.
    TrainingDivergedError
        If the fit diverges (see :func:`fit_point_posterior`).
    """
    loc, scale, program = _start(model, x, guide, kwargs.get("seed", 0))
    if start is not None:
        loc, scale = start.loc.detach(), start.scale.detach()
    flow = FlowPosterior(loc, scale, num_flows=num_flows)
    flow.structure = program.structure
    return fit_point_posterior(program, x, flow, **kwargs)
