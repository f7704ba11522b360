"""log p(x) by annealed importance sampling, and bidirectional Monte Carlo to check it.

Where the encoder's q(z | x) is a poor proposal (Pareto k̂ > 0.7 on most
digits of a latent-20 VAE), the IWAE bound falls short of log p(x) by an
unknown amount at any feasible K. Annealed importance sampling (Neal, 2001)
walks each chain from an initial distribution f_0 to the joint p(x, z)
through the geometric path

    log f_t(u) = (1 - beta_t) log f_0(u) + beta_t log p(x, u),    0 = beta_0 < ... < beta_T = 1,

with a few HMC steps that leave f_t invariant at each temperature, and
weights each chain by

    log w = sum_t (beta_t - beta_{t-1}) [log p(x, u_{t-1}) - log f_0(u_{t-1})].

``exp(log w)`` is an unbiased estimate of p(x), so ``log mean_c w_c`` over the
chains is a stochastic lower bound on log p(x) that tightens as the
temperatures grow. Run backwards from an exact posterior draw (available for
data simulated from the model), the same path gives an unbiased estimate of
1 / p(x) and so a stochastic upper bound: bidirectional Monte Carlo (Grosse,
Ghahramani & Adams, 2015; Wu, Burda, Salakhutdinov & Grosse, ICLR 2017). The
gap between the two bounds on simulated data bounds the error of the forward
run on data like it.

Everything runs in the unconstrained space of the continuous latent sites
(``biject_to(support)``, the Jacobian included), on the density NUTS samples
(``Target`` in :mod:`ppl_vae.inference.compiled`): the library's models, their
subclasses and users' programs (several sites, constrained sites,
enumerated discrete sites summed out) alike. f_0 is a diagonal Gaussian per
point: q(z | x) itself for a Gaussian encoder, the moments of the guide's
draws otherwise (any normalized f_0 gives a valid estimate; a closer one a
tighter bound for the same temperatures), or the prior on request. All
points × chains advance together, one batched gradient per leapfrog step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine

from ppl_vae.errors import ConfigError
from ppl_vae.inference.compiled import Program, Target, resolve
from ppl_vae.inference.importance import Estimate
from ppl_vae.inference.program import (
    ProgramStructure,
    program_pair,
    to_unconstrained,
    untouched_param_store,
)
from ppl_vae.inference.psis import MIN_TAIL, is_reliable, tail_length
from ppl_vae.inference.streaming import RunningLogMeanExp
from ppl_vae.models.base import check_positive_int
from ppl_vae.rng import keeps_global_rng

INITIALS = ("guide", "prior")
SCHEDULES = ("linear", "sigmoid")

#: Steepness of the sigmoidal schedule (Grosse et al., 2015, use 4): temperatures crowd
#: near beta = 0 and beta = 1, where the path's distributions change fastest.
SIGMOID_STEEPNESS = 4.0
#: Multiplicative step-size adaptation: eps <- eps * exp(ADAPT_RATE * (acceptance - target)).
ADAPT_RATE = 1.0
#: Bounds of the adapted step size (in units of the initial distribution's scales).
STEP_SIZE_RANGE = (1e-4, 2.0)
#: The chains' effective number (Kong's ESS of their weights) below which an AIS error bar is
#: not trusted: for log-normal weights ESS / C = exp(-var log w), so 1/3 is a spread of
#: about one nat, past which the delta method understates the error of log mean w.
MIN_ESS_SHARE = 1.0 / 3.0
#: Prior draws per point whose spread sets the mass matrix when annealing from the prior.
PRIOR_MOMENT_DRAWS = 64


@dataclass(frozen=True)
class AISConfig:
    """Settings of :func:`ais` and :func:`bdmc`.

    Attributes
    ----------
    num_temperatures : int
        T, the number of annealing distributions after f_0 (``beta_1 .. beta_T = 1``);
        T = 1 is plain importance sampling from f_0.
    num_chains : int
        Independent AIS chains per point; the estimate is the log-mean-exp of
        their weights and its standard error their spread.
    leapfrog_steps : int
        Leapfrog steps of the HMC transition at each temperature. For the
        same number of gradients, more temperatures with fewer steps gave
        tighter bounds on the demo VAE (40 simulated digits; median standard
        error of a digit's lower bound: 0.15 nats with T = 150 and 10 steps,
        0.10 with 300 and 5, 0.065 with 750 and 2, 0.087 with 1,500 and 1).
    initial : {"guide", "prior"}
        f_0: a Gaussian from the guide's q(z | x) (default), or the model's prior.
    schedule : {"linear", "sigmoid"}
        How the betas are spaced: evenly (default), or crowded at both ends
        (Grosse et al.'s sigmoid, made for paths from the prior). From the
        encoder's q(z | x) on the demo VAE, 40 simulated digits at T = 100,
        the mean BDMC gap was 0.01 ± 0.06 nats linear against 0.18 ± 0.06
        sigmoid (``benchmarks/ais_bdmc.py``).
    step_size : float
        The initial leapfrog step size, in units of f_0's per-dimension scales
        (the HMC mass matrix is f_0's precision).
    target_accept_prob : float
        Each point's step size is adapted after every temperature towards this
        mean acceptance probability (Wu et al., 2017, use 0.65).
    tuning_chains : int
        Extra chains per point, annealed beside the others, whose acceptance
        alone adapts the step size; their weights are not used. A step size
        adapted from the weighted chains' own acceptance depends on their
        states, which biases AIS (measured: +0.02 nats above log p(x) on a
        Gaussian target at 200 temperatures, 2.4 standard errors); from
        independent chains it does not.
    points_per_chunk : int
        Points annealed together (all their chains in one batched gradient);
        bounds memory. Each chunk draws from its own generator, seeded by
        ``seed`` and the chunk's index, so results do not depend on how the
        chunks are spread over processes.
    seed : int
    """

    num_temperatures: int = 500
    num_chains: int = 16
    leapfrog_steps: int = 2
    initial: str = "guide"
    schedule: str = "linear"
    step_size: float = 0.5
    target_accept_prob: float = 0.65
    tuning_chains: int = 4
    points_per_chunk: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_temperatures", "num_chains", "leapfrog_steps", "tuning_chains",
                     "points_per_chunk"):
            check_positive_int(getattr(self, name), name)
        if self.initial not in INITIALS:
            raise ConfigError(f"unknown initial distribution {self.initial!r}; choose one of "
                              f"{', '.join(INITIALS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not 0 < self.target_accept_prob < 1:
            raise ConfigError(f"target_accept_prob must lie in (0, 1); got {self.target_accept_prob}")
        if not self.step_size > 0:
            raise ConfigError(f"step_size must be > 0; got {self.step_size}")


def annealing_schedule(num_temperatures: int, kind: str = "linear") -> torch.Tensor:
    """The inverse temperatures ``beta_0 = 0 < beta_1 < ... < beta_T = 1``, float64.

    ``"sigmoid"`` is Grosse et al.'s rescaled logistic ``s(d (2t / T - 1))``
    with d = :data:`SIGMOID_STEEPNESS`; ``"linear"`` spaces them evenly.

    Returns
    -------
    Tensor, shape (num_temperatures + 1,)
    """
    check_positive_int(num_temperatures, "num_temperatures")
    steps = torch.linspace(0.0, 1.0, num_temperatures + 1, dtype=torch.float64)
    if kind == "linear" or num_temperatures == 1:
        return steps
    if kind != "sigmoid":
        raise ConfigError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    raw = torch.sigmoid(SIGMOID_STEEPNESS * (2.0 * steps - 1.0))
    return (raw - raw[0]) / (raw[-1] - raw[0])


#: ``densities(u) -> (log f_0(u), log p(x, u))`` per row, differentiable in ``u``.
Densities = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class _State:
    """Every row's position, its two log-densities and their gradients."""

    u: torch.Tensor
    log_initial: torch.Tensor
    log_target: torch.Tensor
    grad_initial: torch.Tensor
    grad_target: torch.Tensor

    def log_density(self, beta: float) -> torch.Tensor:
        return (1.0 - beta) * self.log_initial + beta * self.log_target

    def grad(self, beta: float) -> torch.Tensor:
        return (1.0 - beta) * self.grad_initial + beta * self.grad_target

    def select(self, keep_new: torch.Tensor, new: "_State") -> "_State":
        rows, vector = keep_new, keep_new[:, None]
        return _State(torch.where(vector, new.u, self.u),
                      torch.where(rows, new.log_initial, self.log_initial),
                      torch.where(rows, new.log_target, self.log_target),
                      torch.where(vector, new.grad_initial, self.grad_initial),
                      torch.where(vector, new.grad_target, self.grad_target))


def _evaluate(densities: Densities, u: torch.Tensor) -> _State:
    """Both log-densities and their gradients at ``u``: two backward passes over one graph.

    Rows whose position is not finite (a trajectory that flew off) get
    log-densities ``-inf`` and zero gradients without reaching the program;
    their proposals are rejected.
    """
    lost = ~torch.isfinite(u).all(-1, keepdim=True)
    with torch.enable_grad():
        where = torch.where(lost, torch.zeros_like(u), u).detach().requires_grad_(True)
        with pyro.validation_enabled(False):
            log_initial, log_target = densities(where)
        (grad_initial,) = torch.autograd.grad(log_initial.sum(), where, retain_graph=True)
        (grad_target,) = torch.autograd.grad(log_target.sum(), where)
    flat = lost.squeeze(-1)
    minus_inf = torch.full_like(log_initial, -math.inf).detach()
    zeros = torch.zeros_like(u)
    return _State(u.detach(), torch.where(flat, minus_inf, log_initial.detach()),
                  torch.where(flat, minus_inf, log_target.detach()),
                  torch.where(lost, zeros, grad_initial), torch.where(lost, zeros, grad_target))


@dataclass
class AnnealingRun:
    """What one AIS pass over a chunk of points leaves.

    Attributes
    ----------
    log_weights : Tensor, shape (num_chains, num_points)
        Each chain's log-weight (forward: an estimate of log p(x); reverse:
        of -log p(x)).
    final : Tensor, shape (num_chains, num_points, latent_dim)
        The chains' last positions, unconstrained (forward: approximate
        posterior draws; reverse: draws near f_0).
    acceptance : Tensor, shape (num_temperatures - 1, num_points)
        Mean acceptance probability over the chains at each transition.
    step_size : Tensor, shape (num_temperatures - 1, num_points)
        The step size each transition used.
    """

    log_weights: torch.Tensor
    final: torch.Tensor
    acceptance: torch.Tensor
    step_size: torch.Tensor


def anneal(densities: Densities, init: torch.Tensor, scale: torch.Tensor, betas: torch.Tensor,
           config: AISConfig, generator: torch.Generator,
           step_sizes: torch.Tensor | None = None) -> AnnealingRun:
    """Run AIS chains along ``betas``: transitions at every inner temperature, weights summed.

    The same code runs forward (``betas`` from 0 to 1, chains started from
    f_0) and in reverse (from 1 to 0, chains started from exact posterior
    draws). The HMC kernel at temperature beta has potential
    ``-log f_beta`` and inverse mass ``scale**2``; no transition is made at
    the two ends, where the chains start and where the weights are complete.

    Parameters
    ----------
    densities : callable
        ``u -> (log f_0(u), log p(x, u))``, each shape (rows,), for ``u`` of
        shape (rows, latent_dim), rows ordered chain-major.
    init : Tensor, shape (chains * num_points, latent_dim)
        ``chains`` is ``config.num_chains``, plus ``config.tuning_chains``
        (the last ones) when the step size is adapted.
    scale : Tensor, shape (chains * num_points, latent_dim)
        f_0's standard deviations: the leapfrog's preconditioning.
    betas : Tensor, shape (T + 1,)
    config : AISConfig
    generator : torch.Generator
        Momenta and acceptance draws.
    step_sizes : Tensor, shape (T - 1, num_points), optional
        Fixed step sizes per transition (a reverse run reuses its forward
        run's); adapted from the tuning chains when None.

    Returns
    -------
    AnnealingRun
        Of the ``config.num_chains`` weighted chains.
    """
    chains = config.num_chains + (config.tuning_chains if step_sizes is None else 0)
    rows, dim = init.shape
    num_points = rows // chains
    weighted = config.num_chains * num_points
    state = _evaluate(densities, init)
    log_weights = init.new_zeros(weighted, dtype=torch.float64)
    inverse_mass = scale.pow(2)
    epsilon = init.new_full((num_points,), config.step_size)
    acceptance, used = [], []
    betas = betas.tolist()
    for t in range(1, len(betas)):
        increment = state.log_target[:weighted] - state.log_initial[:weighted]
        log_weights += (betas[t] - betas[t - 1]) * increment.double()
        if t == len(betas) - 1:
            break
        if step_sizes is not None:
            epsilon = step_sizes[t - 1].to(init.dtype)
        state, accept_prob = _hmc_transition(densities, state, betas[t], epsilon, scale, inverse_mass,
                                             config.leapfrog_steps, generator)
        by_chain = accept_prob.reshape(chains, num_points)
        acceptance.append(by_chain[:config.num_chains].mean(0))
        used.append(epsilon)
        if step_sizes is None:
            tuning = by_chain[config.num_chains:].mean(0) if config.tuning_chains else acceptance[-1]
            epsilon = (epsilon * torch.exp(ADAPT_RATE * (tuning - config.target_accept_prob))
                       ).clamp(*STEP_SIZE_RANGE)
    empty = init.new_zeros(0, num_points)
    return AnnealingRun(log_weights.reshape(config.num_chains, num_points),
                        state.u[:weighted].reshape(config.num_chains, num_points, dim),
                        torch.stack(acceptance) if acceptance else empty,
                        torch.stack(used) if used else empty)


def _hmc_transition(densities: Densities, state: _State, beta: float, epsilon: torch.Tensor,
                    scale: torch.Tensor, inverse_mass: torch.Tensor, leapfrog_steps: int,
                    generator: torch.Generator) -> tuple[_State, torch.Tensor]:
    """One HMC proposal per row, accepted by Metropolis; returns the new state and P(accept)."""
    rows = state.u.shape[0]
    step = epsilon.repeat(rows // epsilon.shape[0])[:, None]
    noise = torch.randn(state.u.shape, generator=generator, device=state.u.device, dtype=state.u.dtype)
    momentum = noise / scale  # r ~ N(0, M) with M = diag(1 / scale^2)
    start_energy = -state.log_density(beta) + 0.5 * (noise * noise).sum(-1)
    proposal = state
    momentum = momentum + 0.5 * step * proposal.grad(beta)
    for leapfrog in range(leapfrog_steps):
        proposal = _evaluate(densities, proposal.u + step * inverse_mass * momentum)
        kick = step if leapfrog < leapfrog_steps - 1 else 0.5 * step
        momentum = momentum + kick * proposal.grad(beta)
    energy = -proposal.log_density(beta) + 0.5 * (inverse_mass * momentum * momentum).sum(-1)
    accept_prob = torch.exp((start_energy - energy).clamp(max=0.0)).nan_to_num(nan=0.0)
    uniform = torch.rand(rows, generator=generator, device=state.u.device, dtype=state.u.dtype)
    finite = torch.isfinite(proposal.u).all(-1) & torch.isfinite(proposal.grad(beta)).all(-1)
    return state.select((uniform < accept_prob) & finite, proposal), accept_prob * finite


# ----- the densities of a model's program -------------------------------------------------------

@dataclass(frozen=True)
class _Problem:
    """A model's target, its structure and f_0 for some points."""

    target: Target
    x: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor
    initial: str

    def densities(self, num_chains: int) -> Densities:
        """``u -> (log f_0(u), log p(x, u))`` for chain-major rows of ``num_chains`` copies of the points."""
        x_rows = _repeat_rows(self.x, num_chains)
        if self.initial == "prior":
            return lambda u: self.target.log_prior_and_joint(x_rows, u)
        loc, scale = _repeat_rows(self.loc, num_chains), _repeat_rows(self.scale, num_chains)
        normalizer = scale.log().sum(-1) + 0.5 * loc.shape[-1] * math.log(2 * math.pi)

        def densities(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            log_initial = -0.5 * ((u - loc) / scale).pow(2).sum(-1) - normalizer
            return log_initial, self.target.log_prior_and_joint(x_rows, u)[1]

        return densities


def _repeat_rows(values: torch.Tensor, copies: int) -> torch.Tensor:
    return values.detach().repeat(copies, *([1] * (values.dim() - 1)))


def _setup(model: object, x: torch.Tensor, guide: object, config: AISConfig, where: str) -> Program:
    """Check the data and settings; the program, compiled once, with a continuous latent site."""
    program = resolve(model, x, guide, where)
    if config.initial == "guide" and program.guide_program is None:
        raise ConfigError(f"{where} with initial='guide' needs a guide: pass guide=..., or "
                          "initial='prior' to anneal from the prior")
    structure = program.require(x, where)
    if not structure.continuous:
        raise ConfigError(f"{where}: the model has no continuous latent site; its log p(x) is "
                          "exact by enumeration (iwae with any K gives it)")
    return program


def _chunks(num_points: int, config: AISConfig) -> Iterator[tuple[int, slice]]:
    for index, start in enumerate(range(0, num_points, config.points_per_chunk)):
        yield index, slice(start, min(start + config.points_per_chunk, num_points))


def chunk_generator(config: AISConfig, index: int, device: torch.device) -> torch.Generator:
    """The generator of chunk ``index``: seeded by the run's seed and the chunk alone."""
    return torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + index)


def _start(problem: _Problem, structure: ProgramStructure, config: AISConfig,
           generator: torch.Generator, seed: int) -> torch.Tensor:
    """Starting points drawn from f_0 for every chain, tuning ones included: rows (chains * num_points, dim)."""
    chains = config.num_chains + config.tuning_chains
    if problem.initial == "prior":
        return _prior_draws(problem.target, problem.x, structure, chains, seed)
    loc, scale = (_repeat_rows(v, chains) for v in (problem.loc, problem.scale))
    noise = torch.randn(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)
    return loc + scale * noise


def _prior_draws(target: Target, x: torch.Tensor, structure: ProgramStructure, num_chains: int,
                 seed: int) -> torch.Tensor:
    """``num_chains`` draws per point of the continuous latents from the model's prior, unconstrained.

    The program runs on ``num_chains`` chain-major copies of the rows (no
    extra plate), so programs that do not broadcast are drawn from too.

    Returns
    -------
    Tensor, shape (num_chains * num_points, latent_dim)
    """
    rows = _repeat_rows(x, num_chains)
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad(), untouched_param_store():
        torch.manual_seed(seed)
        if target.direct:
            return target.model.prior(rows).sample()
        with pyro.validation_enabled(False):
            trace = poutine.trace(target.program).get_trace(rows)
        values = {site.name: trace.nodes[site.name]["value"] for site in structure.continuous}
        return to_unconstrained(values, structure).reshape(len(rows), -1)


def _estimate(log_weights: list[torch.Tensor], dtype: torch.dtype, negate: bool = False) -> Estimate:
    """log-mean-exp over the chains per point (negated for a reverse run), its error, k̂ and ESS.

    The error is the delta-method one over the chains. It is trusted where
    the chains' weights are of similar size, an effective number of at least
    :data:`MIN_ESS_SHARE` of the chains (for log-normal weights: a spread of
    the log-weights below about one nat), and, with 25 chains or more (enough
    for a Pareto fit), where k̂ passes :func:`~ppl_vae.inference.psis.is_reliable`;
    elsewhere it is ``inf`` and the point is flagged: more temperatures help.
    """
    weights = torch.cat(log_weights, dim=1)
    num_chains = weights.shape[0]
    running = RunningLogMeanExp(num_chains)
    running.update(weights)
    value, stderr = running.result(dtype)
    diagnostics = running.diagnostics()
    ess = diagnostics["ess"].to(value.device)
    reliable = ess >= MIN_ESS_SHARE * num_chains
    k = None
    if tail_length(num_chains) >= MIN_TAIL:
        k = diagnostics["pareto_k"].to(value.device)
        reliable &= is_reliable(k, num_chains)
    trusted = torch.where(reliable, stderr, torch.full_like(stderr, math.inf))
    sign = -1.0 if negate else 1.0
    return Estimate(sign * value, trusted, num_chains, k, ess.to(dtype), stderr, reliable)


def _problem(program: Program, x: torch.Tensor, config: AISConfig) -> _Problem:
    """f_0 for some points: the guide's Gaussian, or the prior (its draws' moments set the mass)."""
    target = program.target
    if config.initial == "prior":
        draws = _prior_draws(target, x, target.structure, PRIOR_MOMENT_DRAWS, config.seed)
        draws = draws.reshape(PRIOR_MOMENT_DRAWS, len(x), -1)
        loc, scale = draws.mean(0), draws.std(0).clamp_min(1e-3)
    else:
        with torch.no_grad():
            loc, scale = program.starting_region(x, config.seed)
    return _Problem(target, x, loc.detach(), scale.detach(), config.initial)


def num_chunks(num_points: int, config: AISConfig) -> int:
    """How many chunks of ``config.points_per_chunk`` points ``num_points`` make."""
    return -(-num_points // config.points_per_chunk)


@keeps_global_rng
def ais_log_weights(model: object, x: torch.Tensor, guide: object = None,
                    config: AISConfig = AISConfig(), chunks: Sequence[int] | None = None,
                    progress: Callable[[int], None] | None = None) -> dict[int, torch.Tensor]:
    """The chains' AIS log-weights of some chunks of points: :func:`ais`'s work, shardable.

    Each chunk draws from its own generator (:func:`chunk_generator`), so the
    weights of a chunk are the same whichever process computes it: processes
    that share the chunks out and gather the results reproduce one process's
    estimate exactly (``ppl-vae evaluate --ais`` under ``torchrun``).

    Parameters
    ----------
    model, x, guide, config
        As for :func:`ais`.
    chunks : sequence of int, optional
        Indices of the chunks to run (default: all :func:`num_chunks`).
    progress : callable, optional
        Called with the number of points finished after each chunk.

    Returns
    -------
    dict of int to Tensor, each shape (num_chains, points in the chunk)
    """
    program = _setup(model, x, guide, config, "ais")
    target = program.target
    betas = annealing_schedule(config.num_temperatures, config.schedule)
    chains = config.num_chains + config.tuning_chains
    wanted = range(num_chunks(len(x), config)) if chunks is None else chunks
    weights, done = {}, 0
    for index, rows in _chunks(len(x), config):
        if index not in wanted:
            continue
        problem = _problem(program, x[rows], config)
        generator = chunk_generator(config, index, x.device)
        init = _start(problem, target.structure, config, generator, config.seed + index)
        weights[index] = anneal(problem.densities(chains), init, _repeat_rows(problem.scale, chains),
                                betas, config, generator).log_weights
        done += rows.stop - rows.start
        if progress is not None:
            progress(done)
    return weights


def estimate_from_log_weights(log_weights: dict[int, torch.Tensor], dtype: torch.dtype) -> Estimate:
    """The :func:`ais` estimate from every chunk's log-weights (in chunk order)."""
    return _estimate([log_weights[index] for index in sorted(log_weights)], dtype)


def ais(model: object, x: torch.Tensor, guide: object = None, config: AISConfig = AISConfig(),
        progress: Callable[[int], None] | None = None) -> Estimate:
    """log p(x) per point by annealed importance sampling from f_0 to p(x, z).

    Parameters
    ----------
    model : ProbabilisticModel or callable or Program
        A trained model, or a Pyro program ``model(x)`` whose latent sites lie
        in a plate over the rows of ``x`` (the contract of
        :func:`~ppl_vae.inference.mcmc.api.sample_posterior`).
    x : Tensor, shape (num_points, data_dim)
    guide : callable, optional
        The guide whose q(z | x) gives f_0 (default: the model object's own).
    config : AISConfig
    progress : callable, optional
        Called with the number of points finished after each chunk.

    Returns
    -------
    Estimate
        ``per_point``: log mean_c w_c, a stochastic lower bound on log p(x)
        (``exp`` of it is unbiased); ``stderr``: its delta-method error over
        the chains, ``inf`` where the chains' weights are too uneven to trust
        it (``flagged``); ``num_samples``: the number of chains;
        ``pareto_k`` (with 25 chains or more), ``ess``: of the chains' weights.

    Examples
    --------
    Probabilistic PCA, whose log p(x) is known exactly; its untrained guide
    is the prior, a poor start. More temperatures close the gap:

    >>> import pyro
    >>> import torch
    >>> from ppl_vae import LinearGaussian
    >>> from ppl_vae.inference.ais import AISConfig, ais
    >>> pyro.set_rng_seed(0)
    >>> ppca = LinearGaussian(data_dim=16, latent_dim=2, noise_scale=0.5)
    >>> x = ppca.sample(10, mean=False)
    >>> exact = ppca.log_marginal(x).mean().item()
    >>> few = ais(ppca, x, config=AISConfig(num_temperatures=10, num_chains=8))
    >>> many = ais(ppca, x, config=AISConfig(num_temperatures=200, num_chains=8))
    >>> bool(exact - many.mean < exact - few.mean)
    True
    >>> abs(exact - many.mean) < 0.5               # nats per point
    True
    """
    return estimate_from_log_weights(ais_log_weights(model, x, guide, config, progress=progress),
                                     x.dtype)


@dataclass(frozen=True)
class BDMCResult:
    """The sandwich of bidirectional Monte Carlo on data simulated from the model.

    Attributes
    ----------
    lower : Estimate
        Forward AIS: a stochastic lower bound on log p(x) per simulated point.
    upper : Estimate
        Reverse AIS from the exact posterior draw that generated each point: a
        stochastic upper bound.
    x : Tensor, shape (num_points, data_dim)
        The simulated data.
    config : AISConfig
    """

    lower: Estimate
    upper: Estimate
    x: torch.Tensor
    config: AISConfig

    @property
    def gap(self) -> torch.Tensor:
        """Upper minus lower bound per point, shape (num_points,): the forward run's error is below it."""
        return self.upper.per_point - self.lower.per_point

    @property
    def mean_gap(self) -> float:
        return float(self.gap.mean())

    def temperatures_for(self, gap: float) -> int:
        """Temperatures that would bring the mean gap to ``gap`` nats: AIS's bias falls as 1 / T."""
        current = max(self.mean_gap, 0.0)
        return max(1, math.ceil(self.config.num_temperatures * current / gap))


def simulate(model: object, x: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Draw (z, x) from the model's program, one point per row of the template ``x``.

    Parameters
    ----------
    model : ProbabilisticModel or callable or Program
        Its program must have one observed site whose value has the shape of ``x``.
    x : Tensor, shape (num_points, ...)
        Only its shape, dtype and device are used (and any arguments the
        program reads from it besides the observed values).
    seed : int

    Returns
    -------
    x : Tensor, the shape of the template
    latents : dict of str to Tensor, each shape (num_points,) + event_shape
        Every latent site's value; the continuous ones are an exact posterior draw for the new ``x``.
    """
    program = model.model if isinstance(model, Program) else program_pair(model)[0]
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad(), pyro.validation_enabled(False), \
            untouched_param_store():
        torch.manual_seed(seed)
        trace = poutine.trace(poutine.uncondition(program)).get_trace(x)
    observed = [name for name, site in trace.nodes.items()
                if site["type"] == "sample" and site["is_observed"] or site.get("infer", {}).get("was_observed")]
    if len(observed) != 1 or trace.nodes[observed[0]]["value"].numel() != x.numel():
        raise ConfigError(
            f"bdmc simulates data from the model and needs one observed site with the data's shape "
            f"{tuple(x.shape)}; the program observes {observed}. Run ais on your data instead")
    latents = {name: site["value"] for name, site in trace.nodes.items()
               if site["type"] == "sample" and name not in observed and not site["is_observed"]}
    return trace.nodes[observed[0]]["value"].reshape(x.shape).to(x.dtype), latents


@keeps_global_rng
def bdmc(model: object, x: torch.Tensor, guide: object = None, config: AISConfig = AISConfig(),
         progress: Callable[[int], None] | None = None) -> BDMCResult:
    """Bidirectional Monte Carlo: forward and reverse AIS on data simulated from the model.

    One point is simulated per row of ``x`` (z ~ p(z), x ~ p(x | z), seeded by
    ``config.seed``); the z that generated each point is an exact draw from its
    posterior, where the reverse run starts. The reverse run anneals along
    the same temperatures backwards with the forward run's step sizes (fixed,
    so its estimate of 1 / p(x) is unbiased given them).

    Parameters
    ----------
    model : ProbabilisticModel or callable or Program
    x : Tensor, shape (num_points, data_dim)
        Templates for the simulated points (their number, shape and device).
    guide : callable, optional
        As for :func:`ais`.
    config : AISConfig
    progress : callable, optional
        Called with the number of points finished after each chunk.

    Returns
    -------
    BDMCResult

    Examples
    --------
    The two bounds sandwich the exact log p(x) of the simulated points
    (probabilistic PCA, where it is known); so few temperatures leave a
    wide sandwich, and ``temperatures_for`` says how many would narrow it:

    >>> import pyro
    >>> import torch
    >>> from ppl_vae import LinearGaussian
    >>> from ppl_vae.inference.ais import AISConfig, bdmc
    >>> pyro.set_rng_seed(0)
    >>> ppca = LinearGaussian(data_dim=16, latent_dim=2, noise_scale=0.5)
    >>> result = bdmc(ppca, torch.zeros(10, 16), config=AISConfig(num_temperatures=10, num_chains=8))
    >>> exact = ppca.log_marginal(result.x).mean().item()    # result.x: the simulated points
    >>> result.lower.mean < exact < result.upper.mean
    True
    >>> result.gap.shape
    torch.Size([10])
    >>> result.temperatures_for(0.1) > 10
    True
    """
    program = _setup(model, x, guide, config, "bdmc")
    target = program.target
    simulated, latents = simulate(program, x, config.seed)
    exact = to_unconstrained({site.name: latents[site.name] for site in target.structure.continuous},
                             target.structure).reshape(len(x), -1)
    betas = annealing_schedule(config.num_temperatures, config.schedule)
    forward, reverse = [], []
    for index, rows in _chunks(len(x), config):
        problem = _problem(program, simulated[rows], config)
        chains = config.num_chains + config.tuning_chains
        generator = chunk_generator(config, index, x.device)
        init = _start(problem, target.structure, config, generator, config.seed + index)
        ahead = anneal(problem.densities(chains), init, _repeat_rows(problem.scale, chains), betas,
                       config, generator)
        back = anneal(problem.densities(config.num_chains), _repeat_rows(exact[rows], config.num_chains),
                      _repeat_rows(problem.scale, config.num_chains), betas.flip(0), config, generator,
                      step_sizes=ahead.step_size.flip(0))
        forward.append(ahead.log_weights)
        reverse.append(back.log_weights)
        if progress is not None:
            progress(rows.stop)
    return BDMCResult(_estimate(forward, x.dtype), _estimate(reverse, x.dtype, negate=True),
                      simulated, config)


__all__ = ["AISConfig", "AnnealingRun", "BDMCResult", "ais", "ais_log_weights", "anneal",
           "annealing_schedule", "bdmc", "chunk_generator", "estimate_from_log_weights", "num_chunks",
           "simulate"]
