"""How a trained model uses its latent dimensions: KL per dimension and active units.

Both summaries read only the encoder, ``model.encode(x) -> (loc, scale)``, of
a model with prior p(z) = N(0, I):

* :func:`kl_per_dimension`: the closed-form KL(q(z_j | x) || N(0, 1)) of each
  coordinate, averaged over the data. For a diagonal Gaussian q (the VAE's
  encoder) the coordinates are independent, so these add up to the KL term
  of the ELBO.
* :func:`active_units`: the count of Burda, Grosse and Salakhutdinov (2016),
  "Importance weighted autoencoders", section 5.2: unit j is *active* when its
  posterior mean moves with the input, Var_x(E_q[z_j | x]) > threshold. An
  inactive unit has q(z_j | x) roughly the same for every x, so the decoder
  cannot read anything from it.

Neither needs gradients; both work through ``x`` in chunks and return
tensors on the device and in the dtype of the encoder's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.models.base import (
    ProbabilisticModel,
    check_batch,
    check_device,
    check_has_prior,
    check_positive_int,
)
from ppl_vae.validation import check_number

#: Burda et al. (2016)'s threshold on Var_x(E_q[z_j | x]) for an active unit.
ACTIVE_THRESHOLD = 1e-2

#: Rows of ``x`` encoded at once.
DEFAULT_BATCH_SIZE = 1024


@dataclass(frozen=True)
class ActiveUnits:
    """The active-unit count of a model on a data set.

    Attributes
    ----------
    count : int
        Number of units j with ``variances[j] > threshold``.
    variances : Tensor, shape (latent_dim,)
        Var_x(E_q[z_j | x]): the variance over the data points of each unit's
        posterior mean (with the 1/(N - 1) normalization).
    threshold : float
        The threshold the count used.
    """

    count: int
    variances: torch.Tensor
    threshold: float

    @property
    def mask(self) -> torch.Tensor:
        """Boolean tensor, shape (latent_dim,): which units are active."""
        return self.variances > self.threshold


def _check_encoder_inputs(model: ProbabilisticModel, x: torch.Tensor, where: str,
                          batch_size: int) -> None:
    if getattr(model, "latent_support", None) != "real":
        raise ConfigError(
            f"{where} needs a model with a continuous latent code and an encoder "
            f"(VAE, LinearGaussian, Autoencoder); got {type(model).__name__}"
        )
    check_batch(x, model.data_dim, where)
    check_device(x, model, "x")
    check_positive_int(batch_size, "batch_size")


def _encoded(model: ProbabilisticModel, x: torch.Tensor, batch_size: int):
    """Yield ``(loc, scale)`` of q(z | x) for consecutive chunks of ``batch_size`` rows."""
    for start in range(0, x.shape[0], batch_size):
        yield model.encode(x[start:start + batch_size])


@torch.no_grad()
def gaussian_kl(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, scale^2) || N(0, 1)) elementwise, in nats: ``(loc^2 + scale^2 - 1) / 2 - log scale``.

    Per point and coordinate, this is the rate of a diagonal Gaussian code
    (divide by ln 2 for bits); summed over coordinates, the ELBO's KL term.

    Parameters
    ----------
    loc, scale : Tensor, same shape, e.g. (num_points, latent_dim)
        Means and (positive) standard deviations, e.g. from ``model.encode(x)``.

    Returns
    -------
    Tensor, the shape of ``loc``

    Raises
    ------
    DataError
        If the shapes differ or a scale is not positive.
    """
    if not (isinstance(loc, torch.Tensor) and isinstance(scale, torch.Tensor)
            and loc.shape == scale.shape):
        raise DataError(
            "loc and scale must be tensors of one shape; got "
            f"{tuple(getattr(loc, 'shape', ()))} and {tuple(getattr(scale, 'shape', ()))}")
    if not bool((scale > 0).all()):
        raise DataError("every scale must be positive")
    return 0.5 * (loc.pow(2) + scale.pow(2) - 1.0) - scale.log()


def kl_per_dimension(model: ProbabilisticModel, x: torch.Tensor, *,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Closed-form KL(q(z_j | x) || N(0, 1)) of each latent coordinate, averaged over x.

    For q(z_j | x) = N(mu_j(x), sigma_j(x)^2),

        KL_j(x) = (mu_j^2 + sigma_j^2 - 1) / 2 - log sigma_j,

    and the result is the mean of KL_j(x) over the rows of ``x``. With a
    diagonal Gaussian encoder (:class:`~ppl_vae.models.VAE`) the sum over j
    is the exact KL(q(z | x) || p(z)), the quantity that
    :func:`~ppl_vae.inference.elbo_terms` estimates by Monte Carlo. For a
    guide with correlated coordinates (a :class:`~ppl_vae.models.LinearGaussian`
    whose ``scale_tril`` is not diagonal) ``encode`` gives the marginal
    standard deviations, so these are the KLs of the marginals, and their sum
    falls short of the joint KL by the total correlation of q.

    Parameters
    ----------
    model : ProbabilisticModel
        A model with prior N(0, I) whose ``encode(x)`` returns ``(loc, scale)``.
    x : Tensor, shape (num_points, data_dim)
        Data in the form the encoder is trained on (e.g. binarized digits).
    batch_size : int
        Rows encoded at once.

    Returns
    -------
    Tensor, shape (latent_dim,)
        Nats per data point for each coordinate; non-negative.

    Raises
    ------
    DataError
        If ``x`` is not a non-empty floating tensor of shape (num_points, data_dim).
    ConfigError
        If the model has no continuous latent code or no prior N(0, I) (an
        :class:`~ppl_vae.models.Autoencoder`), ``x`` is on another device than
        the model, or ``batch_size`` is not a positive integer.
    """
    _check_encoder_inputs(model, x, "kl_per_dimension", batch_size)
    check_has_prior(model, "kl_per_dimension")
    total = None
    for loc, scale in _encoded(model, x, batch_size):
        kl = gaussian_kl(loc, scale)
        total = kl.sum(0) if total is None else total + kl.sum(0)
    return total / x.shape[0]


@torch.no_grad()
def active_units(model: ProbabilisticModel, x: torch.Tensor, threshold: float = ACTIVE_THRESHOLD,
                 *, batch_size: int = DEFAULT_BATCH_SIZE) -> ActiveUnits:
    """Count the latent units whose posterior mean varies with the input (Burda et al., 2016).

    Unit j is active when ``Var_x(E_q[z_j | x]) > threshold``, the variance
    taken over the rows of ``x`` with the unbiased 1/(N - 1) normalization.
    The mean of q(z_j | x) is the encoder's ``loc``, so no sampling is needed.

    Parameters
    ----------
    model : ProbabilisticModel
        A model whose ``encode(x)`` returns ``(loc, scale)`` of q(z | x); for an
        :class:`~ppl_vae.models.Autoencoder` the codes themselves are the means.
    x : Tensor, shape (num_points, data_dim)
        At least two data points, usually a held-out set.
    threshold : float
        Variance above which a unit counts as active (default 0.01, Burda et al.'s).
    batch_size : int
        Rows encoded at once.

    Returns
    -------
    ActiveUnits
        ``count``, the per-unit ``variances`` (shape (latent_dim,)) and the
        ``threshold``.

    Raises
    ------
    DataError
        If ``x`` is malformed, has fewer than two rows, or the encoder's means
        are not finite.
    ConfigError
        If the model has no continuous latent code, ``x`` is on another device
        than the model, ``threshold`` is not a finite non-negative number or
        ``batch_size`` is not a positive integer.
    """
    _check_encoder_inputs(model, x, "active_units", batch_size)
    check_number(threshold, "threshold", positive=False)
    if x.shape[0] < 2:
        raise DataError(
            f"active_units needs at least 2 data points to measure a variance; got {x.shape[0]}"
        )
    means = torch.cat([loc for loc, _ in _encoded(model, x, batch_size)])
    if not bool(torch.isfinite(means).all()):
        raise DataError("the encoder returned NaN or infinite means for some rows of x; "
                        "check the data and the model's weights")
    variances = means.var(0, correction=1)
    count = int((variances > threshold).sum())
    return ActiveUnits(count, variances, float(threshold))
