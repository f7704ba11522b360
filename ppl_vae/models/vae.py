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

import pyro
import pyro.distributions as dist
import torch

from ppl_vae.errors import DataError
from ppl_vae.models.base import (
    GaussianLatentModel,
    check_batch,
    check_device,
    data_plate,
    latent_scale,
    transcribed,
)
from ppl_vae.models.networks import GaussianEncoder
from ppl_vae.models.neural import NeuralLikelihoodMixin


class VAE(NeuralLikelihoodMixin, GaussianLatentModel):
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
        self._build(GaussianEncoder, data_dim, latent_dim, hidden_dims, likelihood,
                    observation_scale, learn_observation_scale, activation, name)

    # ----- the Pyro programs (model: GaussianLatentModel.model) ---------------------

    @transcribed
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
        check_device(x, self, "VAE.encode")
        if not bool(torch.isfinite(x).all()):
            raise DataError("VAE.encode: the data hold NaN or infinite values; remove or impute them")
        return self.encoder(x)
