"""The importance-weighted bound in one ``jax.jit``, K chunked under ppl_vae's memory bound.

    IWAE(x) = log (1/K) sum_k p(x, z_k) / q(z_k | x),     z_k ~ q(z | x)

The K samples are drawn in chunks of the size ppl_vae's streaming IWAE uses
(:func:`ppl_vae.inference.importance._chunks`: at most ``MAX_CHUNK_ELEMENTS``
decoder outputs per pass; for 500 digits of 784 pixels on a CPU that is all
500 points and 5 samples per pass), a ``lax.scan`` runs over the chunks and
folds each into a running ``(max, sum of exp)`` per point, so memory does not
grow with K. JAX computes in float32 (ppl_vae keeps float64 running sums); over
K = 5,000 terms the float32 fold loses about 1e-6 nats, far below the Monte
Carlo error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import torch

from peers.jax_vae import Params, encode, log_joint
from ppl_vae.inference.importance import _chunks


def chunk_plan(num_points: int, data_dim: int, latent_dim: int, num_samples: int) -> tuple[int, int]:
    """``(rows, particles)``: points and samples per pass, by ppl_vae's CPU rule.

    ppl_vae's rule may leave a last, smaller piece of samples; the JAX scan
    needs equal pieces, so ``particles`` is lowered to the largest divisor of
    ``num_samples`` not above ppl_vae's (equal for K = 5,000: 5 per pass).
    """
    x = torch.empty(num_points, data_dim)
    rows, pieces = next(iter(_chunks(x, num_samples, max(data_dim, latent_dim))))
    particles = pieces[0]
    while num_samples % particles:
        particles -= 1
    return rows.stop - rows.start, particles


@partial(jax.jit, static_argnames=("num_samples", "particles"))
def iwae_block(params: Params, x: jax.Array, key: jax.Array, num_samples: int, particles: int) -> jax.Array:
    """IWAE of each row of ``x`` (one block of points), shape (num_points,).

    Parameters
    ----------
    x : Array, shape (num_points, data_dim)
    key : PRNG key
    num_samples : int
        K, a multiple of ``particles``.
    particles : int
        Samples per pass.
    """
    loc, scale = encode(params, x)
    log_scale_sum = jnp.sum(jnp.log(scale), axis=-1)
    latent_dim = loc.shape[-1]

    def step(carry: tuple[jax.Array, jax.Array], chunk_key: jax.Array):
        running_max, running_sum = carry
        eps = jax.random.normal(chunk_key, (particles, *loc.shape), dtype=loc.dtype)
        z = loc + scale * eps
        log_q = (-0.5 * jnp.sum(eps * eps, axis=-1) - log_scale_sum
                 - 0.5 * latent_dim * math.log(2 * math.pi))
        log_w = log_joint(params, x, z) - log_q                       # (particles, num_points)
        new_max = jnp.maximum(running_max, jnp.max(log_w, axis=0))
        new_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(jnp.exp(log_w - new_max), axis=0)
        return (new_max, new_sum), None

    start = (jnp.full(x.shape[0], -jnp.inf, dtype=x.dtype), jnp.zeros(x.shape[0], dtype=x.dtype))
    keys = jax.random.split(key, num_samples // particles)
    (running_max, running_sum), _ = jax.lax.scan(step, start, keys)
    return running_max + jnp.log(running_sum) - math.log(num_samples)


def compiled_iwae(params: Params, x: jax.Array, num_samples: int,
                  latent_dim: int) -> tuple[Callable[[jax.Array], jax.Array], float]:
    """The IWAE of every row of ``x`` as a compiled function of a PRNG key, and its compile time.

    Blocks of points as ppl_vae's chunk rule makes them, each compiled ahead of time.

    Returns
    -------
    run : callable, key -> Array of shape (num_points,)
    compile_s : float
    """
    rows, particles = chunk_plan(x.shape[0], x.shape[1], latent_dim, num_samples)
    starts = list(range(0, x.shape[0], rows))
    started = time.perf_counter()
    compiled = {}
    for start in starts:
        size = min(rows, x.shape[0] - start)
        if size not in compiled:
            compiled[size] = iwae_block.lower(params, x[start:start + size], jax.random.key(0),
                                              num_samples=num_samples, particles=particles).compile()
    compile_s = time.perf_counter() - started

    def run(key: jax.Array) -> jax.Array:
        keys = jax.random.split(key, len(starts))
        blocks = [compiled[min(rows, x.shape[0] - start)](params, x[start:start + rows], block_key)
                  for block_key, start in zip(keys, starts)]
        return jax.block_until_ready(jnp.concatenate(blocks))

    return run, compile_s


def iwae(params: Params, x: jax.Array, num_samples: int, key: jax.Array,
         latent_dim: int) -> jax.Array:
    """IWAE per point, shape (num_points,), blocks of points as ppl_vae's chunk rule makes them."""
    run, _ = compiled_iwae(params, x, num_samples, latent_dim)
    return run(key)


def mean_difference(got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """Mean of ``got - expected`` over points, and its Monte Carlo standard error.

    Two independent IWAE estimates of the same points differ, point by point,
    by independent errors of mean zero; the spread of those differences over
    the points gives the standard error of their mean. (The delta-method
    errors of the estimates understate it where the importance weights are
    heavy-tailed, as they are on a trained model: Pareto k̂ > 0.7 on nearly
    every test digit of runs/demo.)

    Parameters
    ----------
    got, expected : ndarray, shape (num_points,)

    Returns
    -------
    difference, stderr : float
    """
    differences = np.asarray(got, dtype=np.float64) - np.asarray(expected, dtype=np.float64)
    return float(differences.mean()), float(differences.std(ddof=1) / math.sqrt(len(differences)))
