"""Running reductions over importance samples, so memory does not grow with K.

The estimators of :mod:`ppl_vae.inference.importance` draw the K samples of
each data point in pieces. These accumulators fold the pieces in one at a
time and keep O(num_points) numbers, in float64:

* :class:`RunningMean`: the mean of the values and the standard error of that
  mean (Chan et al.'s pairwise update of the sum of squared deviations);
* :class:`RunningLogMeanExp`: ``log (1/K) sum_k exp(v_k)`` and its delta-method
  standard error, with the running maximum subtracted before every ``exp``,
  so nothing overflows or underflows for any K or any magnitude of ``v``;
  told the total K up front, it also keeps the largest log-weights for the
  Pareto k̂ of :mod:`ppl_vae.inference.psis` and reports the weights'
  effective sample size ``(sum w)^2 / sum w^2`` (Kong 1992) from the same sums.
"""

from __future__ import annotations

import math

import torch

from ppl_vae.inference.psis import RunningParetoTail


class RunningMean:
    """Mean over samples, per data point, and its Monte Carlo standard error.

    ``num_samples`` is accepted, and ignored, for the same signature as
    :class:`RunningLogMeanExp`: a plain average has no importance weights to diagnose.
    """

    def __init__(self, num_samples: int | None = None) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.sum_squares: torch.Tensor | None = None

    def update(self, values: torch.Tensor) -> None:
        """Fold in a piece of samples.

        Parameters
        ----------
        values : Tensor, shape (num_samples, num_points)
        """
        values = values.double()
        count = values.shape[0]
        mean = values.mean(0)
        sum_squares = (values - mean).pow(2).sum(0)
        if self.mean is None:
            self.count, self.mean, self.sum_squares = count, mean, sum_squares
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.sum_squares = self.sum_squares + sum_squares + delta.pow(2) * (self.count * count / total)
        self.count = total

    def result(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and its standard error (NaN from a single sample), in ``dtype``."""
        if self.count > 1:
            stderr = (self.sum_squares / (self.count - 1) / self.count).sqrt()
        else:
            stderr = torch.full_like(self.mean, math.nan)
        return self.mean.to(dtype), stderr.to(dtype)

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """None to report: an average of log-weights has no Pareto k̂ or ESS."""
        return {}


class RunningLogMeanExp:
    """``log mean_k exp(v_k)`` per data point, and its delta-method standard error.

    The standard error of ``log mean w`` is ``sd(w) / (sqrt(K) mean w)``; with
    ``r_k = w_k / mean w`` it is ``sd(r) / sqrt(K)``, computed from the running
    sums of ``w`` and ``w**2`` scaled by the running maximum.

    Parameters
    ----------
    num_samples : int, optional
        The total K the pieces will add up to; given, :meth:`diagnostics`
        reports the Pareto k̂ and the effective sample size per point.
    """

    def __init__(self, num_samples: int | None = None) -> None:
        self.tail = RunningParetoTail(num_samples) if num_samples is not None else None
        self.count = 0
        self.shift: torch.Tensor | None = None
        self.sum_exp: torch.Tensor | None = None
        self.sum_exp2: torch.Tensor | None = None

    def update(self, values: torch.Tensor) -> None:
        """Fold in a piece of log-weights.

        Parameters
        ----------
        values : Tensor, shape (num_samples, num_points)
        """
        values = values.double()
        if self.tail is not None:
            self.tail.update(values)
        shift = values.max(0).values
        if self.shift is not None:
            # Only points with weight seen so far carry their old shift (NaN stays seen).
            seen = self.sum_exp != 0
            shift = torch.where(seen, torch.maximum(shift, self.shift), shift)
        # Points whose values so far are all -inf (or +inf / NaN) are scaled by 1.
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
        scaled = (values - shift).exp()
        sum_exp, sum_exp2 = scaled.sum(0), scaled.pow(2).sum(0)
        if self.shift is not None:
            rescale = (self.shift - shift).exp()  # <= 1 wherever seen
            sum_exp = sum_exp + torch.where(seen, self.sum_exp * rescale, 0.0)
            sum_exp2 = sum_exp2 + torch.where(seen, self.sum_exp2 * rescale.pow(2), 0.0)
        self.count += values.shape[0]
        self.shift, self.sum_exp, self.sum_exp2 = shift, sum_exp, sum_exp2

    def result(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The estimate ``log mean exp(v)`` and its standard error, in ``dtype``."""
        count = self.count
        estimate = self.shift + self.sum_exp.log() - math.log(count)
        if count > 1:
            # sum_k r_k^2 = K^2 sum(w^2) / sum(w)^2 and mean(r) = 1.
            sum_r2 = count**2 * self.sum_exp2 / self.sum_exp.pow(2)
            variance = ((sum_r2 - count) / (count - 1)).clamp(min=0)
            stderr = (variance / count).sqrt()
        else:
            stderr = torch.full_like(estimate, math.nan)
        return estimate.to(dtype), stderr.to(dtype)

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """``pareto_k`` and ``ess`` per point, float64 (empty without ``num_samples``).

        ``ess = (sum w)^2 / sum w^2`` lies between 1 and K; NaN where every weight is zero.
        """
        if self.tail is None:
            return {}
        return {"pareto_k": self.tail.result(), "ess": self.sum_exp.pow(2) / self.sum_exp2}
