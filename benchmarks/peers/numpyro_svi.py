"""NumPyro SVI of the 784-400-L VAE, the compiled peer of ppl_vae's ``train``.

The same networks (softplus MLPs, a Gaussian encoder with ``softplus + MIN_SCALE``
scales), objective (Bernoulli likelihood, closed-form Gaussian KL:
``TraceMeanField_ELBO``, the minibatch scaled to the data set by the plate),
optimizer (Adam, learning rate 1e-3), dynamic binarization and one reshuffle per
epoch as ``benchmarks/svi_throughput.py``; the weights are initialized as
torch's ``nn.Linear`` does (uniform in +-1/sqrt(fan_in)), which changes no
timing. Two ways to run it:

* ``step``: ``jax.jit(svi.update)``, called once per minibatch from Python;
* ``epoch``: a whole epoch (binarize, permute, every step) in one ``jax.jit``,
  the steps in a ``lax.fori_loop`` (the last, smaller minibatch after it).

Both are compiled ahead of time (``.lower(...).compile()``, timed as
``compile_s``); the first epoch is a warm-up; the time per step is the median
epoch time over the later epochs divided by ``ceil(num_data / batch_size)``.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import SVI, TraceMeanField_ELBO
from numpyro.optim import Adam

from peers.jax_vae import Params, mlp
from ppl_vae.models.networks import MIN_SCALE

VARIANTS = ("step", "epoch")


@dataclass(frozen=True)
class SVITiming:
    """One timed NumPyro run.

    Attributes
    ----------
    variant : {"step", "epoch"}
    ms_per_step : float
        Median over the timed epochs of the epoch time, per step.
    compile_s : float
        Ahead-of-time compilation of everything the run calls.
    first_epoch_s : float
        The warm-up epoch (after compilation).
    final_loss : float
        Mean minibatch loss of the last epoch (a check that it trains).
    """

    variant: str
    ms_per_step: float
    compile_s: float
    first_epoch_s: float
    final_loss: float


def _init_mlp(key: jax.Array, sizes: list[int]) -> list[tuple[jax.Array, jax.Array]]:
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        key, w_key, b_key = jax.random.split(key, 3)
        bound = 1 / math.sqrt(fan_in)
        layers.append((jax.random.uniform(w_key, (fan_in, fan_out), minval=-bound, maxval=bound),
                       jax.random.uniform(b_key, (fan_out,), minval=-bound, maxval=bound)))
    return layers


def _params(name: str, init: list[tuple[jax.Array, jax.Array]]) -> list[tuple[jax.Array, jax.Array]]:
    return [(numpyro.param(f"{name}_w{i}", w), numpyro.param(f"{name}_b{i}", b))
            for i, (w, b) in enumerate(init)]


def make_svi(data_dim: int, latent_dim: int, hidden: int, num_data: int, seed: int = 0,
             init: Params | None = None) -> SVI:
    """The NumPyro SVI object of the VAE: model and guide as plain functions, Adam 1e-3.

    Parameters
    ----------
    num_data : int
        Size of the data set; the plate scales a minibatch's terms by ``num_data / batch``.
    init : pytree from :func:`peers.jax_vae.port`, optional
        Start from a ppl_vae model's weights (default: torch's initialization scheme, seeded ``seed``).
    """
    if init is None:
        decoder_key, encoder_key = jax.random.split(jax.random.key(seed))
        init = {"decoder": _init_mlp(decoder_key, [latent_dim, hidden, data_dim]),
                "encoder": _init_mlp(encoder_key, [data_dim, hidden, 2 * latent_dim])}
    decoder_init, encoder_init = init["decoder"], init["encoder"]

    def model(batch: jax.Array) -> None:
        decoder = _params("decoder", decoder_init)
        with numpyro.plate("data", num_data, subsample_size=batch.shape[0]):
            z = numpyro.sample("z", dist.Normal(jnp.zeros((batch.shape[0], latent_dim)), 1.0).to_event(1))
            numpyro.sample("x", dist.Bernoulli(logits=mlp(decoder, z)).to_event(1), obs=batch)

    def guide(batch: jax.Array) -> None:
        encoder = _params("encoder", encoder_init)
        with numpyro.plate("data", num_data, subsample_size=batch.shape[0]):
            loc, raw_scale = jnp.split(mlp(encoder, batch), 2, axis=-1)
            numpyro.sample("z", dist.Normal(loc, jax.nn.softplus(raw_scale) + MIN_SCALE).to_event(1))

    return SVI(model, guide, Adam(1e-3), TraceMeanField_ELBO())


def _epoch_batches(x: jax.Array, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """A freshly binarized copy of ``x`` and a permutation of its rows."""
    binarize_key, permute_key = jax.random.split(key)
    return (jax.random.bernoulli(binarize_key, x).astype(x.dtype),
            jax.random.permutation(permute_key, x.shape[0]))


def run(x: jax.Array, latent_dim: int, batch_size: int, variant: str, num_epochs: int = 3,
        hidden: int = 400, seed: int = 0) -> SVITiming:
    """Train for ``num_epochs`` epochs (the first a warm-up) and time them.

    Parameters
    ----------
    x : Array, shape (num_data, data_dim)
        Grey-level images in [0, 1] (binarized afresh every epoch).
    variant : {"step", "epoch"}

    Returns
    -------
    SVITiming
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    num_data, data_dim = x.shape
    svi = make_svi(data_dim, latent_dim, hidden, num_data, seed)
    key = jax.random.key(seed)
    state = svi.init(key, x[:batch_size])
    full, rest = divmod(num_data, batch_size)
    steps = full + (rest > 0)
    started = time.perf_counter()
    if variant == "step":
        update = jax.jit(svi.update)
        compiled = {size: update.lower(state, x[:size]).compile() for size in {batch_size, rest} if size}
        prepare = jax.jit(_epoch_batches, static_argnums=2).lower(x, key, batch_size).compile()

        def epoch(state, epoch_key):
            data, order = prepare(x, epoch_key)
            total = 0.0
            for start in range(0, num_data, batch_size):
                index = order[start:start + batch_size]
                state, loss = compiled[len(index)](state, data[index])
                total = total + loss
            return state, total
    else:
        def whole_epoch(state, epoch_key):
            data, order = _epoch_batches(x, epoch_key, batch_size)

            def body(i, carry):
                state, total = carry
                index = jax.lax.dynamic_slice_in_dim(order, i * batch_size, batch_size)
                state, loss = svi.update(state, data[index])
                return state, total + loss

            state, total = jax.lax.fori_loop(0, full, body, (state, jnp.zeros(())))
            if rest:
                state, loss = svi.update(state, data[order[full * batch_size:]])
                total = total + loss
            return state, total

        epoch = jax.jit(whole_epoch).lower(state, key).compile()
    compile_s = time.perf_counter() - started

    times, total = [], None
    for index in range(num_epochs):
        epoch_key = jax.random.fold_in(key, index)
        start = time.perf_counter()
        state, total = epoch(state, epoch_key)
        total = float(jax.block_until_ready(total))
        times.append(time.perf_counter() - start)
    timed = times[1:] if len(times) > 1 else times
    return SVITiming(variant, 1e3 * statistics.median(timed) / steps, compile_s, times[0],
                     total / steps)
