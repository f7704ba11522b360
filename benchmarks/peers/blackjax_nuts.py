"""BlackJAX NUTS on many latent posteriors p(z | x): the compiled peer of ppl_vae's batched NUTS.

Every (chain, point) lane is one BlackJAX NUTS chain with its own window
adaptation (Stan's schedule: step size and a dense inverse mass matrix),
``jax.vmap`` over all lanes and the whole run (warm-up and draws) in one
``jax.jit``. The target is the ported decoder's log joint
(:func:`peers.jax_vae.log_joint`, checked against ppl_vae's before a run); the
lanes start where ppl_vae's batched NUTS starts them, with the same initial
inverse mass (:func:`peers.problems.nuts_starts`). Under ``vmap`` every NUTS
step runs until the lane with the longest trajectory is done, so the cost of a
step is that of the hardest lane.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import blackjax
import jax
import numpy as np
import torch
from blackjax.adaptation.base import get_filter_adapt_info_fn

from peers.jax_vae import Params, as_jax, log_joint


@dataclass(frozen=True)
class NUTSRun:
    """The draws of one BlackJAX run and what it cost.

    Attributes
    ----------
    samples : ndarray, shape (num_chains, num_samples, num_points, latent_dim)
    num_steps : ndarray of int, shape (num_chains, num_samples, num_points)
        Leapfrog steps of every draw.
    diverging : ndarray of bool, shape (num_chains, num_samples, num_points)
    wall_time_s : float
        The compiled run, warm-up and draws (compilation excluded).
    compile_s : float
        Ahead-of-time compilation of the run.
    """

    samples: np.ndarray
    num_steps: np.ndarray
    diverging: np.ndarray
    wall_time_s: float
    compile_s: float


def _lane(params: Params, key: jax.Array, x: jax.Array, init: jax.Array, inverse_mass: jax.Array,
          num_samples: int, warmup_steps: int, target_accept_prob: float, max_tree_depth: int):
    """One chain of one point: window adaptation, then ``num_samples`` NUTS draws."""

    def logdensity(z: jax.Array) -> jax.Array:
        return log_joint(params, x[None], z[None])[0]

    warmup_key, sample_key = jax.random.split(key)
    warmup = blackjax.window_adaptation(
        blackjax.nuts, logdensity, is_mass_matrix_diagonal=False,
        initial_inverse_mass_matrix=inverse_mass, target_acceptance_rate=target_accept_prob,
        adaptation_info_fn=get_filter_adapt_info_fn(), max_num_doublings=max_tree_depth)
    (state, parameters), _ = warmup.run(warmup_key, init, num_steps=warmup_steps)
    kernel = blackjax.nuts(logdensity, **parameters)

    def draw(state, step_key):
        state, info = kernel.step(step_key, state)
        return state, (state.position, info.num_integration_steps, info.is_divergent)

    _, (positions, num_steps, diverging) = jax.lax.scan(draw, state, jax.random.split(sample_key, num_samples))
    return positions, num_steps, diverging


def run(params: Params, x: torch.Tensor, init: torch.Tensor, inverse_mass: torch.Tensor,
        num_samples: int, warmup_steps: int, seed: int = 0, target_accept_prob: float = 0.8,
        max_tree_depth: int = 10) -> NUTSRun:
    """Sample every point's posterior with ``num_chains`` vmapped BlackJAX NUTS chains.

    Parameters
    ----------
    params : pytree from :func:`peers.jax_vae.port`
    x : Tensor, shape (num_points, data_dim)
        Binarized data.
    init : Tensor, shape (num_chains, num_points, latent_dim)
    inverse_mass : Tensor, shape (num_chains, num_points, latent_dim, latent_dim)
        From :func:`peers.problems.nuts_starts`.
    num_samples, warmup_steps : int
        Draws kept per chain and adaptation steps before them.
    """
    num_chains, num_points, latent_dim = init.shape
    lanes = num_chains * num_points
    x_lanes = as_jax(x.repeat(num_chains, 1))
    init_lanes = as_jax(init.reshape(lanes, latent_dim))
    mass_lanes = as_jax(inverse_mass.reshape(lanes, latent_dim, latent_dim))
    keys = jax.random.split(jax.random.key(seed), lanes)
    lane = partial(_lane, num_samples=num_samples, warmup_steps=warmup_steps,
                   target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth)
    all_lanes = jax.jit(jax.vmap(lane, in_axes=(None, 0, 0, 0, 0)))

    started = time.perf_counter()
    compiled = all_lanes.lower(params, keys, x_lanes, init_lanes, mass_lanes).compile()
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    positions, num_steps, diverging = jax.block_until_ready(compiled(params, keys, x_lanes, init_lanes,
                                                                     mass_lanes))
    wall_time_s = time.perf_counter() - started

    def by_chain(values: jax.Array) -> np.ndarray:  # (C*P, S, ...) -> (C, S, P, ...)
        values = np.asarray(values)
        return values.reshape(num_chains, num_points, *values.shape[1:]).swapaxes(1, 2)

    return NUTSRun(by_chain(positions), by_chain(num_steps), by_chain(diverging), wall_time_s, compile_s)


def summary(samples: np.ndarray | torch.Tensor, num_steps: np.ndarray | torch.Tensor,
            wall_time_s: float) -> dict[str, float]:
    """Smallest bulk ESS, largest R-hat (ArviZ, through ppl_vae's diagnostics), ESS/s, steps per draw.

    The same summary for either sampler's draws, so the two are compared alike.

    Parameters
    ----------
    samples : shape (num_chains, num_samples, num_points, latent_dim)
    num_steps : shape (num_chains, num_samples, num_points)
    """
    from ppl_vae.evaluation.diagnostics import check_convergence, to_inference_data

    def host(values: np.ndarray | torch.Tensor) -> np.ndarray:
        return values.cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)

    report = check_convergence(to_inference_data(host(samples)))
    min_ess = float(np.min(report.ess_bulk))
    steps = host(num_steps).astype(np.float64)
    return {"wall_time_s": wall_time_s, "min_bulk_ess": min_ess, "max_r_hat": float(np.max(report.r_hat)),
            "ess_per_s": min_ess / wall_time_s, "mean_leapfrog_steps_per_draw": float(steps.mean()),
            # what a vmapped step costs: the longest trajectory among all lanes at that draw
            "mean_longest_lane_steps_per_draw": float(steps.max(axis=(0, 2)).mean())}

