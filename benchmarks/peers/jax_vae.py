"""A trained ppl_vae VAE as pure JAX functions, and the check that it computes ppl_vae's density.

The port covers the VAE the benchmarks use: multilayer perceptrons with
softplus hidden layers, a Gaussian encoder ``(loc, softplus(raw) + MIN_SCALE)``
and a Bernoulli decoder:

    log p(x, z) = sum_j log N(z_j; 0, 1) + sum_i [x_i * l_i - softplus(l_i)],   l = g(z)

Parameters are a pytree ``{"encoder": [(W, b), ...], "decoder": [(W, b), ...]}``
of float32 ``jnp`` arrays copied from the torch ``state_dict``, with ``W`` of
shape (in, out) so that a layer is ``h @ W + b``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from ppl_vae.errors import ConfigError
from ppl_vae.inference.importance import log_joint as ppl_vae_log_joint
from ppl_vae.models import VAE
from ppl_vae.models.networks import MIN_SCALE

#: The largest relative difference allowed between the port's float32 log joint and
#: ppl_vae's, evaluated in float64 (a double copy of the model: its exact value). The
#: port's sums of ~800 terms (784 pixels + latents) after float32 matrix products come
#: within 2e-7 of it on the trained latent-20 model; 1e-6 is the issue's bar for "the
#: same function up to float32 rounding". (ppl_vae's own float32 evaluation is 7e-7
#: from the float64 value there, so float32 against float32 would leave little margin.)
LOG_JOINT_RTOL = 1e-6

Params = dict[str, list[tuple[jax.Array, jax.Array]]]


def _layers(net: torch.nn.Sequential) -> list[tuple[jax.Array, jax.Array]]:
    linears = [layer for layer in net if isinstance(layer, torch.nn.Linear)]
    return [(jnp.asarray(layer.weight.detach().cpu().numpy().T, dtype=jnp.float32),
             jnp.asarray(layer.bias.detach().cpu().numpy(), dtype=jnp.float32)) for layer in linears]


def port(model: VAE) -> Params:
    """Copy a ppl_vae :class:`~ppl_vae.VAE`'s weights into a JAX pytree.

    Raises
    ------
    ConfigError
        If the model is not a softplus VAE with a Bernoulli likelihood (what the port computes).
    """
    if not isinstance(model, VAE) or model.likelihood != "bernoulli" or model.activation != "softplus":
        raise ConfigError("the JAX port covers softplus VAEs with a Bernoulli likelihood; "
                          "train one with `ppl-vae train` (the defaults)")
    return {"encoder": _layers(model.encoder.net), "decoder": _layers(model.decoder.net)}


def mlp(layers: list[tuple[jax.Array, jax.Array]], h: jax.Array) -> jax.Array:
    """``h -> softplus(h @ W + b) -> ... -> h @ W + b``: softplus after every layer but the last."""
    for weight, bias in layers[:-1]:
        h = jax.nn.softplus(h @ weight + bias)
    weight, bias = layers[-1]
    return h @ weight + bias


def encode(params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and standard deviation of q(z | x), each of shape ``(..., latent_dim)`` for x ``(..., data_dim)``."""
    out = mlp(params["encoder"], x)
    loc, raw_scale = jnp.split(out, 2, axis=-1)
    return loc, jax.nn.softplus(raw_scale) + MIN_SCALE


def decoder_logits(params: Params, z: jax.Array) -> jax.Array:
    """Bernoulli logits of p(x | z), shape ``(..., data_dim)`` for z ``(..., latent_dim)``."""
    return mlp(params["decoder"], z)


def log_prior(z: jax.Array) -> jax.Array:
    """log N(z; 0, I) summed over the last axis: shape ``z.shape[:-1]``."""
    return -0.5 * jnp.sum(z * z, axis=-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def log_likelihood(params: Params, x: jax.Array, z: jax.Array) -> jax.Array:
    """log p(x | z) of the Bernoulli decoder; x ``(..., data_dim)`` broadcasts against z ``(..., latent_dim)``."""
    logits = decoder_logits(params, z)
    return jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)


def log_joint(params: Params, x: jax.Array, z: jax.Array) -> jax.Array:
    """log p(x, z) = log p(z) + log p(x | z), shape ``z.shape[:-1]``.

    Parameters
    ----------
    x : Array, shape (num_points, data_dim)
    z : Array, shape (..., num_points, latent_dim)
    """
    return log_prior(z) + log_likelihood(params, x, z)


@dataclass(frozen=True)
class PortCheck:
    """How far the port's log joint is from ppl_vae's, relative, largest over all points and draws.

    Attributes
    ----------
    to_float64 : float
        Against ppl_vae's ``log_joint`` of a float64 copy of the model (what is checked).
    to_float32 : float
        Against ppl_vae's ``log_joint`` of the model as it is (float32), for the record.
    """

    to_float64: float
    to_float32: float


def _relative(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(got - expected) / np.abs(expected)))


def check_port(model: VAE, params: Params, x: torch.Tensor, z: torch.Tensor | None = None,
               seed: int = 0) -> PortCheck:
    """Evaluate the log joint of the same ``(x, z)`` with ppl_vae and with the port, and compare.

    Parameters
    ----------
    model : VAE
    params : pytree from :func:`port`
    x : Tensor, shape (num_points, data_dim)
        Binarized data.
    z : Tensor, shape (..., num_points, latent_dim), optional
        Latent values (default: one draw from q(z | x), seeded ``seed``).

    Returns
    -------
    PortCheck

    Raises
    ------
    AssertionError
        If the difference to the float64 value exceeds :data:`LOG_JOINT_RTOL`:
        the port does not compute the model.
    """
    x = x.detach().float().cpu()
    with torch.no_grad():
        if z is None:
            loc, scale = model.encode(x)
            generator = torch.Generator().manual_seed(seed)
            z = loc + scale * torch.randn(loc.shape, generator=generator)
        z = z.float()
        exact = ppl_vae_log_joint(copy.deepcopy(model).double(), x.double(), z.double()).numpy()
        single = ppl_vae_log_joint(model, x, z).double().numpy()
    got = np.asarray(jax.jit(log_joint)(params, jnp.asarray(x.numpy()), jnp.asarray(z.numpy())),
                     dtype=np.float64)
    check = PortCheck(_relative(got, exact), _relative(got, single))
    if not check.to_float64 <= LOG_JOINT_RTOL:
        raise AssertionError(f"the JAX port's log joint differs from ppl_vae's by {check.to_float64:.2e} "
                             f"(relative; allowed {LOG_JOINT_RTOL:.0e}): the port does not compute the model")
    return check


def as_jax(value: torch.Tensor | Any) -> jax.Array:
    """A torch tensor as a float32 JAX array (other values through ``jnp.asarray``)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().float().numpy()
    return jnp.asarray(value, dtype=jnp.float32)
