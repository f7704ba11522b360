"""The variational autoencoder as a pair of Pyro programs.

Generative model (``model``)::

    z ~ N(0, I)                                  latent code, shape (latent_dim,)
    x | z ~ Bernoulli(sigmoid(g(z)))             or  N(g(z), sigma^2 I)

Inference model (``guide``)::

    z | x ~ N(mu(x), diag sigma(x)^2)

``g``, ``mu`` and ``sigma`` are multilayer perceptrons.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.errors import ConfigError
from ppl_vae.models.base import (
    LIKELIHOODS,
    GaussianLatentModel,
    check_batch,
    check_positive_int,
    data_plate,
    latent_scale,
)
from ppl_vae.models.networks import Decoder, GaussianEncoder


class GaussianObservation(nn.Module):
    """Observation noise of the Gaussian likelihood: fixed, or a learned scalar."""

    def __init__(self, scale: float, learned: bool) -> None:
        super().__init__()
        raw = torch.tensor(float(scale)).log()
        if learned:
            self.log_scale = nn.Parameter(raw)
        else:
            self.register_buffer("log_scale", raw)

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp()


class VAE(GaussianLatentModel):
    """A variational autoencoder with Gaussian prior and amortized Gaussian posterior.

    Parameters
    ----------
    data_dim : int
        Number of observed features (784 for 28x28 images).
    latent_dim : int
        Number of latent dimensions.
    hidden_dims : sequence of int
        Hidden widths of the encoder; the decoder mirrors them.
    likelihood : {"bernoulli", "gaussian"}
        Observation model p(x | z).
    observation_scale : float
        Standard deviation of the Gaussian likelihood (its initial value when learned).
    learn_observation_scale : bool
        Learn the Gaussian observation scale as one scalar parameter.
    activation : str
        Hidden-layer nonlinearity, see :data:`ppl_vae.models.networks.ACTIVATIONS`.
    name : str
        Prefix of the model's entries in Pyro's parameter store.

    Examples
    --------
    >>> vae = VAE(data_dim=784, latent_dim=20)
    >>> images = vae.sample(100)          # (100, 784) Bernoulli means
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden_dims: Sequence[int] = (400,),
        likelihood: str = "bernoulli",
        observation_scale: float = 0.1,
        learn_observation_scale: bool = False,
        activation: str = "softplus",
        name: str = "vae",
    ) -> None:
        super().__init__()
        check_positive_int(data_dim, "data_dim")
        check_positive_int(latent_dim, "latent_dim")
        hidden_dims = tuple(hidden_dims)
        for width in hidden_dims:
            check_positive_int(width, "every hidden dimension")
        if likelihood not in LIKELIHOODS:
            raise ConfigError(
                f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}"
            )
        if not observation_scale > 0:
            raise ConfigError(f"observation_scale must be positive; got {observation_scale!r}")
        self.data_dim = data_dim
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.likelihood = likelihood
        self.activation = activation
        self.pyro_name = name
        self.encoder = GaussianEncoder(data_dim, latent_dim, hidden_dims, activation)
        self.decoder = Decoder(latent_dim, data_dim, hidden_dims[::-1], activation)
        if likelihood == "gaussian":
            self.observation = GaussianObservation(observation_scale, learn_observation_scale)
        self._observation_config = {
            "observation_scale": float(observation_scale),
            "learn_observation_scale": bool(learn_observation_scale),
        }

    def config(self) -> dict[str, Any]:
        return {
            "data_dim": self.data_dim,
            "latent_dim": self.latent_dim,
            "hidden_dims": list(self.hidden_dims),
            "likelihood": self.likelihood,
            "activation": self.activation,
            "name": self.pyro_name,
            **self._observation_config,
        }

    # ----- the Pyro programs (model: GaussianLatentModel.model) ---------------------

    def generative_modules(self) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {"decoder": self.decoder}
        if self.likelihood == "gaussian":
            modules["observation"] = self.observation
        return modules

    def guide(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> None:
        """Amortized posterior q(z | x) = N(mu(x), diag sigma(x)^2); same arguments as :meth:`model`."""
        check_batch(x, self.data_dim, "VAE.guide")
        self._register("encoder", self.encoder)
        with data_plate(x, num_data):
            with latent_scale(beta):
                pyro.sample("z", self.guide_distribution(x))

    def guide_distribution(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z | x) = N(mu(x), diag sigma(x)^2): batch shape ``(batch,)``, event ``(latent_dim,)``."""
        loc, scale = self.encoder(x)
        return dist.Normal(loc, scale).to_event(1)

    # ----- deterministic helpers -----------------------------------------------

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z | x), each of shape ``(batch, latent_dim)``."""
        check_batch(x, self.data_dim, "VAE.encode")
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        """The likelihood p(x | z) with event shape ``(data_dim,)`` and batch shape ``z.shape[:-1]``."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            # Grey values in [0, 1] are allowed on purpose (see the README); the
            # range is checked once per data set by check_values.
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        return dist.Normal(out, self.observation()).to_event(1)
