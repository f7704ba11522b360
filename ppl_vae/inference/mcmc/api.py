"""NUTS on the latent posterior p(z | x) of a trained model, the reference for every approximation.

The networks are held fixed (a frozen copy of a model object: no gradient
reaches its weights, nothing touches Pyro's parameter store) and the
continuous latent sites of every point are sampled from

    p(z | x)  proportional to  sum_c p(x, z, c)

on the potential ``-log sum_c p(x, z, c)``, read from the model's Pyro program
with the latent sites conditioned (:func:`~ppl_vae.inference.program.program_log_joint`;
discrete sites the model enumerates are summed out, and constrained sites are
sampled in the unconstrained space of ``biject_to(support)``). For the
library's Gaussian-latent programs the same density is computed directly
(``prior(x).log_prob(z) + decode(z).log_prob(x)``), a path chosen only when
tracing shows the two agree. Given the networks, the posteriors of
different data points are independent. Three schemes sample them:

* ``"batched"`` (default): every chain of every point is its own NUTS chain
  (own step size, dense mass matrix and trajectory), all advanced together
  with one batched gradient per leapfrog step
  (:mod:`ppl_vae.inference.mcmc.batched_nuts`); the encoder's variances are the
  initial inverse mass matrix.
* ``"joint"``: Pyro's ``NUTS`` on all points at once, one step size and one
  U-turn criterion for all, set by the hardest point.
* ``"per_point"``: one Pyro ``NUTS`` run per point, the textbook baseline.

For the Pyro schemes, chains are seeded ``seed + chain`` and run in separate
processes when there are cores to spare; every chain runs with one torch
thread, so both paths give bit-identical draws. The batched scheme runs all
chains in this process with torch's threads, seeded by ``seed``.

NUTS is recommended for small latent spaces (2 to 10 dimensions per point):
it works for any dimension, but its cost grows quickly with it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from pyro.infer.mcmc import NUTS

from ppl_vae.errors import ConfigError
from ppl_vae.inference.compiled import Program, Target, resolve
from ppl_vae.inference.mcmc.batched_nuts import batched_nuts
from ppl_vae.inference.program import ProgramStructure, to_constrained
from ppl_vae.models.base import check_positive_int
from ppl_vae.rng import keeps_global_rng
from ppl_vae.threads import FreeCoreThreads

SCHEMES = ("batched", "joint", "per_point")

#: A program with neither an encoder nor a guide starts its chains uniformly on (-INIT_RADIUS, INIT_RADIUS)
#: in every unconstrained coordinate (Stan's, Pyro's and NumPyro's default).
INIT_RADIUS = 2.0

#: Above this many latent dimensions per point NUTS still works but gets slow.
RECOMMENDED_MAX_LATENT_DIM = 10

STAT_NAMES = ("diverging", "tree_depth", "num_steps", "step_size", "acceptance_rate")


@dataclass(frozen=True)
class NUTSConfig:
    """Settings of :func:`sample_posterior`.

    Attributes
    ----------
    num_samples, warmup_steps : int
        Draws kept per chain, and adaptation steps discarded before them.
    num_chains : int
        Independent chains, seeded ``seed + chain``.
    scheme : {"batched", "joint", "per_point"}
        Independent chains in lock step (default), one Pyro NUTS run over all
        points at once, or one Pyro NUTS run per point.
    parallel : bool or None
        Pyro schemes: run chains in separate processes; by default when the
        machine has more than one core and there is more than one chain (CPU only).
    dense_mass : bool
        Adapt a dense inverse mass matrix (the posterior covariance) rather
        than a diagonal one: per chain and point for ``"batched"``; passed to
        Pyro's ``NUTS(full_mass=...)`` otherwise (for ``"joint"``, one matrix
        over all points' latents). Pyro's default is ``False``.
    target_accept_prob, max_tree_depth
        Step-size adaptation target and the cap on trajectory doublings.
    init_scale : float
        Chains start at ``mu(x) + init_scale * sigma(x) * eps`` from the encoder
        (or the guide's draws), overdispersed so that R-hat can detect chains
        that have not mixed. A program with neither starts as Stan, Pyro and
        NumPyro do: uniform on (-2, 2) in every unconstrained coordinate, with
        a unit initial mass matrix (a prior is no guide to where the posterior
        is: vague priors would start the chains tens of posterior widths away).
    seed : int
    adapt_threads : bool
        ``"batched"``: keep torch's CPU thread count at the cores other
        processes leave free while sampling (:mod:`ppl_vae.threads`; restored
        afterwards). Draws are reproducible per thread count; False leaves
        torch's setting alone.
    jit_compile : bool
        ``"batched"``: run the sampler in compiled blocks of steps
        (:func:`~ppl_vae.inference.mcmc.batched_nuts.batched_nuts`'s ``jit_compile``):
        worth its compilation (tens of seconds) on few chains and long runs,
        where an eager step is mostly Python and dispatch. Needs a model whose
        log density ``torch.compile`` can trace: the library's models and
        users' programs that the direct path transcribes.

    Examples
    --------
    >>> import dataclasses
    >>> from ppl_vae.inference import NUTSConfig
    >>> config = NUTSConfig(num_chains=2, warmup_steps=20, num_samples=20)   # a quick look
    >>> config.scheme, config.dense_mass
    ('batched', True)
    >>> dataclasses.replace(config, num_samples=1000).num_samples           # frozen: copy to change
    1000
    >>> NUTSConfig(scheme="gibbs")
    Traceback (most recent call last):
        ...
    ppl_vae.errors.ConfigError: unknown scheme 'gibbs'; choose one of batched, joint, per_point
    """

    num_samples: int = 1000
    warmup_steps: int = 500
    num_chains: int = 4
    scheme: str = "batched"
    parallel: bool | None = None
    dense_mass: bool = True
    target_accept_prob: float = 0.8
    max_tree_depth: int = 10
    init_scale: float = 2.0
    seed: int = 0
    adapt_threads: bool = True
    jit_compile: bool = False

    def __post_init__(self) -> None:
        for name in ("num_samples", "warmup_steps", "num_chains", "max_tree_depth"):
            check_positive_int(getattr(self, name), name)
        if self.scheme not in SCHEMES:
            raise ConfigError(f"unknown scheme {self.scheme!r}; choose one of {', '.join(SCHEMES)}")
        if not 0 < self.target_accept_prob < 1:
            raise ConfigError(f"target_accept_prob must lie in (0, 1); got {self.target_accept_prob}")
        if not self.init_scale >= 0:
            raise ConfigError(f"init_scale must be >= 0; got {self.init_scale}")
        if self.jit_compile and self.scheme != "batched":
            raise ConfigError(f"jit_compile=True compiles the batched sampler; scheme={self.scheme!r} runs "
                              "Pyro's NUTS: use scheme='batched' or jit_compile=False")


@dataclass
class MCMCResult:
    """Posterior draws of z for several data points.

    Attributes
    ----------
    samples : Tensor, shape (num_chains, num_samples, num_points, latent_dim)
        Every continuous latent site's value, flattened and concatenated per
        point in program order (``latent_dim`` is their total size).
    sample_stats : dict of Tensor, each shape (num_chains, num_samples, num_points)
        ``diverging``, ``tree_depth``, ``num_steps`` (leapfrog steps),
        ``step_size`` and ``acceptance_rate`` of every draw; a joint run's
        statistics are shared by all its points.
    config : NUTSConfig
    wall_time : float
        Seconds for the whole run, all chains.
    point_index : list of int
        Labels of the points.
    sites : dict of str to Tensor, each shape (num_chains, num_samples, num_points) + event_shape
        The draws of each latent site (by default ``{"z": samples}``).
    """

    samples: torch.Tensor
    sample_stats: dict[str, torch.Tensor]
    config: NUTSConfig
    wall_time: float
    point_index: list[int] = field(default_factory=list)
    sites: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.sites:
            self.sites = {"z": self.samples}

    @property
    def num_points(self) -> int:
        return self.samples.shape[2]

    def to_inference_data(self) -> Any:
        """An ArviZ ``InferenceData``: one variable per latent site, named as the site, dims
        (chain, draw, point, ...), the draws on each site's support."""
        from ppl_vae.evaluation.diagnostics import to_inference_data

        named = len(self.sites) > 1 or "z" not in self.sites  # a single site "z": the flat draws
        return to_inference_data(self.sites if named else self.samples,
                                 self.sample_stats, self.point_index or list(range(self.num_points)))


class _RecordingNUTS(NUTS):
    """Pyro's NUTS, also recording each draw's tree depth, leapfrog steps and acceptance.

    Every leapfrog step of a NUTS iteration builds one base tree, so counting
    base trees and summing their acceptance probabilities gives the draw's
    number of steps and mean acceptance probability, exactly as NUTS computes
    it for step-size adaptation.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.records: list[tuple[bool, int, int, float, float]] = []
        self._leapfrog_steps = 0
        self._accept_sum = 0.0

    def _build_basetree(self, *args: Any, **kwargs: Any) -> Any:
        tree = super()._build_basetree(*args, **kwargs)
        self._leapfrog_steps += 1
        self._accept_sum += float(tree.sum_accept_probs)
        return tree

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self._leapfrog_steps, self._accept_sum = 0, 0.0
        divergences = len(self._divergences)
        params = super().sample(params)
        steps = self._leapfrog_steps
        self.records.append((len(self._divergences) > divergences, steps.bit_length(), steps,
                             float(self.step_size), self._accept_sum / max(steps, 1)))
        return params


@dataclass(frozen=True)
class _ChainTask:
    """Everything one chain needs, picklable for a spawned process."""

    target: Target
    x: torch.Tensor
    init: torch.Tensor
    groups: list[list[int]]
    seed: int
    config: NUTSConfig


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _run_chain(task: _ChainTask) -> tuple[torch.Tensor, torch.Tensor]:
    """One chain over every group of points; draws (S, P, D) and stats (S, P, len(STAT_NAMES))."""
    config, target = task.config, task.target
    num_points, latent_dim = task.init.shape
    draws = task.x.new_zeros(config.num_samples, num_points, latent_dim)
    stats = torch.zeros(config.num_samples, num_points, len(STAT_NAMES), dtype=torch.float64)
    with _one_thread():
        pyro.set_rng_seed(task.seed)
        for rows in task.groups:
            x = task.x[rows]

            def potential(params: dict[str, torch.Tensor], x: torch.Tensor = x) -> torch.Tensor:
                return -target.log_density(x, params["z"]).sum()

            kernel = _RecordingNUTS(potential_fn=potential, target_accept_prob=config.target_accept_prob,
                                    max_tree_depth=config.max_tree_depth, full_mass=config.dense_mass)
            kernel.initial_params = {"z": task.init[rows]}
            kernel.setup(config.warmup_steps)
            params = kernel.initial_params
            for _ in range(config.warmup_steps):
                params = kernel.sample(params)
            for draw in range(config.num_samples):
                params = kernel.sample(params)
                draws[draw, rows] = params["z"]
            kernel_stats = torch.tensor(kernel.records[config.warmup_steps:], dtype=torch.float64)
            stats[:, rows] = kernel_stats[:, None, :]
            kernel.cleanup()
    return draws, stats


def _run_batched(target: Target, x: torch.Tensor, inits: list[torch.Tensor],
                 inverse_mass: torch.Tensor, config: NUTSConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """All chains of all points as independent NUTS chains in lock step (chain-major rows)."""
    num_chains, num_points = config.num_chains, len(x)
    x_rows = x.detach().repeat(num_chains, *([1] * (x.dim() - 1)))

    threads = FreeCoreThreads(config.adapt_threads and x.device.type == "cpu")

    def potential(z: torch.Tensor, chains: torch.Tensor) -> torch.Tensor:
        rows = x_rows if len(chains) == len(x_rows) else x_rows[chains]
        return -target.log_density(rows, z)

    generator = torch.Generator(device=x.device).manual_seed(config.seed)
    # Validation off for the whole run (the potential switches it off per call too), so that a
    # compiled sampler traces no argument checks.
    with threads, pyro.validation_enabled(False):
        run = batched_nuts(potential, torch.cat(inits), config.num_samples, config.warmup_steps,
                           inverse_mass=inverse_mass.repeat(num_chains, 1), dense_mass=config.dense_mass,
                           target_accept_prob=config.target_accept_prob,
                           max_tree_depth=config.max_tree_depth, generator=generator,
                           before_gradient=threads.poll, jit_compile=config.jit_compile)

    def by_chain(values: torch.Tensor) -> torch.Tensor:  # (C*P, S, ...) -> (C, S, P, ...)
        return values.reshape(num_chains, num_points, *values.shape[1:]).transpose(1, 2)

    stats = {"diverging": run.diverging, "tree_depth": run.tree_depth, "num_steps": run.num_steps,
             "step_size": run.step_size[:, None].expand_as(run.acceptance_rate),
             "acceptance_rate": run.acceptance_rate}
    return by_chain(run.samples), {name: by_chain(value).cpu() for name, value in stats.items()}


def chain_starts(program: Program, x: torch.Tensor, config: NUTSConfig) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Where :func:`sample_posterior`'s chains start, and their initial inverse mass matrix.

    Around the encoder's or the guide's region where the program has one
    (see ``NUTSConfig.init_scale``); uniform on (-:data:`INIT_RADIUS`,
    :data:`INIT_RADIUS`) in every unconstrained coordinate with unit mass otherwise.

    Returns
    -------
    inits : list of Tensor, each shape (num_points, latent_numel)
        One per chain, seeded ``config.seed + chain``.
    inverse_mass : Tensor, shape (num_points, latent_numel)
        The diagonal: the region's variances, or ones.
    """
    loc, scale = program.starting_region(x, config.seed)
    if program.has_proposal:
        return [_initial_points(loc, scale, config, chain) for chain in range(config.num_chains)], scale.pow(2)
    return uniform_starts(loc, config), torch.ones_like(scale)


def uniform_starts(like: torch.Tensor, config: NUTSConfig) -> list[torch.Tensor]:
    """Starting points uniform on (-:data:`INIT_RADIUS`, :data:`INIT_RADIUS`), one tensor per chain.

    Parameters
    ----------
    like : Tensor, shape (num_points, latent_numel)
        Gives the shape, dtype and device.
    config : NUTSConfig
        Chain ``c`` draws from a generator seeded ``config.seed + c``.
    """
    inits = []
    for chain in range(config.num_chains):
        generator = torch.Generator(device=like.device).manual_seed(config.seed + chain)
        uniform = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        inits.append(INIT_RADIUS * (2 * uniform - 1))
    return inits


def _initial_points(loc: torch.Tensor, scale: torch.Tensor, config: NUTSConfig, chain: int) -> torch.Tensor:
    """A chain's starting points ``loc + init_scale * scale * eps`` around the encoder's means."""
    generator = torch.Generator(device=loc.device).manual_seed(config.seed + chain)
    noise = torch.randn(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)
    return loc + config.init_scale * scale * noise


def _process_context() -> multiprocessing.context.BaseContext:
    """Fork where it is safe, spawn elsewhere.

    A forked child that uses torch's thread pool inherited from the parent can
    hang; each worker therefore sets one torch thread before doing any work
    (the pool's initializer). Fork (Linux) needs no ``if __name__ == "__main__"``
    guard in the user's script; spawn (macOS, Windows) does.
    """
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # closures, lambdas, local classes: their chains run in this process
        return False
    return True


def _use_processes(config: NUTSConfig, x: torch.Tensor, target: Target) -> bool:
    if x.device.type != "cpu" or config.num_chains == 1:
        return False
    wanted = config.parallel if config.parallel is not None else (os.cpu_count() or 1) > 1
    return wanted and _picklable(target)


@keeps_global_rng
def sample_posterior(model: Any, x: torch.Tensor, config: NUTSConfig = NUTSConfig(),
                     point_index: Sequence[int] | None = None,
                     guide: Any = None) -> MCMCResult:
    """Sample p(z | x) for each row of ``x`` with NUTS, the networks held fixed.

    Parameters
    ----------
    model : ProbabilisticModel or callable or Program
        A trained model, or a Pyro program ``model(x)`` whose latent sites lie
        in a plate over the rows of ``x`` (or either compiled,
        :func:`~ppl_vae.inference.compiled.compile_program`). Every continuous latent site is
        sampled (jointly, per point); discrete sites the program enumerates
        are summed out. The guide supplies the chains' starting points and,
        for the batched scheme, the initial inverse mass matrix.
    x : Tensor, shape (num_points, data_dim)
        Data points, on the model's device.
    config : NUTSConfig
    point_index : sequence of int, optional
        Labels of the points (e.g. their rows in the test set) for reports.
    guide : callable, optional
        The guide (default: the model object's own; with a plain function
        and no guide the chains start from prior draws).

    Returns
    -------
    MCMCResult

    Examples
    --------
    A few draws to see the shapes (too few to trust: the defaults are 4
    chains, 500 warm-up steps and 1,000 draws each):

    >>> import pyro
    >>> import torch
    >>> from ppl_vae import VAE
    >>> from ppl_vae.inference import NUTSConfig, posterior_moments, sample_posterior
    >>> pyro.set_rng_seed(0)
    >>> vae = VAE(data_dim=64, latent_dim=2, hidden_dims=(32,))
    >>> x = torch.bernoulli(torch.full((2, 64), 0.3))
    >>> config = NUTSConfig(num_chains=2, warmup_steps=20, num_samples=20)
    >>> result = sample_posterior(vae, x, config)
    >>> result.samples.shape                      # (chains, draws, points, latent_dim)
    torch.Size([2, 20, 2, 2])
    >>> result.sample_stats["diverging"].dtype
    torch.bool
    >>> mean, covariance = posterior_moments(result)
    >>> mean.shape, covariance.shape
    (torch.Size([2, 2]), torch.Size([2, 2, 2]))
    """
    program = resolve(model, x, guide, "sample_posterior")
    structure = program.require(x, "sample_posterior")
    if not structure.continuous:
        raise ConfigError("the model has no continuous latent site to sample; its enumerated "
                          "discrete latents have an exact posterior (e.g. GaussianMixture.posterior)")
    infinite = [site.name for site in structure.latent if site.discrete and not site.enumerable]
    if infinite:
        raise ConfigError(
            f"sample_posterior: the discrete latent site {infinite[0]!r} has no finite support to "
            "sum out, and NUTS samples only continuous sites; give it a finite support (e.g. "
            "Categorical) or estimate log p(x) with iwae, whose guide may sample it")
    if structure.latent_numel > RECOMMENDED_MAX_LATENT_DIM:
        warnings.warn(
            f"NUTS on {structure.latent_numel} latent dimensions per point is slow; it is recommended "
            f"for 2 to {RECOMMENDED_MAX_LATENT_DIM}", stacklevel=2)
    target = program.target
    inits, inverse_mass = chain_starts(program, x, config)
    index = list(point_index) if point_index is not None else list(range(len(x)))
    started = time.perf_counter()
    if config.scheme == "batched":
        samples, sample_stats = _run_batched(target, x, inits, inverse_mass, config)
        return _result(samples, sample_stats, config, time.perf_counter() - started, index, structure)
    groups = [list(range(len(x)))] if config.scheme == "joint" else [[i] for i in range(len(x))]
    tasks = [_ChainTask(target, x.detach(), init, groups, config.seed + chain, config)
             for chain, init in enumerate(inits)]
    if _use_processes(config, x, target):
        workers = min(config.num_chains, os.cpu_count() or 1)
        with ProcessPoolExecutor(max_workers=workers, mp_context=_process_context(),
                                 initializer=torch.set_num_threads, initargs=(1,)) as pool:
            outputs = list(pool.map(_run_chain, tasks))
    else:
        outputs = [_run_chain(task) for task in tasks]
    wall_time = time.perf_counter() - started
    samples = torch.stack([draws for draws, _ in outputs])
    stats = torch.stack([s for _, s in outputs])
    sample_stats = {name: stats[..., i] for i, name in enumerate(STAT_NAMES)}
    sample_stats["diverging"] = sample_stats["diverging"].bool()
    for name in ("tree_depth", "num_steps"):
        sample_stats[name] = sample_stats[name].long()
    return _result(samples, sample_stats, config, wall_time, index, structure)


def _result(unconstrained: torch.Tensor, sample_stats: dict[str, torch.Tensor], config: NUTSConfig,
            wall_time: float, index: list[int], structure: ProgramStructure) -> MCMCResult:
    """Draws mapped back to each site's support, flat and per site."""
    with torch.no_grad():
        sites, _ = to_constrained(unconstrained, structure)
    flat = torch.cat([value.reshape(*unconstrained.shape[:3], -1) for value in sites.values()], -1)
    return MCMCResult(flat, sample_stats, config, wall_time, index, sites)


def posterior_moments(result: MCMCResult) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and covariance per point from all chains' draws.

    Returns
    -------
    mean : Tensor, shape (num_points, latent_dim)
    covariance : Tensor, shape (num_points, latent_dim, latent_dim)
    """
    draws = result.samples.flatten(0, 1)  # (chains * draws, points, latent)
    mean = draws.mean(0)
    centred = draws - mean
    covariance = torch.einsum("spi,spj->pij", centred, centred) / (draws.shape[0] - 1)
    return mean, covariance


__all__ = [
    "INIT_RADIUS",
    "RECOMMENDED_MAX_LATENT_DIM",
    "SCHEMES",
    "MCMCResult",
    "NUTSConfig",
    "chain_starts",
    "posterior_moments",
    "sample_posterior",
    "uniform_starts",
]
