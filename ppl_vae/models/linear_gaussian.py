"""Probabilistic PCA: a latent variable model whose posterior and evidence are exact.

Generative model::

    z ~ N(0, I_L)
    x | z ~ N(W z + mu, sigma^2 I_D)

so that ``p(x) = N(mu, W W^T + sigma^2 I)`` and, with ``M = W^T W + sigma^2 I``,

    p(z | x) = N(M^{-1} W^T (x - mu), sigma^2 M^{-1}).

The guide is a linear-Gaussian family ``q(z | x) = N(A x + b, S S^T)`` that
contains the exact posterior, so variational inference can be exact here.
This model is the ground truth every inference method is tested against.
"""

from __future__ import annotations

from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.errors import DataError
from ppl_vae.models.base import (
    GaussianLatentModel,
    check_batch,
    check_positive_int,
    check_values,
    data_plate,
    latent_scale,
    transcribed,
)


class LinearDecoder(nn.Module):
    """Parameters of p(x | z): ``weight`` (D, L), ``loc`` (D,), log noise scale (scalar)."""

    def __init__(self, data_dim: int, latent_dim: int, noise_scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(data_dim, latent_dim) / latent_dim**0.5)
        self.loc = nn.Parameter(torch.zeros(data_dim))
        self.log_noise_scale = nn.Parameter(torch.tensor(float(noise_scale)).log())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T + self.loc


class LinearEncoder(nn.Module):
    """Parameters of q(z | x) = N(A x + b, S S^T) with S lower triangular, positive diagonal."""

    def __init__(self, data_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(latent_dim, data_dim))
        self.bias = nn.Parameter(torch.zeros(latent_dim))
        self.raw_scale_tril = nn.Parameter(torch.zeros(latent_dim, latent_dim))

    def scale_tril(self) -> torch.Tensor:
        raw = self.raw_scale_tril
        return raw.tril(-1) + torch.diag_embed(raw.diagonal().exp())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x @ self.weight.T + self.bias, self.scale_tril()


class LinearGaussian(GaussianLatentModel):
    """Probabilistic PCA with an exact posterior and an exact marginal likelihood.

    Parameters
    ----------
    data_dim : int
        Observed dimension D.
    latent_dim : int
        Latent dimension L (at most D).
    noise_scale : float
        Initial observation noise standard deviation sigma.
    name : str
        Prefix of the model's entries in Pyro's parameter store.

    Examples
    --------
    >>> import torch
    >>> from ppl_vae import LinearGaussian
    >>> x = torch.randn(500, 5, dtype=torch.float64)
    >>> ppca = LinearGaussian.fit_maximum_likelihood(x, latent_dim=2)
    >>> ppca.log_marginal(x).shape           # the exact log p(x) of every point
    torch.Size([500])
    """

    likelihood = "gaussian"

    def __init__(
        self, data_dim: int, latent_dim: int, noise_scale: float = 1.0, name: str = "ppca"
    ) -> None:
        super().__init__()
        check_positive_int(data_dim, "data_dim")
        check_positive_int(latent_dim, "latent_dim")
        if latent_dim > data_dim:
            raise DataError(
                f"latent_dim ({latent_dim}) must not exceed data_dim ({data_dim}) for probabilistic PCA"
            )
        self.data_dim = data_dim
        self.latent_dim = latent_dim
        self.pyro_name = name
        self.decoder = LinearDecoder(data_dim, latent_dim, noise_scale)
        self.encoder = LinearEncoder(data_dim, latent_dim)

    def config(self) -> dict[str, Any]:
        return {"data_dim": self.data_dim, "latent_dim": self.latent_dim, "name": self.pyro_name}

    @property
    def noise_scale(self) -> torch.Tensor:
        """Observation noise standard deviation sigma (scalar tensor)."""
        return self.decoder.log_noise_scale.exp()

    # ----- the Pyro programs ----------------------------------------------------------

    @transcribed
    def guide(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> None:
        """q(z | x) = N(A x + b, S S^T), a family that contains the exact posterior."""
        check_batch(x, self.data_dim, "LinearGaussian.guide")
        self._register("encoder", self.encoder)
        with data_plate(x, num_data):
            with latent_scale(beta):
                pyro.sample("z", self.guide_distribution(x))

    def guide_distribution(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z | x) = N(A x + b, S S^T): batch shape ``(batch,)``, event ``(latent_dim,)``."""
        loc, scale_tril = self.encoder(x)
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)

    # ----- exact quantities --------------------------------------------------------

    def decode(self, z: torch.Tensor) -> dist.TorchDistribution:
        """p(x | z) = N(W z + mu, sigma^2 I), event shape (data_dim,)."""
        return dist.Normal(self.decoder(z), self.noise_scale).to_event(1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and marginal standard deviations of the guide q(z | x), each (batch, latent_dim)."""
        check_batch(x, self.data_dim, "LinearGaussian.encode")
        loc, scale_tril = self.encoder(x)
        scale = scale_tril.pow(2).sum(-1).sqrt()
        return loc, scale.expand_as(loc)

    def marginal(self) -> dist.LowRankMultivariateNormal:
        """The exact evidence p(x) = N(mu, W W^T + sigma^2 I)."""
        weight = self.decoder.weight
        noise_var = self.noise_scale.pow(2).expand(self.data_dim)
        return dist.LowRankMultivariateNormal(self.decoder.loc, weight, noise_var)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per data point.

        Parameters
        ----------
        x : Tensor, shape (batch, data_dim)

        Returns
        -------
        Tensor, shape (batch,)
        """
        check_batch(x, self.data_dim, "LinearGaussian.log_marginal")
        return self.marginal().log_prob(x)

    def _posterior_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``M^{-1} W^T`` (L, D) and the posterior covariance ``sigma^2 M^{-1}`` (L, L)."""
        weight = self.decoder.weight
        noise_var = self.noise_scale.pow(2)
        eye = torch.eye(self.latent_dim, dtype=weight.dtype, device=weight.device)
        precision_factor = weight.T @ weight + noise_var * eye
        gain = torch.linalg.solve(precision_factor, weight.T)
        covariance = noise_var * torch.linalg.inv(precision_factor)
        return gain, 0.5 * (covariance + covariance.T)

    def posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """Exact posterior p(z | x), batch shape (batch,), event shape (latent_dim,)."""
        check_batch(x, self.data_dim, "LinearGaussian.posterior")
        gain, covariance = self._posterior_factors()
        loc = (x - self.decoder.loc) @ gain.T
        return dist.MultivariateNormal(loc, covariance_matrix=covariance)

    @torch.no_grad()
    def set_guide_to_posterior(self) -> None:
        """Set the guide's parameters so that q(z | x) equals the exact p(z | x)."""
        gain, covariance = self._posterior_factors()
        scale_tril = torch.linalg.cholesky(covariance)
        self.encoder.weight.copy_(gain)
        self.encoder.bias.copy_(-gain @ self.decoder.loc)
        self.encoder.raw_scale_tril.copy_(
            scale_tril.tril(-1) + torch.diag_embed(scale_tril.diagonal().log())
        )

    @classmethod
    def fit_maximum_likelihood(
        cls, x: torch.Tensor, latent_dim: int, name: str = "ppca"
    ) -> "LinearGaussian":
        """The closed-form maximum-likelihood fit (Tipping and Bishop, 1999).

        With sample mean ``mu`` and sample covariance eigenpairs
        ``(lambda_i, u_i)`` in decreasing order, ``sigma^2`` is the mean of the
        discarded eigenvalues and ``W = U_L (Lambda_L - sigma^2 I)^{1/2}``.
        The guide is set to the exact posterior.

        Parameters
        ----------
        x : Tensor, shape (num_points, data_dim)
            Data; the fit follows its dtype and device.
        latent_dim : int
            Latent dimension L, smaller than data_dim.

        Returns
        -------
        LinearGaussian
        """
        check_batch(x, x.shape[-1] if x.dim() == 2 else -1, "LinearGaussian.fit_maximum_likelihood")
        check_values(x, "gaussian")
        num_points, data_dim = x.shape
        check_positive_int(latent_dim, "latent_dim")
        if latent_dim >= data_dim or num_points < 2:
            raise DataError(
                f"the closed-form fit needs latent_dim < data_dim and at least 2 points; "
                f"got latent_dim={latent_dim}, data of shape {tuple(x.shape)}"
            )
        loc = x.mean(0)
        centred = x - loc
        covariance = centred.T @ centred / num_points
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
        noise_var = eigenvalues[latent_dim:].mean().clamp_min(torch.finfo(x.dtype).tiny)
        spread = (eigenvalues[:latent_dim] - noise_var).clamp_min(0).sqrt()
        model = cls(data_dim, latent_dim, name=name).to(dtype=x.dtype, device=x.device)
        with torch.no_grad():
            model.decoder.weight.copy_(eigenvectors[:, :latent_dim] * spread)
            model.decoder.loc.copy_(loc)
            model.decoder.log_noise_scale.copy_(0.5 * noise_var.log())
        model.set_guide_to_posterior()
        return model
