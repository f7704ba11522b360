"""How well single latent coordinates recover known generative factors.

Two views of one question, "which latent encodes which factor, and only it?":

* :func:`correlation_matrix`: the Spearman (rank) or Pearson correlation of
  every factor with every latent coordinate, shape (num_factors, num_latents).
* :func:`mutual_information_gap`: the mutual information gap (MIG) of Chen,
  Li, Grosse and Duvenaud (2018), "Isolating sources of disentanglement in
  VAEs". For each factor v_k, the mutual information with its most
  informative latent minus that with the second most, divided by the
  factor's entropy:

      gap_k = (I(v_k; z_(1)) - I(v_k; z_(2))) / H(v_k),     MIG = mean_k gap_k

  It is near 1 when each factor lives in one latent coordinate alone and near
  0 when a factor is spread over several (or captured by none).
* :func:`traversal_codes` (codes for pictures that vary one coordinate at a
  time); which coordinates a VAE uses at all is
  :func:`ppl_vae.inference.latents.kl_per_dimension`.

Mutual information is estimated by discretizing each variable into
``num_bins`` equal-frequency bins (edges at its sample quantiles) and
counting. Equal-frequency bins make the estimate depend only on the ranks,
so any monotone rescaling of a latent leaves it unchanged, and a continuous
factor's entropy is log(num_bins). Counting is biased upwards by about
(num_bins - 1)^2 / (2 N) nats for independent variables, so use N well above
num_bins^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.validation import check_int, check_positive_int

CORRELATION_METHODS: tuple[str, ...] = ("spearman", "pearson")


@dataclass(frozen=True)
class MutualInformationGap:
    """What :func:`mutual_information_gap` returns.

    Attributes
    ----------
    mutual_information : Tensor, shape (num_factors, num_latents)
        Discretized I(v_k; z_j) in nats.
    factor_entropy : Tensor, shape (num_factors,)
        Discretized H(v_k) in nats.
    gap : Tensor, shape (num_factors,)
        (largest - second largest mutual information of the factor) / its entropy.
    best_latent : Tensor of int64, shape (num_factors,)
        The latent coordinate with the largest mutual information with each factor.
    """

    mutual_information: torch.Tensor
    factor_entropy: torch.Tensor
    gap: torch.Tensor
    best_latent: torch.Tensor

    @property
    def score(self) -> float:
        """The MIG: the gaps averaged over the factors."""
        return float(self.gap.mean())


def correlation_matrix(latents: torch.Tensor, factors: torch.Tensor,
                       method: str = "spearman") -> torch.Tensor:
    """Correlation of every factor with every latent coordinate.

    Parameters
    ----------
    latents : Tensor, shape (num_points, num_latents)
        E.g. the encoder means of the data.
    factors : Tensor, shape (num_points, num_factors)
        The true factor values of the same points.
    method : {"spearman", "pearson"}
        ``spearman`` correlates ranks (tied values share their average
        rank), so it measures any monotone relation; ``pearson`` a linear one.

    Returns
    -------
    Tensor, shape (num_factors, num_latents)
        Values in [-1, 1], in the dtype and on the device of ``latents``; 0
        where a variable is constant.

    Raises
    ------
    DataError
        For inputs that are not floating point 2-D tensors with the same number
        of rows (at least 2), or that hold NaN or infinite values.
    ConfigError
        For an unknown method.
    """
    if method not in CORRELATION_METHODS:
        raise ConfigError(
            f"unknown correlation method {method!r}; choose one of "
            f"{', '.join(CORRELATION_METHODS)}")
    latents, factors = _check_pair(latents, factors, least_points=2)
    if method == "spearman":
        latents, factors = _average_ranks(latents), _average_ranks(factors)
    latents = latents - latents.mean(0)
    factors = factors - factors.mean(0)
    latent_norm, factor_norm = latents.norm(dim=0), factors.norm(dim=0)
    products = factors.T @ latents
    norms = factor_norm[:, None] * latent_norm[None, :]
    return torch.where(norms > 0, products / norms.clamp_min(torch.finfo(norms.dtype).tiny),
                       torch.zeros_like(products)).clamp(-1, 1)


def discretize(values: torch.Tensor, num_bins: int = 20) -> torch.Tensor:
    """Bin each column into ``num_bins`` equal-frequency bins.

    Parameters
    ----------
    values : Tensor, shape (num_points, num_columns)
    num_bins : int
        At least 2. Equal values always share a bin, so a column with few
        distinct values uses fewer bins.

    Returns
    -------
    Tensor of int64, shape (num_points, num_columns)
        Bin indices in ``0 .. num_bins - 1``.
    """
    _check_bins(num_bins)
    quantiles = torch.linspace(0, 1, num_bins + 1, dtype=torch.float64,
                               device=values.device)[1:-1]
    columns = values.to(torch.float64).T.contiguous()
    edges = torch.quantile(columns, quantiles, dim=1).T.contiguous()   # (num_columns, num_bins - 1)
    return torch.searchsorted(edges, columns, right=True).T


def mutual_information_gap(latents: torch.Tensor, factors: torch.Tensor,
                           num_bins: int = 20) -> MutualInformationGap:
    """The mutual information gap (MIG) of a representation, from discretized variables.

    Parameters
    ----------
    latents : Tensor, shape (num_points, num_latents)
        At least two latent coordinates (the gap needs a runner-up).
    factors : Tensor, shape (num_points, num_factors)
        The true factor values of the same points; none may be constant.
    num_bins : int
        Equal-frequency bins per variable (see :func:`discretize`).

    Returns
    -------
    MutualInformationGap
        Tensors in the dtype and on the device of ``latents``.

    Raises
    ------
    DataError
        For inputs of the wrong shape or type, non-finite values, fewer
        points than bins, fewer than two latents, or a constant factor.
    ConfigError
        For ``num_bins`` below 2.
    """
    _check_bins(num_bins)
    latents, factors = _check_pair(latents, factors, least_points=num_bins)
    if latents.shape[1] < 2:
        raise DataError(
            f"the mutual information gap compares a factor's two most informative latents; got "
            f"{latents.shape[1]} latent coordinate(s)")
    latent_bins, factor_bins = discretize(latents, num_bins), discretize(factors, num_bins)
    num_points = latents.shape[0]
    # joint[k, j, a, b]: how many points have factor k in bin a and latent j in bin b.
    pair = factor_bins[:, :, None] * num_bins + latent_bins[:, None, :]
    num_factors, num_latents = pair.shape[1:]
    offsets = torch.arange(num_factors * num_latents, device=pair.device).reshape(
        num_factors, num_latents) * num_bins**2
    joint = torch.bincount((pair + offsets).flatten(), minlength=offsets.numel() * num_bins**2)
    joint = joint.reshape(num_factors, num_latents, num_bins, num_bins).to(torch.float64)
    joint = joint / num_points
    factor_marginal = joint.sum(3, keepdim=True)
    latent_marginal = joint.sum(2, keepdim=True)
    ratio = joint / (factor_marginal * latent_marginal).clamp_min(torch.finfo(torch.float64).tiny)
    information = torch.where(joint > 0, joint * ratio.clamp_min(1e-300).log(),
                              torch.zeros_like(joint)).sum((2, 3)).clamp_min(0)
    marginal = factor_marginal[:, 0, :, 0]
    entropy = -torch.where(marginal > 0, marginal * marginal.clamp_min(1e-300).log(),
                           torch.zeros_like(marginal)).sum(1)
    constant = entropy <= 0
    if bool(constant.any()):
        raise DataError(
            f"factor(s) {constant.nonzero().flatten().tolist()} take a single value; a factor "
            "that never changes has no gap (drop its column)")
    top = information.topk(2, dim=1)
    gap = (top.values[:, 0] - top.values[:, 1]) / entropy
    dtype, device = latents.dtype, latents.device
    return MutualInformationGap(information.to(dtype), entropy.to(dtype), gap.to(dtype),
                                top.indices[:, 0].to(device))


def traversal_codes(latent_dim: int, values: torch.Tensor,
                    base: torch.Tensor | None = None) -> torch.Tensor:
    """Codes that move one latent coordinate at a time through ``values``.

    Parameters
    ----------
    latent_dim : int
    values : Tensor, shape (num_values,)
        The values each coordinate takes in turn.
    base : Tensor, shape (latent_dim,), optional
        The code the other coordinates keep; zeros (the prior mean) by default.

    Returns
    -------
    Tensor, shape (latent_dim, num_values, latent_dim)
        ``codes[j, i]`` is ``base`` with coordinate ``j`` set to ``values[i]``;
        dtype and device of ``values``.
    """
    check_positive_int(latent_dim, "latent_dim")
    if not isinstance(values, torch.Tensor) or values.dim() != 1 or not values.is_floating_point():
        raise DataError("values must be a 1-D floating point tensor")
    if base is None:
        base = values.new_zeros(latent_dim)
    if base.shape != (latent_dim,):
        raise DataError(f"base must have shape ({latent_dim},); got {tuple(base.shape)}")
    codes = base.to(values).expand(latent_dim, len(values), latent_dim).clone()
    index = torch.arange(latent_dim, device=values.device)
    codes[index, :, index] = values
    return codes


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 0..N-1 of each column, ties sharing their average rank; shape of ``values``."""
    order = values.argsort(dim=0, stable=True)
    sorted_values = values.gather(0, order)
    ranks = torch.empty_like(values)
    for column in range(values.shape[1]):
        _, inverse, counts = torch.unique_consecutive(sorted_values[:, column],
                                                      return_inverse=True, return_counts=True)
        counts = counts.to(values.dtype)
        average = counts.cumsum(0) - (counts + 1) / 2          # mean of the run's positions
        ranks[order[:, column], column] = average[inverse]
    return ranks


def _check_bins(num_bins: int) -> None:
    check_int(num_bins, "num_bins", 2)


def _check_pair(latents: torch.Tensor, factors: torch.Tensor,
                least_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    for name, value in (("latents", latents), ("factors", factors)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.dim() != 2:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise DataError(
                f"{name} must be a floating point tensor of shape (num_points, num_{name}); got "
                f"{shape}")
        if not bool(torch.isfinite(value).all()):
            raise DataError(f"{name} hold NaN or infinite values")
    if latents.shape[0] != factors.shape[0]:
        raise DataError(
            f"latents and factors describe different points: {latents.shape[0]} and "
            f"{factors.shape[0]} rows")
    if latents.shape[0] < least_points or 0 in latents.shape or 0 in factors.shape:
        raise DataError(
            f"need at least {least_points} points and one column in each; got latents "
            f"{tuple(latents.shape)} and factors {tuple(factors.shape)}")
    return latents, factors.to(device=latents.device, dtype=latents.dtype)


__all__ = [
    "CORRELATION_METHODS",
    "MutualInformationGap",
    "correlation_matrix",
    "discretize",
    "mutual_information_gap",
    "traversal_codes",
]
