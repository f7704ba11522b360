"""A mixture of Gaussians: a latent variable model whose posterior Pyro computes exactly.

Generative model, with one discrete latent per data point::

    z ~ Categorical(pi)                      pi = softmax(logits), K components
    x | z ~ N(mu_z, diag(sigma_z^2))

The posterior ``p(z | x)`` is a categorical over K values, so inference needs
no approximation: Pyro's enumeration sums ``z`` out of the model exactly
(``infer={"enumerate": "parallel"}`` at site ``"z"``), the guide is empty, and
``TraceEnum_ELBO`` is then the exact negative log evidence. This is the third
answer to an intractable posterior, next to variational inference and MCMC:
choose a model in which inference is tractable.
"""

from __future__ import annotations

import math
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, infer_discrete
from torch import nn

from ppl_vae.errors import ConfigError, DataError, TrainingDivergedError
from ppl_vae.models.base import (
    ProbabilisticModel,
    check_batch,
    check_positive_int,
    check_values,
    data_plate,
)
from ppl_vae.rng import keeps_global_rng
from ppl_vae.validation import check_number

#: Plates nested inside the model: the ``"data"`` plate only (dim -1); the
#: enumeration of ``z`` takes dim -2.
MAX_PLATE_NESTING = 1


def pad_single_point(x: torch.Tensor) -> torch.Tensor:
    """Repeat a one-point batch to two points; return larger batches unchanged.

    Pyro's enumeration treats a dimension of size 1 as broadcast, so a
    ``"data"`` plate of size 1 loses its dimension and
    ``TraceEnum_ELBO.compute_marginals`` fails (Pyro 1.9). Points are
    independent given the parameters, so the first row's answer is unchanged.

    Parameters
    ----------
    x : Tensor, shape (batch, data_dim)

    Returns
    -------
    Tensor, shape (max(batch, 2), data_dim)
    """
    return x.expand(2, -1) if x.shape[0] == 1 else x


class MixtureParameters(nn.Module):
    """Mixing ``logits`` (K,), component ``locs`` (K, D) and diagonal ``log_scales`` (K, D)."""

    def __init__(self, data_dim: int, num_components: int, init_scale: float) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.locs = nn.Parameter(init_scale * torch.randn(num_components, data_dim))
        self.log_scales = nn.Parameter(torch.full((num_components, data_dim), math.log(init_scale)))


class GaussianMixture(ProbabilisticModel):
    """Mixture of K diagonal Gaussians with the component enumerated out exactly.

    ``latent_dim`` is 1: one discrete latent per data point, an integer in
    ``[0, num_components)``. There is no Gaussian q(z | x), so :meth:`encode`
    (and the base class's ``reconstruct``) are not provided; the exact
    posterior is :meth:`posterior` and the most probable component :meth:`assign`.

    Parameters
    ----------
    data_dim : int
        Observed dimension D.
    num_components : int
        Number of components K, at least 2.
    name : str
        Prefix of the model's entries in Pyro's parameter store.
    init_scale : float
        Standard deviation of the random initial means and initial scale of
        every component.
    min_scale : float
        Floor on every component's standard deviation. Without one, maximum
        likelihood drives the scale of a feature that is constant within a
        component (a blank image border) to 0 and the likelihood to infinity;
        the floor plays the role of scikit-learn's ``reg_covar`` (1e-3 here is
        a variance of 1e-6).
    """

    likelihood = "gaussian"
    #: The latent is a component index: NUTS and the Gaussian guides do not apply.
    latent_support = "discrete"

    def __init__(
        self, data_dim: int, num_components: int, name: str = "mixture", init_scale: float = 1.0,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__()
        check_positive_int(data_dim, "data_dim")
        check_positive_int(num_components, "num_components")
        if num_components < 2:
            raise ConfigError(
                "a mixture needs num_components >= 2 (Pyro's enumeration drops a "
                "dimension of size 1); for a single Gaussian use LinearGaussian"
            )
        check_number(init_scale, "init_scale")
        check_number(min_scale, "min_scale", positive=False)
        self.data_dim = data_dim
        self.num_components = num_components
        self.latent_dim = 1
        self.pyro_name = name
        self.init_scale = float(init_scale)
        self.min_scale = float(min_scale)
        self.components = MixtureParameters(data_dim, num_components, self.init_scale)

    def config(self) -> dict[str, Any]:
        return {
            "data_dim": self.data_dim,
            "num_components": self.num_components,
            "name": self.pyro_name,
            "init_scale": self.init_scale,
            "min_scale": self.min_scale,
        }

    @property
    def scales(self) -> torch.Tensor:
        """Component standard deviations sigma, shape (num_components, data_dim), at least ``min_scale``."""
        return self.components.log_scales.exp().clamp_min(self.min_scale)

    # ----- the Pyro programs ------------------------------------------------------

    def model(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> None:
        """p(z) p(x | z) with ``x`` observed and ``z`` marked for parallel enumeration.

        Parameters
        ----------
        x : Tensor, shape (batch, data_dim)
            Observed data.
        num_data : int, optional
            Size of the full data set when ``x`` is a minibatch; scales the
            log-density by ``num_data / batch``.
        beta : float
            Ignored: accepted so that every model shares one signature. With
            ``z`` summed out there is no KL term to weight.
        """
        check_batch(x, self.data_dim, "GaussianMixture.model")
        self._register("components", self.components)
        with data_plate(x, num_data):
            prior = dist.Categorical(logits=self.components.logits).expand([x.shape[0]])
            z = pyro.sample("z", prior, infer={"enumerate": "parallel"})
            pyro.sample("x", self.decode(z), obs=x)

    def guide(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> None:
        """The empty guide: ``z`` is enumerated in the model, so nothing is left to approximate.

        With every latent site summed out exactly, ``TraceEnum_ELBO`` of
        ``model`` and this guide is ``-log p(x)``. The arguments are those of
        :meth:`model` and are not used.
        """

    # ----- exact quantities --------------------------------------------------------

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        """p(x | z) = N(mu_z, diag(sigma_z^2)).

        Parameters
        ----------
        z : LongTensor, any shape
            Component indices in ``[0, num_components)``; an enumerated ``z``
            of shape (K, 1) broadcasts against the data plate.

        Returns
        -------
        Normal, batch shape ``z.shape``, event shape (data_dim,)
        """
        return dist.Normal(self.components.locs[z], self.scales[z]).to_event(1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Not defined: the latent is discrete; use :meth:`posterior` or :meth:`assign`."""
        raise NotImplementedError(
            "GaussianMixture has a discrete latent and no Gaussian q(z | x); "
            "use posterior(x) for p(z | x) or assign(x) for the most probable component"
        )

    def _component_log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(x; mu_k, sigma_k^2), shape (batch, num_components)."""
        log_weights = self.components.logits.log_softmax(-1)
        log_likelihood = dist.Normal(self.components.locs, self.scales).to_event(1).log_prob(
            x.unsqueeze(-2)
        )
        return log_weights + log_likelihood

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) = logsumexp_k [log pi_k + log N(x; mu_k, sigma_k^2)].

        Parameters
        ----------
        x : Tensor, shape (batch, data_dim)

        Returns
        -------
        Tensor, shape (batch,)
        """
        check_batch(x, self.data_dim, "GaussianMixture.log_marginal")
        return self._component_log_joint(x).logsumexp(-1)

    def posterior(self, x: torch.Tensor) -> dist.Categorical:
        """Exact p(z | x), computed by Pyro's enumeration (``TraceEnum_ELBO.compute_marginals``).

        Parameters
        ----------
        x : Tensor, shape (batch, data_dim)

        Returns
        -------
        Categorical, batch shape (batch,), with ``probs`` of shape (batch, num_components)
        """
        check_batch(x, self.data_dim, "GaussianMixture.posterior")
        self.sync_param_store()
        elbo = TraceEnum_ELBO(max_plate_nesting=MAX_PLATE_NESTING)
        marginal = elbo.compute_marginals(self.model, self.guide, pad_single_point(x))["z"]
        return dist.Categorical(logits=marginal.logits[: x.shape[0]])

    def assign(self, x: torch.Tensor, temperature: int = 0) -> torch.Tensor:
        """Component of each point by ``infer_discrete``: the MAP (0) or a posterior draw (1).

        Parameters
        ----------
        x : Tensor, shape (batch, data_dim)
        temperature : {0, 1}
            0 returns argmax_k p(z = k | x); 1 samples z ~ p(z | x).

        Returns
        -------
        LongTensor, shape (batch,)
        """
        check_batch(x, self.data_dim, "GaussianMixture.assign")
        if temperature not in (0, 1):
            raise ConfigError(f"temperature must be 0 (MAP) or 1 (sample); got {temperature!r}")
        self.sync_param_store()
        decoder = infer_discrete(
            self.model, first_available_dim=-1 - MAX_PLATE_NESTING, temperature=temperature
        )
        z = poutine.trace(decoder).get_trace(pad_single_point(x)).nodes["z"]["value"]
        return z[: x.shape[0]]

    @torch.no_grad()
    def sample(self, num_samples: int, mean: bool = True) -> torch.Tensor:
        """Ancestral sampling: z ~ Categorical(pi), then x ~ p(x | z).

        Parameters
        ----------
        num_samples : int
            Number of data points to generate.
        mean : bool
            Return the mean of the drawn component (mu_z) instead of a draw of x.

        Returns
        -------
        Tensor, shape (num_samples, data_dim)
        """
        check_positive_int(num_samples, "num_samples")
        z = dist.Categorical(logits=self.components.logits).sample((num_samples,))
        likelihood = self.decode(z)
        return likelihood.mean if mean else likelihood.sample()

    # ----- fitting -----------------------------------------------------------------

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Initialize by k-means++ seeding (global torch RNG); equal weights, pooled scales.

        The first mean is a uniformly drawn data point; each next one is a data
        point drawn with probability proportional to its squared distance to
        the nearest mean chosen so far. Every component's scale is set to the
        data's per-feature standard deviation.

        Parameters
        ----------
        x : Tensor, shape (num_points, data_dim)
            At least ``num_components`` points.
        """
        check_batch(x, self.data_dim, "GaussianMixture.init_from_data")
        if x.shape[0] < self.num_components:
            raise DataError(
                f"k-means++ seeding needs at least num_components ({self.num_components}) "
                f"points; got {x.shape[0]}"
            )
        x = x.to(self.components.locs)
        chosen = [int(torch.randint(x.shape[0], ()))]
        while len(chosen) < self.num_components:
            distance = torch.cdist(x, x[chosen]).min(-1).values.pow(2)
            weights = distance if bool(distance.sum() > 0) else torch.ones_like(distance)
            chosen.append(int(torch.multinomial(weights, 1)))
        spread = x.std(0, unbiased=False).clamp_min(max(self.min_scale, torch.finfo(x.dtype).tiny))
        self.components.locs.copy_(x[chosen])
        self.components.log_scales.copy_(spread.log().expand_as(self.components.log_scales))
        self.components.logits.zero_()

    @keeps_global_rng
    def fit(
        self,
        x: torch.Tensor,
        num_steps: int = 500,
        learning_rate: float = 0.05,
        seed: int = 0,
        initialize: bool = True,
    ) -> list[float]:
        """Maximum likelihood by gradient descent on the exact enumerated ELBO (-log p(x)).

        Parameters
        ----------
        x : Tensor, shape (num_points, data_dim)
            The whole data set, used as one batch at every step.
        num_steps : int
            Adam steps.
        learning_rate : float
            Adam step size.
        seed : int
            Seed of the k-means++ initialization.
        initialize : bool
            Call :meth:`init_from_data` first; otherwise start from the current parameters.

        Returns
        -------
        list of float, length num_steps
            ``-log p(x)`` per data point (nats) before each step.

        Raises
        ------
        TrainingDivergedError
            If the loss becomes non-finite.
        """
        check_batch(x, self.data_dim, "GaussianMixture.fit")
        check_values(x, "gaussian")
        check_positive_int(num_steps, "num_steps")
        pyro.set_rng_seed(seed)
        if initialize:
            self.init_from_data(x)
        self.sync_param_store()
        elbo = TraceEnum_ELBO(max_plate_nesting=MAX_PLATE_NESTING)
        optimizer = torch.optim.Adam(self.parameters(), lr=learning_rate)
        history = []
        for step in range(num_steps):
            loss = elbo.differentiable_loss(self.model, self.guide, x) / x.shape[0]
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"the loss became {float(loss)} at step {step}; lower the learning rate"
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.append(float(loss.detach()))
        return history
