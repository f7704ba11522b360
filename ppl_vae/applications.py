"""What a trained latent variable model is used for: anomaly scores, features, codes.

Three uses, each a handful of small functions that take plain tensors:

* **Anomaly detection.** A model of the normal data gives every input a
  log-density (e.g. :func:`ppl_vae.inference.iwae`); :func:`anomaly_roc`
  turns the log-densities of normal and anomalous inputs into an ROC curve and
  its area, with *low* density meaning *anomalous*. :func:`flip_pixels`,
  :func:`paste_patch`, :func:`shift_images` and :func:`mirror_images` make
  corrupted copies of flat images to test it on.
* **Representation learning.** :func:`linear_probe` fits a logistic
  regression on a few labelled feature vectors (encoder means, raw pixels,
  PCA coefficients) and reports the test accuracy; :func:`stratified_subset`
  picks the labelled examples, the same number from every class.
* **Compression.** The bits-back rate of a Gaussian code is
  KL(q(z | x) || N(0, I)) / ln 2 (:func:`ppl_vae.inference.latents.gaussian_kl`
  per coordinate, divided by ln 2); :func:`quantize_gaussian`
  rounds codes to ``bits`` bits per coordinate with equal-probability bins of
  a Gaussian; :func:`fit_pca` is the linear baseline.

Every function follows the device and dtype of its inputs; scikit-learn is
called only inside :func:`anomaly_roc` and :func:`linear_probe`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.models.base import check_positive_int

#: Largest number of bits per coordinate :func:`quantize_gaussian` accepts
#: (2**16 bins of equal probability are still well above float32 resolution).
MAX_QUANTIZATION_BITS = 16


# ----- anomaly detection --------------------------------------------------------------------


@dataclass(frozen=True)
class ROC:
    """An ROC curve with anomalies as the positive class.

    Attributes
    ----------
    false_positive_rate : ndarray, shape (num_thresholds,)
        Share of normal inputs flagged at each threshold.
    true_positive_rate : ndarray, shape (num_thresholds,)
        Share of anomalies flagged at each threshold.
    thresholds : ndarray, shape (num_thresholds,)
        The log-density below which an input is flagged (the first is +inf).
    auc : float
        Area under the curve: the probability that a random anomaly has a
        lower log-density than a random normal input (ties count one half).
    """

    false_positive_rate: np.ndarray
    true_positive_rate: np.ndarray
    thresholds: np.ndarray
    auc: float


def _as_finite_vector(values: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    array = (values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor)
             else np.asarray(values, dtype=np.float64))
    if array.ndim != 1 or array.size == 0:
        raise DataError(f"{name} must be a non-empty 1-D array of scores; got shape {array.shape}")
    if not np.isfinite(array).all():
        raise DataError(f"{name} holds {int((~np.isfinite(array)).sum())} non-finite values")
    return array


def anomaly_roc(normal_log_density: torch.Tensor | np.ndarray,
                anomaly_log_density: torch.Tensor | np.ndarray) -> ROC:
    """ROC curve and AUC of the rule "flag x when its log-density is below a threshold".

    Parameters
    ----------
    normal_log_density : Tensor or ndarray, shape (num_normal,)
        Scores (log p(x), an ELBO, ...) of inputs that are not anomalies.
    anomaly_log_density : Tensor or ndarray, shape (num_anomalies,)
        Scores of the anomalies.

    Returns
    -------
    ROC
        AUC 1 when every anomaly scores below every normal input, 0.5 for a
        score that does not tell them apart, below 0.5 when anomalies score
        *higher* (as simple images can under a likelihood model).

    Raises
    ------
    DataError
        If either set is empty, not one-dimensional, or holds NaN or inf.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    normal = _as_finite_vector(normal_log_density, "normal_log_density")
    anomalous = _as_finite_vector(anomaly_log_density, "anomaly_log_density")
    labels = np.concatenate([np.zeros(normal.size), np.ones(anomalous.size)])
    anomaly_score = -np.concatenate([normal, anomalous])
    fpr, tpr, thresholds = roc_curve(labels, anomaly_score, drop_intermediate=False)
    return ROC(fpr, tpr, -thresholds, float(roc_auc_score(labels, anomaly_score)))


def _check_images(x: torch.Tensor, image_shape: tuple[int, int], where: str) -> tuple[int, int]:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise DataError(f"{where} needs flat images of shape (batch, height * width); got "
                        f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if len(image_shape) != 2:
        raise DataError(f"{where}: image_shape must be (height, width); got {image_shape!r}")
    height, width = (check_positive_int(side, "image_shape entries") for side in image_shape)
    if x.shape[1] != height * width:
        raise DataError(f"{where}: rows of length {x.shape[1]} are not {height}x{width} images")
    return height, width


def flip_pixels(x: torch.Tensor, fraction: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary images with a random ``fraction`` of the pixels of each one flipped (x -> 1 - x).

    Parameters
    ----------
    x : Tensor, shape (batch, data_dim)
        Values in [0, 1], usually binary.
    fraction : float
        Probability, in [0, 1], that a pixel is flipped, independently per pixel.
    generator : torch.Generator, optional
        On the device of ``x``.

    Returns
    -------
    Tensor, the shape, dtype and device of ``x``
    """
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"fraction must lie in [0, 1]; got {fraction!r}")
    flip = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < fraction
    return torch.where(flip, 1 - x, x)


def paste_patch(x: torch.Tensor, image_shape: tuple[int, int], size: int, value: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Images with a ``size`` x ``size`` square set to ``value`` at a random place in each.

    Parameters
    ----------
    x : Tensor, shape (batch, height * width)
    image_shape : (int, int)
        Height and width of one image.
    size : int
        Side of the square, at most the smaller image side.
    value : float
        The square's pixel value (1: ink).
    generator : torch.Generator, optional
        Chooses the squares' top-left corners; on the device of ``x``.

    Returns
    -------
    Tensor, the shape, dtype and device of ``x``
    """
    height, width = _check_images(x, image_shape, "paste_patch")
    check_positive_int(size, "size")
    if size > min(height, width):
        raise ConfigError(f"a patch of side {size} does not fit into {height}x{width} images")
    tops = torch.randint(0, height - size + 1, (x.shape[0],), generator=generator, device=x.device)
    lefts = torch.randint(0, width - size + 1, (x.shape[0],), generator=generator, device=x.device)
    rows = torch.arange(height, device=x.device)[None, :, None]
    columns = torch.arange(width, device=x.device)[None, None, :]
    inside = ((rows >= tops[:, None, None]) & (rows < tops[:, None, None] + size)
              & (columns >= lefts[:, None, None]) & (columns < lefts[:, None, None] + size))
    return torch.where(inside.reshape(x.shape), x.new_tensor(value), x)


def shift_images(x: torch.Tensor, image_shape: tuple[int, int], down: int = 0,
                 right: int = 0) -> torch.Tensor:
    """Images moved by ``down`` rows and ``right`` columns; uncovered pixels become 0.

    Negative values move up and left. Ink moved past the border is lost.

    Parameters
    ----------
    x : Tensor, shape (batch, height * width)
    image_shape : (int, int)
    down, right : int

    Returns
    -------
    Tensor, the shape, dtype and device of ``x``
    """
    height, width = _check_images(x, image_shape, "shift_images")
    if abs(down) >= height or abs(right) >= width:
        raise ConfigError(f"a shift of ({down}, {right}) moves {height}x{width} images out of view")
    images = x.reshape(-1, height, width)
    shifted = torch.zeros_like(images)
    rows_to = slice(max(down, 0), height + min(down, 0))
    rows_from = slice(max(-down, 0), height - max(down, 0))
    columns_to = slice(max(right, 0), width + min(right, 0))
    columns_from = slice(max(-right, 0), width - max(right, 0))
    shifted[:, rows_to, columns_to] = images[:, rows_from, columns_from]
    return shifted.reshape(x.shape)


def mirror_images(x: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
    """Images flipped left to right.

    Parameters
    ----------
    x : Tensor, shape (batch, height * width)
    image_shape : (int, int)

    Returns
    -------
    Tensor, the shape, dtype and device of ``x``
    """
    height, width = _check_images(x, image_shape, "mirror_images")
    return x.reshape(-1, height, width).flip(-1).reshape(x.shape)


# ----- representation learning --------------------------------------------------------------


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
    "MAX_QUANTIZATION_BITS",
    "PCA",
    "ROC",
    "anomaly_roc",
    "fit_pca",
    "flip_pixels",
    "linear_probe",
    "mirror_images",
    "paste_patch",
    "quantize_gaussian",
    "shift_images",
    "stratified_subset",
]
