"""Metrics of a learned representation: how a model uses its latents, what they encode and cost.

* **Use of the latent dimensions.** Both summaries read only the encoder,
  ``model.encode(x) -> (loc, scale)``, of a model with prior p(z) = N(0, I):

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

* **Disentanglement**: how well single latent coordinates recover known
  generative factors, "which latent encodes which factor, and only it?":

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
    time).

  Mutual information is estimated by discretizing each variable into
  ``num_bins`` equal-frequency bins (edges at its sample quantiles) and
  counting. Equal-frequency bins make the estimate depend only on the ranks,
  so any monotone rescaling of a latent leaves it unchanged, and a continuous
  factor's entropy is log(num_bins). Counting is biased upwards by about
  (num_bins - 1)^2 / (2 N) nats for independent variables, so use N well above
  num_bins^2.

* **Features and codes.** :func:`linear_probe` fits a logistic regression on a
  few labelled feature vectors (encoder means, raw pixels, PCA coefficients)
  and reports the test accuracy; :func:`stratified_subset` picks the labelled
  examples, the same number from every class. The bits-back rate of a
  Gaussian code is KL(q(z | x) || N(0, I)) / ln 2
  (:func:`~ppl_vae.inference.objectives.gaussian_kl` per coordinate, the
  formula of the ELBO's KL term, divided by ln 2); :func:`quantize_gaussian` rounds codes to
  ``bits`` bits per coordinate with equal-probability bins of a Gaussian;
  :func:`fit_pca` is the linear baseline. scikit-learn is called only inside
  :func:`linear_probe`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.inference.objectives import gaussian_kl
from ppl_vae.models.base import (
    ProbabilisticModel,
    check_batch,
    check_device,
    check_has_prior,
)
from ppl_vae.validation import check_int, check_number, check_positive_int

# ----- use of the latent dimensions --------------------------------------------------------

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
        If ``x`` is not a non-empty floating tensor of shape (num_points, data_dim)
        on the model's device.
    ConfigError
        If the model has no continuous latent code or no prior N(0, I) (an
        :class:`~ppl_vae.models.Autoencoder`), or ``batch_size`` is not a
        positive integer.
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
        If ``x`` is malformed, on another device than the model, has fewer
        than two rows, or the encoder's means are not finite.
    ConfigError
        If the model has no continuous latent code, ``threshold`` is not a
        finite non-negative number or ``batch_size`` is not a positive integer.
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


# ----- disentanglement ----------------------------------------------------------------------

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


# ----- features and codes -------------------------------------------------------------------


def stratified_subset(labels: torch.Tensor | np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` randomly chosen examples of every class, in random order.

    Parameters
    ----------
    labels : Tensor or ndarray of int, shape (num_points,)
    per_class : int
    seed : int
        Seed of numpy's generator; the same seed gives the same subset.

    Returns
    -------
    ndarray of int64, shape (num_classes * per_class,)

    Raises
    ------
    DataError
        If a class has fewer than ``per_class`` examples.
    """
    check_positive_int(per_class, "per_class")
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if members.size < per_class:
            raise DataError(f"class {label} has {members.size} examples; cannot take {per_class}")
        chosen.append(rng.choice(members, per_class, replace=False))
    return rng.permutation(np.concatenate(chosen)).astype(np.int64)


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor,
                 test_features: torch.Tensor, test_labels: torch.Tensor,
                 regularization: float = 1.0, seed: int = 0) -> float:
    """Test accuracy of a multinomial logistic regression fitted on fixed features.

    The features are standardized with the mean and standard deviation of the
    training features, then scikit-learn's ``LogisticRegression`` (L2 penalty,
    ``C = regularization``, L-BFGS) is fitted. How well such a *linear*
    classifier does from few labels measures how much of the class is written
    plainly in the features.

    Parameters
    ----------
    train_features : Tensor, shape (num_train, num_features)
    train_labels : Tensor of int, shape (num_train,)
        At least two classes.
    test_features : Tensor, shape (num_test, num_features)
    test_labels : Tensor of int, shape (num_test,)
    regularization : float
        Inverse L2 strength ``C``; larger fits the training labels harder.
    seed : int

    Returns
    -------
    float
        Share of test points classified correctly.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    arrays = [t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
              for t in (train_features, train_labels, test_features, test_labels)]
    x_train, y_train, x_test, y_test = arrays
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise DataError(f"features must be (points, features) with the same width; got "
                        f"{x_train.shape} and {x_test.shape}")
    if y_train.shape != (x_train.shape[0],) or y_test.shape != (x_test.shape[0],):
        raise DataError("there must be one label per feature row")
    if np.unique(y_train).size < 2:
        raise DataError("the training labels hold a single class; a probe needs at least two")
    if not regularization > 0:
        raise ConfigError(f"regularization must be positive; got {regularization!r}")
    probe = make_pipeline(StandardScaler(),
                          LogisticRegression(C=regularization, max_iter=2000, random_state=seed))
    probe.fit(x_train.astype(np.float64), y_train)
    return float((probe.predict(x_test.astype(np.float64)) == y_test).mean())


@dataclass(frozen=True)
class PCA:
    """A principal component basis fitted by :func:`fit_pca`.

    Attributes
    ----------
    mean : Tensor, shape (data_dim,)
    components : Tensor, shape (num_components, data_dim)
        Orthonormal rows, by decreasing variance.
    scale : Tensor, shape (num_components,)
        Standard deviation of the training data along each component.
    """

    mean: torch.Tensor
    components: torch.Tensor
    scale: torch.Tensor

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Coefficients of ``x``, shape (batch, data_dim) -> (batch, num_components)."""
        return (x - self.mean) @ self.components.T

    def reconstruct(self, coefficients: torch.Tensor) -> torch.Tensor:
        """Back to data space, shape (batch, num_components) -> (batch, data_dim)."""
        return self.mean + coefficients @ self.components


def fit_pca(x: torch.Tensor, num_components: int) -> PCA:
    """Principal components of ``x`` by a singular value decomposition.

    Parameters
    ----------
    x : Tensor, shape (num_points, data_dim)
    num_components : int
        At most ``min(num_points, data_dim)``.

    Returns
    -------
    PCA
        On the device and in the dtype of ``x``.
    """
    check_positive_int(num_components, "num_components")
    if x.dim() != 2 or num_components > min(x.shape):
        raise DataError(f"cannot take {num_components} components from data of shape {tuple(x.shape)}")
    mean = x.mean(0)
    _, singular_values, basis = torch.linalg.svd(x - mean, full_matrices=False)
    scale = singular_values[:num_components] / math.sqrt(max(x.shape[0] - 1, 1))
    return PCA(mean, basis[:num_components], scale)


# ----- compression --------------------------------------------------------------------------

#: Largest number of bits per coordinate :func:`quantize_gaussian` accepts
#: (2**16 bins of equal probability are still well above float32 resolution).
MAX_QUANTIZATION_BITS = 16


def quantize_gaussian(values: torch.Tensor, bits: int,
                      scale: torch.Tensor | float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Round values to ``2**bits`` levels, the bins of equal probability under N(0, scale^2).

    Bin k covers the Gaussian quantiles k / 2^bits to (k + 1) / 2^bits; each
    value is replaced by the mean of the Gaussian restricted to its bin, so
    the levels crowd where the Gaussian has its mass. With codes distributed
    like the Gaussian, every level is equally likely and each coordinate
    costs exactly ``bits`` bits.

    Parameters
    ----------
    values : Tensor, shape (..., num_coordinates)
    bits : int
        Bits per coordinate, 1 to :data:`MAX_QUANTIZATION_BITS`.
    scale : Tensor of shape (num_coordinates,), or float
        Standard deviation of the Gaussian of each coordinate.

    Returns
    -------
    indices : Tensor of int64, the shape of ``values``
        The bin of each value, 0 to 2^bits - 1.
    levels : Tensor, the shape, dtype and device of ``values``
        The quantized values.
    """
    check_positive_int(bits, "bits")
    if bits > MAX_QUANTIZATION_BITS:
        raise ConfigError(f"bits must be at most {MAX_QUANTIZATION_BITS}; got {bits}")
    scale = torch.as_tensor(scale, dtype=values.dtype, device=values.device)
    if not bool((scale > 0).all()):
        raise ConfigError("every scale must be positive")
    num_levels = 2**bits
    work = torch.float64
    standard = (values / scale).to(work)
    indices = (torch.special.ndtr(standard) * num_levels).floor().long().clamp(0, num_levels - 1)
    edges = torch.special.ndtri(torch.arange(num_levels + 1, dtype=work, device=values.device)
                                / num_levels)
    density = torch.exp(-0.5 * edges.pow(2)) / math.sqrt(2 * math.pi)   # 0 at the infinite ends
    centroids = (density[:-1] - density[1:]) * num_levels
    return indices, (centroids[indices] * scale.to(work)).to(values.dtype)


__all__ = [
    "ACTIVE_THRESHOLD",
    "ActiveUnits",
    "CORRELATION_METHODS",
    "DEFAULT_BATCH_SIZE",
    "MAX_QUANTIZATION_BITS",
    "MutualInformationGap",
    "PCA",
    "active_units",
    "correlation_matrix",
    "discretize",
    "fit_pca",
    "kl_per_dimension",
    "linear_probe",
    "mutual_information_gap",
    "quantize_gaussian",
    "stratified_subset",
    "traversal_codes",
]
