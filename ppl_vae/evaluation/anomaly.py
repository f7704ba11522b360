"""Anomaly detection with a density model: low log-density means anomalous.

A model of the normal data gives every input a log-density (e.g.
:func:`ppl_vae.inference.iwae`); :func:`anomaly_roc` turns the log-densities of
normal and anomalous inputs into an ROC curve and its area. The corrupted
copies of images to test it on are made by :mod:`ppl_vae.data.corruptions`.
scikit-learn is called only inside :func:`anomaly_roc`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ppl_vae.errors import DataError


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


__all__ = ["ROC", "anomaly_roc"]
