"""NUTS for many independent targets at once: one tree per chain, one batched gradient per step.

The latent posteriors p(z | x_i) of different data points are independent
given the decoder. One NUTS run over all of them (a joint target) must use a
single step size and a single U-turn criterion, so the hardest point sets the
pace of all; one run per point pays Python overhead on every tiny gradient.
This sampler keeps every chain's NUTS its own (step size, diagonal mass
matrix, trajectory, U-turns, divergences) and advances all chains together:
each step takes one leapfrog step in every chain, whatever stage of its own
tree it is in, so the potential and its gradient are evaluated once per step
for the whole batch. A chain whose draw is complete starts its next one at
the following step; nothing waits except at the shared adaptation windows.

The tree is the iterative form of multinomial NUTS used by NumPyro (Phan et
al., 2019): a trajectory doubles in a random direction; within a new subtree
leaves are sampled progressively in proportion to exp(-H), the subtree joins
the trajectory by the biased transition of Betancourt (2017, appendix A.3.2),
and U-turns of every sub-subtree are checked from momentum checkpoints kept
at even leaves. Warm-up follows Stan: dual averaging of the step size and a
diagonal mass matrix re-estimated at the end of each slow window
(:mod:`ppl_vae.inference.mcmc.adaptation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.inference.mcmc.adaptation import DualAveraging, RunningCovariance, warmup_stages
from ppl_vae.inference.mcmc.compiled_blocks import CompiledBlocks

#: A leaf whose energy exceeds the starting energy by more than this is a divergence (Pyro's and Stan's value).
MAX_DELTA_ENERGY = 1000.0
#: Acceptance probability that the initial step-size search aims to cross (Hoffman & Gelman, algorithm 4).
STEP_SEARCH_ACCEPT = 0.8
#: The initial step-size search halves or doubles at most this many times.
MAX_STEP_SEARCH = 60
#: In masked mode the host asks whether any chain is still running once per this many steps
#: (the steps in between cost a few masked no-op updates once every chain is done).
HOST_CHECK_EVERY = 16

#: potential(z, chains) -> U(z) = -log density (up to a constant), one value per row.
#: ``chains`` holds the indices of the chains whose positions are the rows of ``z``.
Potential = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class BatchedNUTSResult:
    """Draws and per-draw statistics of every chain.

    Attributes
    ----------
    samples : Tensor, shape (chains, num_samples, dim)
    num_steps : Tensor of int64, shape (chains, num_samples)
        Leapfrog steps (gradient evaluations) spent on each draw.
    tree_depth : Tensor of int64, shape (chains, num_samples)
        Number of trajectory doublings.
    diverging : Tensor of bool, shape (chains, num_samples)
    acceptance_rate : Tensor, shape (chains, num_samples)
        Mean acceptance probability over the draw's leapfrog steps.
    step_size : Tensor, shape (chains,)
        Each chain's adapted step size.
    inverse_mass : Tensor, shape (chains, dim) or (chains, dim, dim)
        Each chain's adapted inverse mass matrix, diagonal or dense.
    num_gradient_batches : int
        Batched potential-and-gradient evaluations of the whole run, warm-up included.
    """

    samples: torch.Tensor
    num_steps: torch.Tensor
    tree_depth: torch.Tensor
    diverging: torch.Tensor
    acceptance_rate: torch.Tensor
    step_size: torch.Tensor
    inverse_mass: torch.Tensor
    num_gradient_batches: int


class Metric:
    """Each chain's inverse mass matrix: diagonal, shape (chains, dim), or dense, (chains, dim, dim).

    The inverse mass matrix is the expected posterior covariance; momenta are
    drawn from N(0, M) and the velocity is ``M^-1 r``.
    """

    def __init__(self, inverse_mass: torch.Tensor) -> None:
        self.inverse_mass = inverse_mass
        self.dense = inverse_mass.dim() == 3
        if self.dense:  # r = L^-T eps has covariance (L L^T)^-1 = M for inverse_mass = L L^T.
            factor = torch.linalg.cholesky(inverse_mass)
            eye = torch.eye(inverse_mass.shape[-1], dtype=inverse_mass.dtype, device=inverse_mass.device)
            self._momentum_factor = torch.linalg.solve_triangular(factor, eye, upper=False).transpose(-1, -2)
        else:
            self._momentum_factor = inverse_mass.rsqrt()

    def velocity(self, r: torch.Tensor, chains: torch.Tensor | None = None) -> torch.Tensor:
        """``M^-1 r`` for momenta of shape (chains, dim) or (chains, k, dim); ``chains`` selects rows."""
        inverse_mass = self.inverse_mass if chains is None else self.inverse_mass[chains]
        if self.dense and torch.compiler.is_compiling():  # a product the compiler fuses (bmm it cannot)
            return (r[..., :, None] * (inverse_mass if r.dim() == 2 else inverse_mass[:, None])).sum(-2)
        if self.dense:  # r^T M^-1 = (M^-1 r)^T: the matrix is symmetric
            return torch.bmm(r[:, None, :], inverse_mass).squeeze(1) if r.dim() == 2 else torch.bmm(r, inverse_mass)
        return (inverse_mass if r.dim() == 2 else inverse_mass[:, None, :]) * r

    def kinetic(self, r: torch.Tensor) -> torch.Tensor:
        """``r^T M^-1 r / 2`` per chain."""
        return 0.5 * (r * self.velocity(r)).sum(-1)

    def momentum(self, noise: torch.Tensor) -> torch.Tensor:
        """Momenta ~ N(0, M) from standard normal ``noise`` of shape (chains, dim)."""
        if self.dense and torch.compiler.is_compiling():
            return (self._momentum_factor * noise[:, None, :]).sum(-1)
        if self.dense:
            return torch.bmm(self._momentum_factor, noise[:, :, None]).squeeze(-1)
        return noise * self._momentum_factor


def _is_turning(metric: Metric, r_left: torch.Tensor, r_right: torch.Tensor, r_sum: torch.Tensor) -> torch.Tensor:
    """Generalized no-U-turn criterion (Betancourt 2017, A.4.2), over the last dimension."""
    r_sum = r_sum - 0.5 * (r_left + r_right)
    return (((metric.velocity(r_left) * r_sum).sum(-1) <= 0)
            | ((metric.velocity(r_right) * r_sum).sum(-1) <= 0))


def _checkpoint_tables(max_tree_depth: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For each leaf index n of a subtree: the checkpoints whose sub-subtrees end at leaf n.

    ``max`` is the number of set bits of ``n >> 1`` (where an even leaf stores
    its checkpoint); ``min = max - (trailing ones of n) + 1``, so an even leaf
    checks nothing (NumPyro's ``_leaf_idx_to_ckpt_idxs``).
    """
    leaves = range(2 ** max_tree_depth)
    idx_max = [(n >> 1).bit_count() for n in leaves]
    idx_min = [m - (len(bin(n)) - len(bin(n).rstrip("1"))) + 1 for n, m in zip(leaves, idx_max)]
    return (torch.tensor(idx_min, dtype=torch.long, device=device),
            torch.tensor(idx_max, dtype=torch.long, device=device))


class _Sampler:
    """The state of all chains' trees; :meth:`step` advances every live chain by one leapfrog step.

    A point of a trajectory is one row ``[z, r, grad U(z), U(z)]`` (width
    ``3 * dim + 1``), so that copying points between the trajectory's edges,
    its front and its proposals is one masked operation per copy.
    """

    def __init__(self, potential: Potential, init: torch.Tensor, metric: Metric, max_tree_depth: int,
                 generator: torch.Generator | None, masked: bool = False,
                 before_gradient: Callable[[], None] | None = None) -> None:
        self.potential = potential
        self.before_gradient = before_gradient
        self.masked = masked
        #: Random numbers drawn ahead, used in order before the generator (see :meth:`twin`).
        self.noise: list[torch.Tensor] = []
        self.in_block = False
        self.generator = generator
        self.max_tree_depth = max_tree_depth
        num_chains, self.dim = init.shape
        self.all_chains = torch.arange(num_chains, device=init.device)
        self.metric = metric
        self.num_gradient_batches = 0
        u, g = self.potential_and_grad(init, self.all_chains)
        bad = ~(u.isfinite() & g.isfinite().all(-1))
        if bool(bad.any()):
            rows = bad.nonzero().flatten().tolist()[:5]
            raise DataError(f"the log density or its gradient is not finite at the starting point of "
                            f"chain(s) {rows}; start the chains inside the support of the target")
        self.current = torch.cat([init, torch.zeros_like(init), g, u[:, None]], -1)
        self.left, self.right, self.front = (self.current.clone() for _ in range(3))
        self.proposal, self.sub_proposal = self.current.clone(), self.current.clone()
        self.step_size = torch.ones(num_chains, dtype=init.dtype, device=init.device)
        self.iteration = torch.zeros(num_chains, dtype=torch.long, device=init.device)
        self.ckpt_min, self.ckpt_max = _checkpoint_tables(max_tree_depth, init.device)
        self.ckpt_slots = torch.arange(max_tree_depth, device=init.device)
        false = torch.zeros(num_chains, dtype=torch.bool, device=init.device)
        self.fresh, self.new_subtree, self.going_right = ~false, false.clone(), false.clone()
        self.sub_turning, self.sub_diverging = false.clone(), false.clone()
        self.energy0, self.tree_weight, self.sub_weight, self.accept_sum, self.sub_accept_sum = (
            torch.zeros_like(u) for _ in range(5))
        self.depth, self.num_steps, self.sub_size = (torch.zeros_like(self.iteration) for _ in range(3))
        self.r_sum, self.sub_r_sum = torch.zeros_like(init), torch.zeros_like(init)
        self.r_ckpts = init.new_zeros(num_chains, max_tree_depth, self.dim)
        self.r_sum_ckpts = init.new_zeros(num_chains, max_tree_depth, self.dim)

    def twin(self, state: dict[str, torch.Tensor]) -> _Sampler:
        """A sampler sharing this one's potential and metric, in the given state (the rest copied).

        What a compiled block builds inside its graph to run :meth:`step` on the
        state it carries (``copy.copy`` without touching this object).
        """
        twin = object.__new__(type(self))
        for name, value in vars(self).items():
            if name != "num_gradient_batches":  # a count the host keeps (a graph would specialize on it)
                setattr(twin, name, state.get(name, value))
        twin.noise, twin.num_gradient_batches, twin.in_block = [], 0, True
        return twin

    # -- the parts of a packed point ---------------------------------------------------------
    def _z(self, point: torch.Tensor) -> torch.Tensor:
        return point[:, :self.dim]

    def _r(self, point: torch.Tensor) -> torch.Tensor:
        return point[:, self.dim:2 * self.dim]

    def _grad(self, point: torch.Tensor) -> torch.Tensor:
        return point[:, 2 * self.dim:3 * self.dim]

    def _u(self, point: torch.Tensor) -> torch.Tensor:
        return point[:, -1]

    def _energy(self, point: torch.Tensor) -> torch.Tensor:
        """The Hamiltonian U(z) + K(r) of packed points."""
        return self._u(point) + self.metric.kinetic(self._r(point))

    @property
    def z(self) -> torch.Tensor:
        """Current position of every chain, shape (chains, dim)."""
        return self._z(self.current)

    # -- random numbers and gradients -------------------------------------------------------
    def _momentum(self) -> torch.Tensor:
        if self.noise:
            return self.metric.momentum(self.noise.pop(0))
        noise = torch.randn(self.z.shape, generator=self.generator, dtype=self.z.dtype, device=self.z.device)
        return self.metric.momentum(noise)

    def _uniform(self) -> torch.Tensor:
        if self.noise:
            return self.noise.pop(0)
        return torch.rand(self.step_size.shape, generator=self.generator, dtype=self.step_size.dtype,
                          device=self.step_size.device)

    def potential_and_grad(self, z: torch.Tensor, chains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """U(z) and its gradient for the given chains, one batched evaluation."""
        if self.in_block:  # torch.func's gradient, which graphs trace; the block counts its steps itself
            def total(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                u = self.potential(z, chains)
                return u.sum(), u
            grad, (_, u) = torch.func.grad_and_value(total, has_aux=True)(z)
            return u, grad
        self.num_gradient_batches += 1
        if self.before_gradient is not None:
            self.before_gradient()
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            u = self.potential(z, chains)
            (grad,) = torch.autograd.grad(u.sum(), z)
        return u.detach(), grad

    def _leapfrog(self, z: torch.Tensor, r: torch.Tensor, g: torch.Tensor, step: torch.Tensor,
                  chains: torch.Tensor) -> torch.Tensor:
        """One velocity-Verlet step of the given chains; returns the packed points reached."""
        step = step[:, None]
        r = r - 0.5 * step * g
        z = z + step * self.metric.velocity(r, None if len(chains) == len(self.all_chains) else chains)
        u, g = self.potential_and_grad(z, chains)
        return torch.cat([z, r - 0.5 * step * g, g, u[:, None]], -1)

    # -- one leapfrog step of every live chain ------------------------------------------------
    def step(self, live: torch.Tensor) -> torch.Tensor:
        """Advance each chain in ``live`` by one leapfrog step of its current tree.

        Returns
        -------
        Tensor of bool, shape (chains,)
            Chains whose draw was completed by this step; their new position is ``self.z``.
        """
        where = torch.where
        if self.masked or bool((self.fresh & live).any()):
            self._start_iterations(self.fresh & live)
        if self.masked or bool((self.new_subtree & live).any()):
            self._start_subtrees(self.new_subtree & live)
        self._advance_front(live)
        leaf_r = self._r(self.front)

        # The new leaf joins the subtree: progressive sampling in proportion to exp(-H).
        delta = self._energy(self.front) - self.energy0
        delta = torch.nan_to_num(delta, nan=math.inf)
        first = self.sub_size == 0
        new_sub_weight = where(first, -delta, torch.logaddexp(self.sub_weight, -delta))
        take = live & (first | (self._uniform() < (-delta - new_sub_weight).exp()))
        self.sub_proposal = where(take[:, None], self.front, self.sub_proposal)
        self.sub_weight = where(live, new_sub_weight, self.sub_weight)
        live_column = live[:, None]
        self.sub_r_sum = where(live_column, self.sub_r_sum + leaf_r, self.sub_r_sum)
        self.sub_accept_sum = where(live, self.sub_accept_sum + (-delta).clamp(max=0).exp(), self.sub_accept_sum)
        self.sub_diverging = live & (delta > MAX_DELTA_ENERGY)
        self._check_subtree_turning(live, leaf_r)
        self.sub_size = self.sub_size + live.long()

        done = live & ((self.sub_size == 1 << self.depth) | self.sub_turning | self.sub_diverging)
        return self._merge_subtrees(done)

    def _start_iterations(self, start: torch.Tensor) -> None:
        """Chains starting a draw: fresh momentum, and a trajectory of one point."""
        r0 = self._momentum()
        point = self.current.clone()
        self._r(point).copy_(r0)
        column = start[:, None]
        self.left = torch.where(column, point, self.left)
        self.right = torch.where(column, point, self.right)
        self.proposal = torch.where(column, point, self.proposal)
        self.energy0 = torch.where(start, self._energy(point), self.energy0)
        self.r_sum = torch.where(column, r0, self.r_sum)
        self.tree_weight = self.tree_weight.masked_fill(start, 0)
        self.accept_sum = self.accept_sum.masked_fill(start, 0)
        self.depth = self.depth.masked_fill(start, 0)
        self.num_steps = self.num_steps.masked_fill(start, 0)
        self.new_subtree = self.new_subtree | start
        self.fresh = self.fresh & ~start

    def _start_subtrees(self, begin: torch.Tensor) -> None:
        """Chains starting a doubling: pick its direction; its first leaf grows from that edge."""
        self.going_right = torch.where(begin, self._uniform() < 0.5, self.going_right)
        edge = torch.where(self.going_right[:, None], self.right, self.left)
        self.front = torch.where(begin[:, None], edge, self.front)
        self.sub_size = self.sub_size.masked_fill(begin, 0)
        self.sub_r_sum = self.sub_r_sum.masked_fill(begin[:, None], 0)
        self.sub_accept_sum = self.sub_accept_sum.masked_fill(begin, 0)
        self.new_subtree = self.new_subtree & ~begin

    def _advance_front(self, live: torch.Tensor) -> None:
        """One leapfrog step from each live chain's front leaf (backwards in time when going left)."""
        step = torch.where(self.going_right, self.step_size, -self.step_size)
        front = self.front
        if self.masked:  # every chain moves; the others move from their (finite) current point, discarded
            column = live[:, None]
            start = torch.where(column, front, self.current)
            moved = self._leapfrog(self._z(start), self._r(start), self._grad(start), step, self.all_chains)
            self.front = torch.where(column, moved, front)
        elif bool(live.all()):
            self.front = self._leapfrog(self._z(front), self._r(front), self._grad(front), step,
                                        self.all_chains)
        else:
            chains = live.nonzero().flatten()
            moved = front[chains]
            self.front = front.index_put((chains,), self._leapfrog(
                self._z(moved), self._r(moved), self._grad(moved), step[chains], chains))

    def _check_subtree_turning(self, live: torch.Tensor, leaf_r: torch.Tensor) -> None:
        """Store momentum checkpoints at even leaves; check every sub-subtree ending at an odd leaf."""
        even = self.sub_size % 2 == 0
        slots = self.ckpt_slots[None, :]
        index = self.sub_size.clamp(max=2 ** self.max_tree_depth - 1)
        low, high = self.ckpt_min[index], self.ckpt_max[index]
        storing, checking = live & even, live & ~even
        if self.masked or bool(storing.any()):
            store = (storing[:, None] & (slots == high[:, None]))[..., None]
            self.r_ckpts = torch.where(store, leaf_r[:, None, :], self.r_ckpts)
            self.r_sum_ckpts = torch.where(store, self.sub_r_sum[:, None, :], self.r_sum_ckpts)
        if not self.masked and not bool(checking.any()):
            self.sub_turning = torch.zeros_like(live)
            return
        span_r_sum = self.sub_r_sum[:, None, :] - self.r_sum_ckpts + self.r_ckpts
        turning = _is_turning(self.metric, self.r_ckpts, leaf_r[:, None, :], span_r_sum)
        in_span = (slots >= low[:, None]) & (slots <= high[:, None])
        self.sub_turning = checking & (turning & in_span).any(-1)

    def _merge_subtrees(self, done: torch.Tensor) -> torch.Tensor:
        """Finished subtrees join their trajectories; returns the chains whose draw is complete."""
        if not self.masked and not bool(done.any()):
            return done
        where, column = torch.where, done[:, None]
        self.right = where((done & self.going_right)[:, None], self.front, self.right)
        self.left = where((done & ~self.going_right)[:, None], self.front, self.left)
        self.r_sum = where(column, self.r_sum + self.sub_r_sum, self.r_sum)
        # Biased progressive sampling: move to the new subtree with probability min(1, W_new / W_old).
        rejected = self.sub_turning | self.sub_diverging
        move_prob = (self.sub_weight - self.tree_weight).exp().clamp(max=1).masked_fill(rejected, 0)
        move = done & (self._uniform() < move_prob)
        self.proposal = where(move[:, None], self.sub_proposal, self.proposal)
        self.tree_weight = where(done, torch.logaddexp(self.tree_weight, self.sub_weight), self.tree_weight)
        self.depth = self.depth + done.long()
        self.accept_sum = where(done, self.accept_sum + self.sub_accept_sum, self.accept_sum)
        self.num_steps = self.num_steps + where(done, self.sub_size, 0)
        turning = _is_turning(self.metric, self._r(self.left), self._r(self.right), self.r_sum)
        finished = done & (rejected | turning | (self.depth >= self.max_tree_depth))
        self.new_subtree = self.new_subtree | (done & ~finished)
        self.fresh = self.fresh | finished
        self.iteration = self.iteration + finished.long()
        self.current = where(finished[:, None], self.proposal, self.current)
        return finished

    # -- step size search -------------------------------------------------------------------
    def find_reasonable_step_size(self) -> None:
        """Hoffman & Gelman's heuristic per chain: double or halve until acceptance crosses 0.8."""
        def accepts() -> torch.Tensor:
            r = self._momentum()
            point = self._leapfrog(self.z, r, self._grad(self.current), step, self.all_chains)
            delta = self._energy(point) - self._u(self.current) - self.metric.kinetic(r)
            return torch.nan_to_num(-delta, nan=-math.inf) > math.log(STEP_SEARCH_ACCEPT)

        step = self.step_size
        grow = accepts()
        searching = torch.ones_like(grow)
        for _ in range(MAX_STEP_SEARCH):
            step = torch.where(searching, torch.where(grow, 2 * step, step / 2), step)
            searching = searching & (accepts() == grow)
            if not bool(searching.any()):
                break
        self.step_size = step


def _initial_inverse_mass(init: torch.Tensor, inverse_mass: torch.Tensor | None, dense: bool) -> torch.Tensor:
    """Checked initial inverse mass matrix in the layout the run adapts (diagonal or dense)."""
    num_chains, dim = init.shape
    if inverse_mass is None:
        inverse_mass = torch.ones_like(init)
    inverse_mass = inverse_mass.to(init).clone()
    if inverse_mass.shape not in ((num_chains, dim), (num_chains, dim, dim)):
        raise DataError(f"inverse_mass must have shape (chains, dim) = {(num_chains, dim)} or (chains, dim, dim); "
                        f"got {tuple(inverse_mass.shape)}")
    if not bool(inverse_mass.isfinite().all()):
        raise DataError("inverse_mass has non-finite entries")
    if inverse_mass.dim() == 2:
        if not bool((inverse_mass > 0).all()):
            raise DataError("a diagonal inverse_mass must be positive (it holds variances)")
        return torch.diag_embed(inverse_mass) if dense else inverse_mass
    if not dense:
        raise DataError("a dense inverse_mass needs dense_mass=True; pass its diagonal otherwise")
    if not bool(torch.linalg.cholesky_ex(inverse_mass).info.eq(0).all()):
        raise DataError("a dense inverse_mass must be symmetric positive definite (a covariance)")
    return inverse_mass


def batched_nuts(potential: Potential, init: torch.Tensor, num_samples: int, warmup_steps: int, *,
                 inverse_mass: torch.Tensor | None = None, dense_mass: bool = True,
                 target_accept_prob: float = 0.8, max_tree_depth: int = 10,
                 generator: torch.Generator | None = None, masked: bool | None = None,
                 before_gradient: Callable[[], None] | None = None,
                 jit_compile: bool = False) -> BatchedNUTSResult:
    """Run independent NUTS chains in lock step, one batched gradient per leapfrog step.

    Parameters
    ----------
    potential : callable ``(z, chains) -> Tensor``
        ``z`` of shape (n, dim) holds the positions of the chains listed in
        ``chains`` (int64, shape (n,)); returns the potential energy
        ``-log density`` of each row, shape (n,). It must be differentiable in ``z``
        and row ``i`` must depend on ``z[i]`` only.
    init : Tensor, shape (chains, dim)
        Starting points; the dtype and device of the whole run.
    num_samples, warmup_steps : int
        Draws kept per chain, and adaptation iterations before them.
    inverse_mass : Tensor, shape (chains, dim) or (chains, dim, dim), optional
        Initial inverse mass matrix, diagonal or dense (the expected posterior
        variances or covariance); ones by default. Warm-up re-estimates it.
    dense_mass : bool
        Adapt a dense inverse mass matrix per chain (the draws' covariance, so
        correlated posteriors are sampled as if whitened) instead of a diagonal one.
    target_accept_prob : float
        Target of the step-size adaptation.
    max_tree_depth : int
        At most ``2**max_tree_depth - 1`` leapfrog steps per draw.
    generator : torch.Generator, optional
        Source of all randomness, on ``init``'s device.
    masked : bool, optional
        How a step learns which chains need which work. False: the host asks
        (``any()`` of a mask) and only those chains do it; True: every chain
        does every update under its mask, and the host checks for running
        chains once per :data:`HOST_CHECK_EVERY` steps. The same sampler
        either way; masked draws more random numbers (so other draws for the
        same seed) and wastes arithmetic on idle chains, but it never waits
        for the device within a step, which is what a GPU needs. Default:
        masked on CUDA, not elsewhere.
    before_gradient : callable, optional
        Called before each batched evaluation of the potential (once per
        leapfrog step), e.g. to poll torch's thread count; the potential
        itself has no side effects.
    jit_compile : bool
        Run the masked sampler in blocks of
        :data:`~ppl_vae.inference.mcmc.compiled_blocks.BLOCK_STEPS` steps, each
        compiled with ``torch.compile`` into one graph (the potential, its
        gradient, the tree, the adaptation), so the host is visited once per
        block instead of a few hundred times per step: what few chains on a
        small model need (Pyro's ``NUTS`` has the same switch). The first
        block compiles (tens of seconds on a CPU); a new potential, shape or
        dtype compiles again. The potential must be plain tensor code that
        ``torch.compile`` can trace (one that runs a Pyro program's trace is
        not; the library's models on the direct path are). Implies ``masked``; the
        random numbers of a block are drawn before it, so the draws differ from
        the eager sampler's for the same seed.

    Returns
    -------
    BatchedNUTSResult
    """
    if init.dim() != 2 or not init.is_floating_point():
        raise DataError(f"init must be a floating tensor of shape (chains, dim); got {tuple(init.shape)} "
                        f"{init.dtype}")
    if num_samples < 1 or warmup_steps < 0 or max_tree_depth < 1:
        raise ConfigError("num_samples and max_tree_depth must be >= 1 and warmup_steps >= 0")
    if not 0 < target_accept_prob < 1:
        raise ConfigError(f"target_accept_prob must lie in (0, 1); got {target_accept_prob}")
    if jit_compile and masked is False:
        raise ConfigError("jit_compile=True runs the masked sampler; leave masked unset or pass masked=True")
    metric = Metric(_initial_inverse_mass(init, inverse_mass, dense_mass))
    masked = init.device.type == "cuda" or jit_compile if masked is None else masked
    steps_per_check = HOST_CHECK_EVERY if masked else 1
    sampler = _Sampler(potential, init, metric, max_tree_depth, generator, masked, before_gradient)
    blocks = CompiledBlocks(sampler, target_accept_prob) if jit_compile else None
    num_chains, dim = init.shape
    samples = init.new_empty(num_chains, num_samples, dim)
    stats = {"num_steps": torch.zeros(num_chains, num_samples, dtype=torch.long, device=init.device),
             "tree_depth": torch.zeros(num_chains, num_samples, dtype=torch.long, device=init.device),
             "diverging": torch.zeros(num_chains, num_samples, dtype=torch.bool, device=init.device),
             "acceptance_rate": init.new_zeros(num_chains, num_samples)}

    sampler.find_reasonable_step_size()
    averaging = DualAveraging.starting_from(sampler.step_size, target_accept_prob)
    covariance = RunningCovariance(init, dense_mass)
    for stage_end, slow in warmup_stages(warmup_steps):
        live = sampler.iteration < stage_end
        if blocks is not None:
            blocks.advance(stage_end, averaging, covariance if slow else None)
        while blocks is None and bool(live.any()):
            for _ in range(steps_per_check):
                finished = sampler.step(live)
                if masked or bool(finished.any()):
                    accept = sampler.accept_sum / sampler.num_steps.clamp(min=1)
                    sampler.step_size = torch.where(finished, averaging.update(accept, finished),
                                                    sampler.step_size)
                    if slow:
                        covariance.update(sampler.z, finished)
                    live = sampler.iteration < stage_end
        if slow:
            sampler.metric = Metric(covariance.inverse_mass())
            covariance = RunningCovariance(init, dense_mass)
            sampler.find_reasonable_step_size()
            averaging = DualAveraging.starting_from(sampler.step_size, target_accept_prob)
    if warmup_steps > 0:
        sampler.step_size = averaging.final_step_size()

    live = sampler.iteration < warmup_steps + num_samples
    if blocks is not None:
        blocks.advance(warmup_steps + num_samples, averaging, None, record=(warmup_steps, samples, stats))
    while blocks is None and bool(live.any()):
        for _ in range(steps_per_check):
            finished = sampler.step(live)
            if masked:
                _record_masked(sampler, finished, warmup_steps, samples, stats)
            elif bool(finished.any()):
                chains = finished.nonzero().flatten()
                draw = sampler.iteration[chains] - 1 - warmup_steps
                samples[chains, draw] = sampler.z[chains]
                stats["num_steps"][chains, draw] = sampler.num_steps[chains]
                stats["tree_depth"][chains, draw] = sampler.depth[chains]
                stats["diverging"][chains, draw] = sampler.sub_diverging[chains]
                stats["acceptance_rate"][chains, draw] = (sampler.accept_sum / sampler.num_steps)[chains]
            live = sampler.iteration < warmup_steps + num_samples
    return BatchedNUTSResult(samples, stats["num_steps"], stats["tree_depth"], stats["diverging"],
                             stats["acceptance_rate"], sampler.step_size, sampler.metric.inverse_mass,
                             sampler.num_gradient_batches)


def _record_masked(sampler: _Sampler, finished: torch.Tensor, warmup_steps: int, samples: torch.Tensor,
                   stats: dict[str, torch.Tensor]) -> None:
    """Store the draws of the chains in ``finished``, without asking the host which they are.

    Every chain writes at its own draw index; a chain that did not finish
    writes back what is already there.
    """
    rows = sampler.all_chains
    draw = (sampler.iteration - 1 - warmup_steps).clamp(0, samples.shape[1] - 1)
    values = {"num_steps": sampler.num_steps, "tree_depth": sampler.depth,
              "diverging": sampler.sub_diverging,
              "acceptance_rate": sampler.accept_sum / sampler.num_steps.clamp(min=1)}
    samples[rows, draw] = torch.where(finished[:, None], sampler.z, samples[rows, draw])
    for name, value in values.items():
        stats[name][rows, draw] = torch.where(finished, value, stats[name][rows, draw])


__all__ = ["HOST_CHECK_EVERY", "MAX_DELTA_ENERGY", "BatchedNUTSResult", "Metric", "Potential", "batched_nuts"]
