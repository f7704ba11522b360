"""What the neural models share: their settings, the decoder and the likelihood p(x | z).

:class:`~ppl_vae.models.VAE` and :class:`~ppl_vae.models.Autoencoder` differ
only in their encoder and in the latent site of their Pyro programs; this
mixin builds everything else from the same arguments, so the two always have
the same decoder for the same settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.errors import ConfigError
from ppl_vae.models.base import LIKELIHOODS, check_positive_int
from ppl_vae.models.networks import Decoder


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


class NeuralLikelihoodMixin:
    """Settings, encoder/decoder construction, ``config``, ``generative_modules`` and ``decode``.

    Mixed in before a :class:`~ppl_vae.models.base.ProbabilisticModel`
    subclass, whose ``__init__`` calls :meth:`_build` once.
    """

    def _build(self, make_encoder: Callable[[int, int, tuple[int, ...], str], nn.Module],
               data_dim: int, latent_dim: int, hidden_dims: Sequence[int], likelihood: str,
               observation_scale: float, learn_observation_scale: bool, activation: str,
               name: str) -> None:
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
        self.encoder = make_encoder(data_dim, latent_dim, hidden_dims, activation)
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

    def generative_modules(self) -> dict[str, nn.Module]:
        """The modules whose parameters belong to p(x | z), by registry suffix."""
        modules: dict[str, nn.Module] = {"decoder": self.decoder}
        if self.likelihood == "gaussian":
            modules["observation"] = self.observation
        return modules

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        """The likelihood p(x | z) with event shape ``(data_dim,)`` and batch shape ``z.shape[:-1]``."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            # Grey values in [0, 1] are allowed on purpose (see the README); the
            # range is checked once per data set by check_values.
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        return dist.Normal(out, self.observation()).to_event(1)
