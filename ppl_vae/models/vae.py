"""The variational autoencoders: their likelihood, models and guides in one file.

One stochastic layer (:class:`VAE`), generative model (``model``)::

    z ~ N(0, I)                                  latent code, shape (latent_dim,)
    x | z ~ Bernoulli(sigmoid(g(z)))             or  N(g(z), sigma^2 I)

Inference model (``guide``)::

    z | x ~ N(mu(x), diag sigma(x)^2)

Two stochastic layers (:class:`TwoLayerVAE`, as Burda, Grosse and
Salakhutdinov, 2016)::

    z1 ~ N(0, I)                                 top code, shape (top_latent_dim,)
    z2 | z1 ~ N(m(z1), diag s(z1)^2)             code next to the data, shape (latent_dim,)
    x | z2 ~ Bernoulli(sigmoid(g(z2)))           or  N(g(z2), sigma^2 I)

with the guide top-down in the reverse order, ``z2 | x ~ N(mu(x), diag
sigma(x)^2)`` then ``z1 | z2 ~ N(mu1(z2), diag sigma1(z2)^2)``. The learned
prior of z2 is what lets it beat the one-layer VAE's log p(x) at the same
likelihood network; no direct transcription exists, so every method reads it
from its Pyro programs (Monte Carlo KL, both sites drawn jointly).

``g``, ``mu``, ``sigma`` and the top networks are the multilayer perceptrons
of :mod:`ppl_vae.models.networks`. :class:`NeuralModel` holds what the neural
models share (settings, the decoder ``g``, the likelihood object of
:mod:`ppl_vae.models.likelihoods` and ``decode``): the VAEs here and
:class:`~ppl_vae.models.autoencoder.Autoencoder`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.models.base import (
    GaussianLatentModel,
    ProbabilisticModel,
    check_batch,
    check_device,
    data_plate,
    latent_scale,
    transcribed,
)
from ppl_vae.models.likelihoods import Likelihood, get_likelihood
from ppl_vae.models.networks import Decoder, GaussianEncoder
from ppl_vae.validation import check_positive_int

#: ``make_encoder(data_dim, latent_dim, hidden_dims, activation)`` -> the encoder network.
EncoderFactory = Callable[[int, int, tuple[int, ...], str], nn.Module]


class NeuralModel(ProbabilisticModel):
    """A model whose p(x | z) is a neural decoder: settings, networks, ``config`` and ``decode``.

    A subclass's ``__init__`` calls :meth:`_build` once. Its methods are
    disjoint from :class:`~ppl_vae.models.base.GaussianLatentModel`'s, so a
    class with both bases resolves every method the same in either order
    (``tests/models/test_vae.py`` checks it).
    """

    def _build(self, *, make_encoder: EncoderFactory, data_dim: int, latent_dim: int,
               hidden_dims: Sequence[int], likelihood: str | Likelihood, observation_scale: float,
               learn_observation_scale: bool, activation: str, name: str) -> None:
        """Check the settings and build the encoder, then the decoder (in that order: the seed's draws).

        Parameters
        ----------
        make_encoder : callable
            ``make_encoder(data_dim, latent_dim, hidden_dims, activation)``.
        data_dim, latent_dim, hidden_dims, likelihood, observation_scale, learn_observation_scale, activation, name
            As for :class:`VAE`.
        """
        check_positive_int(data_dim, "data_dim")
        check_positive_int(latent_dim, "latent_dim")
        hidden_dims = tuple(hidden_dims)
        for width in hidden_dims:
            check_positive_int(width, "every hidden dimension")
        if not observation_scale > 0:
            raise ConfigError(f"observation_scale must be positive; got {observation_scale!r}")
        observation = get_likelihood(likelihood, observation_scale, learn_observation_scale)
        self.data_dim = data_dim
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.likelihood = observation.name  # the name, as configs store it
        self.activation = activation
        self.pyro_name = name
        self.encoder = make_encoder(data_dim, latent_dim, hidden_dims, activation)
        self.decoder = Decoder(latent_dim, data_dim, hidden_dims[::-1], activation)
        # After the networks: the order of the parameters (an optimizer's state) stays put.
        self.observation = observation
        self._observation_config = {
            "observation_scale": float(observation_scale),
            "learn_observation_scale": bool(learn_observation_scale),
            **observation.settings(),
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

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        """The likelihood p(x | z) with event shape ``(data_dim,)`` and batch shape ``z.shape[:-1]``."""
        return self.observation.distribution(self.decoder(z))


class VAE(NeuralModel, GaussianLatentModel):
    """A variational autoencoder with Gaussian prior and amortized Gaussian posterior.

    Parameters
    ----------
    data_dim : int
        Number of observed features (784 for 28x28 images).
    latent_dim : int
        Number of latent dimensions.
    hidden_dims : sequence of int
        Hidden widths of the encoder; the decoder mirrors them.
    likelihood : str or Likelihood
        Observation model p(x | z): a name in
        :data:`~ppl_vae.models.likelihoods.LIKELIHOODS` ("bernoulli",
        "gaussian", or one registered) or a
        :class:`~ppl_vae.models.likelihoods.Likelihood` object. The model keeps
        the object as ``observation`` and its name as ``likelihood``.
    observation_scale : float
        Standard deviation of the Gaussian likelihood (its initial value when learned);
        a likelihood object brings its own.
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
        likelihood: str | Likelihood = "bernoulli",
        observation_scale: float = 0.1,
        learn_observation_scale: bool = False,
        activation: str = "softplus",
        name: str = "vae",
    ) -> None:
        super().__init__()
        self._build(make_encoder=GaussianEncoder, data_dim=data_dim, latent_dim=latent_dim,
                    hidden_dims=hidden_dims, likelihood=likelihood,
                    observation_scale=observation_scale,
                    learn_observation_scale=learn_observation_scale, activation=activation,
                    name=name)

    # ----- the Pyro programs -------------------------------------------------------

    @transcribed
    def guide(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> None:
        """Amortized posterior q(z | x) = N(mu(x), diag sigma(x)^2); same arguments as :meth:`model`."""
        check_batch(x, self.data_dim, f"{type(self).__name__}.guide")
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


class TwoLayerVAE(NeuralModel):
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
        As for :class:`VAE`.
    name : str
        Prefix of the model's entries in Pyro's parameter store.

    Examples
    --------
    >>> model = TwoLayerVAE(data_dim=784, latent_dim=20)
    >>> images = model.sample(16)            # (16, 784) Bernoulli means
    """

    guide_module_names = ("encoder", "top_encoder")

    def __init__(
        self,
        data_dim: int,
        latent_dim: int = 20,
        hidden_dims: Sequence[int] = (400,),
        top_latent_dim: int = 10,
        top_hidden_dim: int = 100,
        likelihood: str | Likelihood = "bernoulli",
        observation_scale: float = 0.1,
        learn_observation_scale: bool = False,
        activation: str = "softplus",
        name: str = "two_layer_vae",
    ) -> None:
        super().__init__()
        self._build(make_encoder=GaussianEncoder, data_dim=data_dim, latent_dim=latent_dim,
                    hidden_dims=hidden_dims, likelihood=likelihood,
                    observation_scale=observation_scale,
                    learn_observation_scale=learn_observation_scale, activation=activation,
                    name=name)
        self.top_latent_dim = check_positive_int(top_latent_dim, "top_latent_dim")
        self.top_hidden_dim = check_positive_int(top_hidden_dim, "top_hidden_dim")
        self.top_prior = GaussianEncoder(top_latent_dim, latent_dim, (top_hidden_dim,), activation)
        self.top_encoder = GaussianEncoder(latent_dim, top_latent_dim, (top_hidden_dim,), activation)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "top_latent_dim": self.top_latent_dim,
                "top_hidden_dim": self.top_hidden_dim}

    # ----- the Pyro programs ------------------------------------------------------

    def model(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> None:
        """p(z1) p(z2 | z1) p(x | z2) with ``x`` observed; arguments as :meth:`VAE.model`."""
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
        check_batch(x, self.data_dim, f"{type(self).__name__}.guide")
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
