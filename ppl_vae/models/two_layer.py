"""A VAE with two stochastic layers per data point, as Burda, Grosse and Salakhutdinov (2016).

Generative model (``model``)::

    z1 ~ N(0, I)                                 top code, shape (top_latent_dim,)
    z2 | z1 ~ N(m(z1), diag s(z1)^2)             code next to the data, shape (latent_dim,)
    x | z2 ~ Bernoulli(sigmoid(g(z2)))           or  N(g(z2), sigma^2 I)

Inference model (``guide``), top-down in the reverse order::

    z2 | x ~ N(mu(x), diag sigma(x)^2)
    z1 | z2 ~ N(mu1(z2), diag sigma1(z2)^2)

The prior of z2 is learned (a Gaussian whose mean and spread depend on z1),
which is what lets this model beat the one-layer VAE's log p(x) at the same
likelihood network. No direct transcription exists: every method reads it
from its Pyro programs (Monte Carlo KL, both sites drawn jointly).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch

from ppl_vae.models.base import (
    ProbabilisticModel,
    check_batch,
    data_plate,
    latent_scale,
)
from ppl_vae.models.networks import GaussianEncoder
from ppl_vae.models.neural import NeuralLikelihoodMixin
from ppl_vae.validation import check_positive_int


class TwoLayerVAE(NeuralLikelihoodMixin, ProbabilisticModel):
    """Two Gaussian latent layers z1 -> z2 -> x, with sites ``"z1"``, ``"z2"`` and ``"x"``.

    Parameters
    ----------
    data_dim : int
    latent_dim : int
        Size of z2, the layer next to the data (the encoder's output: :meth:`encode`).
    hidden_dims : sequence of int
        Hidden widths of the encoder q(z2 | x); the decoder p(x | z2) mirrors them.
    top_latent_dim : int
        Size of z1.
    top_hidden_dim : int
        Hidden width of the networks of p(z2 | z1) and q(z1 | z2).
    likelihood, observation_scale, learn_observation_scale, activation
        As for :class:`~ppl_vae.models.vae.VAE`.
    name : str
        Prefix of the model's entries in Pyro's parameter store.

    Examples
    --------
    >>> model = TwoLayerVAE(data_dim=784, latent_dim=20)
    >>> images = model.sample(16)            # (16, 784) Bernoulli means
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int = 20,
        hidden_dims: Sequence[int] = (400,),
        top_latent_dim: int = 10,
        top_hidden_dim: int = 100,
        likelihood: str = "bernoulli",
        observation_scale: float = 0.1,
        learn_observation_scale: bool = False,
        activation: str = "softplus",
        name: str = "two_layer_vae",
    ) -> None:
        super().__init__()
        self._build(GaussianEncoder, data_dim, latent_dim, hidden_dims, likelihood,
                    observation_scale, learn_observation_scale, activation, name)
        self.top_latent_dim = check_positive_int(top_latent_dim, "top_latent_dim")
        self.top_hidden_dim = check_positive_int(top_hidden_dim, "top_hidden_dim")
        self.top_prior = GaussianEncoder(top_latent_dim, latent_dim, (top_hidden_dim,), activation)
        self.top_encoder = GaussianEncoder(latent_dim, top_latent_dim, (top_hidden_dim,), activation)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "top_latent_dim": self.top_latent_dim,
                "top_hidden_dim": self.top_hidden_dim}

    def generative_modules(self) -> dict[str, torch.nn.Module]:
        return {**super().generative_modules(), "top_prior": self.top_prior}

    # ----- the Pyro programs ------------------------------------------------------

    def model(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> None:
        """p(z1) p(z2 | z1) p(x | z2) with ``x`` observed; arguments as :meth:`VAE.model <ppl_vae.models.vae.VAE.model>`."""
        check_batch(x, self.data_dim, "TwoLayerVAE.model")
        for suffix, module in self.generative_modules().items():
            self._register(suffix, module)
        with data_plate(x, num_data):
            with latent_scale(beta):
                top = dist.Normal(x.new_zeros(x.shape[0], self.top_latent_dim), x.new_ones(()))
                z1 = pyro.sample("z1", top.to_event(1))
                loc, scale = self.top_prior(z1)
                z2 = pyro.sample("z2", dist.Normal(loc, scale).to_event(1))
            pyro.sample("x", self.decode(z2), obs=x)

    def guide(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> None:
        """q(z2 | x) q(z1 | z2); same arguments as :meth:`model`."""
        check_batch(x, self.data_dim, "TwoLayerVAE.guide")
        self._register("encoder", self.encoder)
        self._register("top_encoder", self.top_encoder)
        with data_plate(x, num_data):
            with latent_scale(beta):
                loc, scale = self.encoder(x)
                z2 = pyro.sample("z2", dist.Normal(loc, scale).to_event(1))
                top_loc, top_scale = self.top_encoder(z2)
                pyro.sample("z1", dist.Normal(top_loc, top_scale).to_event(1))

    # ----- deterministic helpers -----------------------------------------------

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z2 | x), each of shape ``(batch, latent_dim)``."""
        check_batch(x, self.data_dim, "TwoLayerVAE.encode")
        return self.encoder(x)
