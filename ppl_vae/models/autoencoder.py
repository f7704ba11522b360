"""A plain (deterministic) autoencoder, written as Pyro programs so SVI trains it.

Inference model (``guide``)::

    z | x = e(x)                                 a point mass, no spread

Generative model (``model``)::

    z ~ flat improper "prior"                    log-density 0 everywhere
    x | z ~ Bernoulli(sigmoid(g(z)))             or  N(g(z), sigma^2 I)

With a point-mass guide and a flat prior, the ELBO's latent term
``log p(z) - log q(z | x)`` is exactly zero, so the ELBO *is* the
reconstruction log-likelihood ``log p(x | z = e(x))``: maximizing it by
:func:`ppl_vae.train` is ordinary autoencoder training (binary cross-entropy
for a Bernoulli decoder, squared error for a Gaussian one). ``e`` and ``g``
are the same multilayer perceptrons as in :class:`ppl_vae.models.VAE` with
equal ``latent_dim`` and ``hidden_dims``; only the encoder's last layer is
half as wide, since it outputs a code rather than a mean and a scale.

There is no prior over codes, so the model cannot generate data on its own:
:meth:`Autoencoder.sample` raises. Its "ELBO" is not a bound on any
log-likelihood either, because the flat prior does not normalize.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.util import broadcast_shape
from torch import nn
from torch.distributions import constraints

from ppl_vae.errors import ConfigError
from ppl_vae.models.base import check_batch, data_plate
from ppl_vae.models.likelihoods import Likelihood
from ppl_vae.models.networks import mlp
from ppl_vae.models.vae import NeuralModel


class FlatPrior(dist.ImproperUniform):
    """The improper flat density on R^latent_dim: log-density 0, and no way to sample.

    Pyro's :class:`~pyro.distributions.ImproperUniform` returns its zeros on the
    default device and dtype; this one returns them on the device and dtype of
    the value scored, so the model runs on a GPU and in float64.

    Parameters
    ----------
    latent_dim : int
        Event size.
    batch_shape : tuple of int
        Batch shape (usually the data plate's size).
    """

    def __init__(self, latent_dim: int, batch_shape: Sequence[int] = ()) -> None:
        super().__init__(constraints.real, torch.Size(batch_shape), torch.Size((latent_dim,)))

    def expand(self, batch_shape, _instance=None) -> "FlatPrior":
        new = self._get_checked_instance(FlatPrior, _instance)
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        batch_shape = broadcast_shape(value.shape[: value.dim() - self.event_dim],
                                      self.batch_shape)
        return value.new_zeros(()).expand(batch_shape)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        raise NotImplementedError(
            "a flat prior over codes has no distribution to sample from; run the "
            "Autoencoder's model together with its guide (the guide supplies z)"
        )


class PointEncoder(nn.Module):
    """Maps data to one latent code: ``mlp(data_dim -> hidden_dims -> latent_dim)``.

    The hidden layers have the shapes of :class:`~ppl_vae.models.networks.GaussianEncoder`'s.
    """

    def __init__(
        self, data_dim: int, latent_dim: int, hidden_dims: Sequence[int], activation: str
    ) -> None:
        super().__init__()
        self.net = mlp(data_dim, hidden_dims, latent_dim, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the codes, shape ``(..., latent_dim)``."""
        return self.net(x)


class Autoencoder(NeuralModel):
    """A deterministic autoencoder with the networks of a :class:`~ppl_vae.models.VAE`.

    Parameters
    ----------
    data_dim : int
        Number of observed features (784 for 28x28 images).
    latent_dim : int
        Size of the code.
    hidden_dims : sequence of int
        Hidden widths of the encoder; the decoder mirrors them.
    likelihood : str or Likelihood
        Observation model p(x | z), which sets the reconstruction loss: a name in
        :data:`~ppl_vae.models.likelihoods.LIKELIHOODS` or a
        :class:`~ppl_vae.models.likelihoods.Likelihood` object, as for :class:`~ppl_vae.models.VAE`.
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
    >>> from ppl_vae import SVIConfig, train
    >>> autoencoder = Autoencoder(data_dim=784, latent_dim=2)
    >>> result = train(autoencoder, train_x, SVIConfig(epochs=50))       # doctest: +SKIP
    >>> codes, _ = autoencoder.encode(test_x)                            # doctest: +SKIP
    """

    has_prior = False

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden_dims: Sequence[int] = (400,),
        likelihood: str | Likelihood = "bernoulli",
        observation_scale: float = 0.1,
        learn_observation_scale: bool = False,
        activation: str = "softplus",
        name: str = "autoencoder",
    ) -> None:
        super().__init__()
        self._build(make_encoder=PointEncoder, data_dim=data_dim, latent_dim=latent_dim,
                    hidden_dims=hidden_dims, likelihood=likelihood,
                    observation_scale=observation_scale,
                    learn_observation_scale=learn_observation_scale, activation=activation,
                    name=name)

    # ----- the Pyro programs ---------------------------------------------------

    def model(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> None:
        """Flat prior on ``"z"`` and the decoder's likelihood on the observed ``"x"``.

        The model cannot run on its own (a flat prior has no samples); Pyro's
        ELBOs replay it with the ``z`` that :meth:`guide` draws.

        Parameters
        ----------
        x : Tensor, shape (batch, data_dim)
            Observed data.
        num_data : int, optional
            Size of the full data set when ``x`` is a minibatch; scales the
            log-density by ``num_data / batch``.
        beta : float
            Accepted for :func:`ppl_vae.train`'s KL weight; it has no effect,
            since the latent site's log-density ratio is 0.
        """
        check_batch(x, self.data_dim, "Autoencoder.model")
        for suffix, module in self.generative_modules().items():
            self._register(suffix, module)
        with data_plate(x, num_data):
            z = pyro.sample("z", FlatPrior(self.latent_dim, (x.shape[0],)))
            pyro.sample("x", self.decode(z), obs=x)

    def guide(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> None:
        """Point-mass "posterior" q(z | x) = delta(z - e(x)); same arguments as :meth:`model`."""
        check_batch(x, self.data_dim, "Autoencoder.guide")
        self._register("encoder", self.encoder)
        with data_plate(x, num_data):
            pyro.sample("z", dist.Delta(self.encoder(x), event_dim=1))

    # ----- deterministic helpers -----------------------------------------------

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The codes e(x) and zeros, the spread of the point-mass q(z | x).

        The pair has the shape of :meth:`VAE.encode`'s ``(loc, scale)``, so code
        written for a VAE (``reconstruct``, latent maps) runs unchanged.

        Parameters
        ----------
        x : Tensor, shape (batch, data_dim)

        Returns
        -------
        codes : Tensor, shape (batch, latent_dim)
        scale : Tensor, shape (batch, latent_dim)
            All zeros.
        """
        check_batch(x, self.data_dim, "Autoencoder.encode")
        codes = self.encoder(x)
        return codes, torch.zeros_like(codes)

    def sample(self, num_samples: int, mean: bool = True) -> torch.Tensor:
        """Not defined: an autoencoder has no prior over codes to draw from.

        Raises
        ------
        ConfigError
            Always. To generate anyway, choose codes yourself (for instance
            draws from a Gaussian fitted to the training codes) and call
            ``decode(z).mean``.
        """
        raise ConfigError(
            "an Autoencoder has no prior over its codes, so it cannot sample new data; "
            "train a VAE to sample, or decode codes of your own choice with "
            "autoencoder.decode(z).mean (e.g. draws from a Gaussian fitted to the "
            "training codes)"
        )
