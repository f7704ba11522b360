"""Neural networks used as encoders and decoders.

The networks are plain :class:`torch.nn.Module` objects with no Pyro inside;
the model classes register them with Pyro's parameter store.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ppl_vae.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "softplus": nn.Softplus,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
}

# Floor on the encoder's standard deviation: keeps log q(z|x) finite when a
# posterior collapses onto a point.
MIN_SCALE = 1e-5


def mlp(in_dim: int, hidden_dims: Sequence[int], out_dim: int, activation: str) -> nn.Sequential:
    """A multilayer perceptron ``in_dim -> hidden_dims... -> out_dim``.

    The activation follows every hidden layer, not the output layer.
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}"
        )
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class GaussianEncoder(nn.Module):
    """Maps data to the mean and standard deviation of a diagonal Gaussian.

    Parameters
    ----------
    data_dim, latent_dim : int
        Input and latent sizes.
    hidden_dims : sequence of int
        Widths of the shared hidden layers.
    activation : str
        One of :data:`ACTIVATIONS`.
    """

    def __init__(
        self, data_dim: int, latent_dim: int, hidden_dims: Sequence[int], activation: str
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = mlp(data_dim, hidden_dims, 2 * latent_dim, activation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(loc, scale)``, each of shape ``(..., latent_dim)``."""
        loc, raw_scale = self.net(x).split(self.latent_dim, dim=-1)
        return loc, F.softplus(raw_scale) + MIN_SCALE


class Decoder(nn.Module):
    """Maps latent codes to the natural parameter of the observation model.

    The output is Bernoulli logits or a Gaussian mean, shape ``(..., data_dim)``.
    """

    def __init__(
        self, latent_dim: int, data_dim: int, hidden_dims: Sequence[int], activation: str
    ) -> None:
        super().__init__()
        self.net = mlp(latent_dim, hidden_dims, data_dim, activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
