"""A small generative adversarial network (GAN), for comparison with the VAE.

Generator (the same shape as the VAE's decoder)::

    z ~ N(0, I)                       latent code, shape (latent_dim,)
    x = G(z)                          an MLP, sigmoid output for grey levels in [0, 1]

Discriminator::

    D(x) = logit of "x is a real data point"      an MLP with leaky ReLUs

Training is the minimax game of Goodfellow et al. (2014) with the
*non-saturating* generator loss: the discriminator minimizes
``-log D(x) - log(1 - D(G(z)))`` and the generator minimizes ``-log D(G(z))``,
one Adam step each per minibatch.

Unlike the VAE, a GAN has no Pyro sites, no encoder and no likelihood: ``G``
pushes a ``latent_dim``-dimensional Gaussian onto a ``latent_dim``-dimensional
surface in data space, so the model's samples have no density in the
``data_dim``-dimensional space. The only way back from an image to a code is an
optimization per image, :func:`invert_generator`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from torch import nn
from torch.nn import functional as F

from ppl_vae.errors import ConfigError, DataError, TrainingDivergedError
from ppl_vae.models.base import (
    ParameterPlacement,
    check_batch,
    check_positive_int,
    check_values,
)
from ppl_vae.models.networks import mlp
from ppl_vae.rng import keeps_global_rng
from ppl_vae.validation import check_number

#: Output nonlinearities of the generator: grey levels in [0, 1], or unbounded values.
OUTPUTS = ("sigmoid", "identity")

#: Negative slope of the discriminator's leaky ReLUs (the usual GAN choice).
LEAKY_SLOPE = 0.2


@dataclass(frozen=True)
class GANConfig:
    """Settings of :func:`train_gan`.

    Attributes
    ----------
    steps : int
        Optimization steps; each is one discriminator and one generator update.
    batch_size : int
        Real images per step (as many fakes are drawn); capped at the data size.
    learning_rate : float
        Adam step size of both networks.
    betas : (float, float)
        Adam's momentum coefficients; (0.5, 0.999) is the usual GAN setting.
    seed : int
        Seed of every random choice (minibatches, z draws).
    """

    steps: int = 5000
    batch_size: int = 64
    learning_rate: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int(self.steps, "steps")
        check_positive_int(self.batch_size, "batch_size")
        check_number(self.learning_rate, "learning_rate")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1); got {self.betas!r}")


class GAN(ParameterPlacement, nn.Module):
    """Generator and discriminator of a GAN.

    Parameters
    ----------
    data_dim : int
        Number of features of a data point (784 for 28x28 images).
    latent_dim : int
        Dimension of the generator's input z ~ N(0, I).
    hidden_dims : sequence of int
        Hidden widths of the generator (the VAE decoder's, e.g. ``(400,)``).
    discriminator_hidden_dims : sequence of int
        Hidden widths of the discriminator.
    activation : str
        The generator's hidden nonlinearity, as in
        :data:`ppl_vae.models.networks.ACTIVATIONS` (the VAE's default is
        ``"softplus"``; with it this small GAN learns much more slowly).
    output : {"sigmoid", "identity"}
        ``sigmoid`` for data in [0, 1] (grey-level images), ``identity`` for
        unbounded data.
    discriminator_dropout : float
        Dropout after each hidden layer of the discriminator (0: none); it
        slows the discriminator down so that the generator keeps getting
        useful gradients.

    Examples
    --------
    >>> gan = GAN(data_dim=784, latent_dim=20)
    >>> images = gan.sample(100)          # (100, 784), values in (0, 1)
    """

    def __init__(self, data_dim: int, latent_dim: int, hidden_dims: Sequence[int] = (400,),
                 discriminator_hidden_dims: Sequence[int] = (400,), activation: str = "relu",
                 output: str = "sigmoid", discriminator_dropout: float = 0.0) -> None:
        super().__init__()
        check_positive_int(data_dim, "data_dim")
        check_positive_int(latent_dim, "latent_dim")
        hidden_dims, discriminator_hidden_dims = tuple(hidden_dims), tuple(discriminator_hidden_dims)
        for width in hidden_dims + discriminator_hidden_dims:
            check_positive_int(width, "every hidden dimension")
        if not 0 <= discriminator_dropout < 1:
            raise ConfigError(f"discriminator_dropout must lie in [0, 1); got {discriminator_dropout!r}")
        if output not in OUTPUTS:
            raise ConfigError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.hidden_dims, self.discriminator_hidden_dims = hidden_dims, discriminator_hidden_dims
        self.activation, self.output = activation, output
        self.discriminator_dropout = float(discriminator_dropout)
        self.generator = mlp(latent_dim, hidden_dims, data_dim, activation)
        layers: list[nn.Module] = []
        width = data_dim
        for hidden in discriminator_hidden_dims:
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(LEAKY_SLOPE)]
            if discriminator_dropout > 0:
                layers.append(nn.Dropout(discriminator_dropout))
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.discriminator = nn.Sequential(*layers)

    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain types."""
        return {"data_dim": self.data_dim, "latent_dim": self.latent_dim,
                "hidden_dims": list(self.hidden_dims),
                "discriminator_hidden_dims": list(self.discriminator_hidden_dims),
                "activation": self.activation, "output": self.output,
                "discriminator_dropout": self.discriminator_dropout}


    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """G(z): data points for codes ``z`` of shape ``(..., latent_dim)``; shape ``(..., data_dim)``."""
        if not isinstance(z, torch.Tensor) or z.shape[-1:] != (self.latent_dim,):
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise DataError(f"GAN.generate expects codes of shape (..., {self.latent_dim}); got {shape}")
        out = self.generator(z)
        return torch.sigmoid(out) if self.output == "sigmoid" else out

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of D(x) = P(x is real), shape ``(batch,)``, for ``x`` of shape ``(batch, data_dim)``."""
        check_batch(x, self.data_dim, "GAN.discriminate")
        return self.discriminator(x).squeeze(-1)

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Draw z ~ N(0, I) and return G(z), shape ``(num_samples, data_dim)``."""
        check_positive_int(num_samples, "num_samples")
        z = torch.randn(num_samples, self.latent_dim, device=self.device, dtype=self.dtype)
        return self.generate(z)


@dataclass
class GANResult:
    """What :func:`train_gan` returns.

    Attributes
    ----------
    discriminator_loss, generator_loss : Tensor, shape (steps,)
        Per step: ``-log D(x) - log(1 - D(G(z)))`` and ``-log D(G(z))``, each
        averaged over the minibatch (nats). With a discriminator that cannot
        tell real from fake (D = 1/2 everywhere) they are 2 log 2 and log 2.
    real_score, fake_score : Tensor, shape (steps,)
        Mean D(x) on the real minibatch and mean D(G(z)) on the fakes.
    wall_time : float
        Seconds.
    """

    discriminator_loss: torch.Tensor
    generator_loss: torch.Tensor
    real_score: torch.Tensor
    fake_score: torch.Tensor
    wall_time: float


def _check_data(gan: GAN, x: Any, where: str) -> None:
    check_batch(x, gan.data_dim, where)
    if x.device != gan.device:
        raise DataError(f"{where}: the data are on {x.device} but the GAN on {gan.device}; "
                        "move one of them with .to(device)")
    check_values(x, "gaussian")          # finite values
    if gan.output == "sigmoid" and (bool((x < 0).any()) or bool((x > 1).any())):
        raise DataError(f"{where}: a sigmoid generator makes values in [0, 1]; the data range over "
                        f"[{float(x.min()):.4g}, {float(x.max()):.4g}]. Rescale them to [0, 1] "
                        "or build the GAN with output='identity'.")


@keeps_global_rng
def train_gan(gan: GAN, x: torch.Tensor, config: GANConfig = GANConfig()) -> GANResult:
    """Train a GAN by alternating Adam steps on the discriminator and the generator.

    Each step draws a minibatch of real points (a fresh random order every
    pass over the data) and as many codes z ~ N(0, I); the discriminator takes
    one step on its cross-entropy, then the generator one step on the
    non-saturating loss ``-log D(G(z))``.

    Parameters
    ----------
    gan : GAN
        Trained in place, on the device of its parameters.
    x : Tensor, shape (num_points, data_dim)
        Training data on the GAN's device, in [0, 1] for a sigmoid generator.
    config : GANConfig

    Returns
    -------
    GANResult

    Raises
    ------
    DataError
        On data of the wrong shape, type, device or range.
    TrainingDivergedError
        If a loss became NaN or infinite.
    """
    _check_data(gan, x, "train_gan")
    pyro.set_rng_seed(config.seed)
    batch = min(config.batch_size, x.shape[0])
    options = {"lr": config.learning_rate, "betas": tuple(config.betas)}
    d_optimizer = torch.optim.Adam(gan.discriminator.parameters(), **options)
    g_optimizer = torch.optim.Adam(gan.generator.parameters(), **options)
    record = x.new_zeros(config.steps, 4)
    order, position = torch.randperm(x.shape[0], device=x.device), 0
    started = time.perf_counter()
    gan.train()
    for step in range(config.steps):
        if position + batch > len(order):
            order, position = torch.randperm(x.shape[0], device=x.device), 0
        real = x[order[position:position + batch]]
        position += batch
        z = torch.randn(batch, gan.latent_dim, device=x.device, dtype=x.dtype)
        fake = gan.generate(z)

        real_logit, fake_logit = gan.discriminate(real), gan.discriminate(fake.detach())
        d_loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
        d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimizer.step()

        g_loss = F.softplus(-gan.discriminate(fake)).mean()      # -log D(G(z))
        g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        g_optimizer.step()

        with torch.no_grad():
            record[step] = torch.stack([d_loss, g_loss, torch.sigmoid(real_logit).mean(),
                                        torch.sigmoid(fake_logit).mean()])
    gan.eval()
    record = record.cpu()
    if not bool(torch.isfinite(record).all()):
        first = int((~torch.isfinite(record)).any(-1).nonzero()[0])
        raise TrainingDivergedError(f"GAN training diverged (non-finite loss at step {first + 1}); "
                        "lower learning_rate")
    return GANResult(record[:, 0], record[:, 1], record[:, 2], record[:, 3],
                     time.perf_counter() - started)


@dataclass
class Inversion:
    """What :func:`invert_generator` returns.

    Attributes
    ----------
    z : Tensor, shape (num_points, latent_dim)
        The best code found for each point.
    reconstruction : Tensor, shape (num_points, data_dim)
        G(z).
    squared_error : Tensor, shape (num_points,)
        Mean squared error per feature between ``x`` and G(z).
    wall_time : float
        Seconds.
    """

    z: torch.Tensor
    reconstruction: torch.Tensor
    squared_error: torch.Tensor
    wall_time: float


@keeps_global_rng
def invert_generator(gan: GAN, x: torch.Tensor, num_steps: int = 500, learning_rate: float = 0.05,
                     seed: int = 0) -> Inversion:
    """Find codes z with G(z) close to ``x`` by gradient descent, one code per point.

    A GAN has no encoder, so this optimization is its only route from data
    to latent codes. It minimizes the mean squared error between G(z) and
    ``x`` over z, from z = 0, with Adam; the result is a local optimum.

    Parameters
    ----------
    gan : GAN
        Not changed.
    x : Tensor, shape (num_points, data_dim)
    num_steps : int
    learning_rate : float
    seed : int

    Returns
    -------
    Inversion
    """
    check_batch(x, gan.data_dim, "invert_generator")
    check_positive_int(num_steps, "num_steps")
    check_number(learning_rate, "learning_rate")
    pyro.set_rng_seed(seed)
    started = time.perf_counter()
    z = x.new_zeros(x.shape[0], gan.latent_dim, requires_grad=True)
    optimizer = torch.optim.Adam([z], lr=learning_rate)
    was_training = gan.training
    gan.eval()
    with torch.enable_grad():
        for _ in range(num_steps):
            loss = ((gan.generate(z) - x) ** 2).mean(-1)
            (z.grad,) = torch.autograd.grad(loss.sum(), z)     # the GAN's weights get no gradient
            optimizer.step()
    gan.train(was_training)
    with torch.no_grad():
        reconstruction = gan.generate(z)
        error = ((reconstruction - x) ** 2).mean(-1)
    return Inversion(z.detach(), reconstruction, error, time.perf_counter() - started)
