"""Pareto-k̂ diagnostics of importance weights, computed from streamed pieces.

An importance-sampling estimate ``log (1/K) sum_k w_k`` is only as good as the
right tail of the weights' distribution. Pareto-smoothed importance sampling
(Vehtari, Simpson, Gelman, Yao & Gabry, JMLR 2024) fits a generalized Pareto
distribution to the largest M weights and reads its shape k̂:

* k̂ < 0.5: the weights have a finite variance; the estimate and its
  delta-method standard error are fine;
* 0.5 <= k̂ <= 0.7: usable (the paper's pre-asymptotic analysis);
* k̂ > 0.7 (:data:`PARETO_K_THRESHOLD`; stricter for K < 2,155): the estimate
  converges too slowly to trust, and its sample standard error says nothing
  about its real error.

The fit only needs the ``M + 1`` largest log-weights (``M = ceil(min(K / 5,
3 sqrt(K)))``, ArviZ's rule with relative efficiency 1), so
:class:`RunningParetoTail` keeps a running top-``(M + 1)`` buffer per point and
never holds all K weights. The fit is the Zhang & Stephens (2009) empirical
Bayes estimate with ArviZ's weakly informative prior on k (``arviz.stats.stats
._gpdfit``), transcribed in batched float64, so k̂ agrees with ``arviz.psislw``
to rounding.
"""

from __future__ import annotations

import math

import torch

#: k̂ above which an importance-sampling estimate and its error bar are not trusted, for
#: K >= 2,155 (Vehtari et al. 2024, Sec. 3.2.4); smaller K get the paper's stricter
#: 1 - 1 / log10 K (:func:`pareto_k_threshold`), since their tails are sampled more thinly.
PARETO_K_THRESHOLD = 0.7

#: Fewer tail draws than this and no Pareto fit is made (k̂ = inf, as ArviZ reports).
MIN_TAIL = 5

#: Points whose tails are fitted in one batched pass (bounds the (points, 30 + sqrt(M), M) work array).
FIT_BLOCK = 256

_PRIOR_BS = 3.0  # ArviZ's _gpdfit: scale of the prior on b
_PRIOR_K = 10.0  # ArviZ's _gpdfit: weight of the prior pulling k towards 0.5
_LOG_TINY = math.log(torch.finfo(torch.float64).tiny)  # ArviZ's cutoffmin


def tail_length(num_samples: int) -> int:
    """M, the number of largest weights the Pareto fit uses: ``ceil(min(K / 5, 3 sqrt(K)))``."""
    return int(math.ceil(min(num_samples / 5.0, 3 * math.sqrt(num_samples))))


class RunningParetoTail:
    """The largest ``M + 1`` log-weights per point, folded piece by piece, and their k̂.

    Parameters
    ----------
    num_samples : int
        The total K the pieces will add up to (M depends on it).
    """

    def __init__(self, num_samples: int) -> None:
        self.num_samples = num_samples
        self.size = tail_length(num_samples) + 1
        self.count = 0
        self.top: torch.Tensor | None = None
        self._pending: list[torch.Tensor] = []
        self._pending_rows = 0

    def update(self, values: torch.Tensor) -> None:
        """Fold in a piece of log-weights.

        Pieces are staged until they hold ``M + 1`` rows and then merged with
        the buffer by one ``topk``, so many small pieces cost no more than a
        few large ones; at most ``2 (M + 1)`` rows plus one piece are held.

        Parameters
        ----------
        values : Tensor, shape (num_samples, num_points)
        """
        self.count += values.shape[0]
        self._pending.append(values.double())
        self._pending_rows += values.shape[0]
        if self._pending_rows >= self.size:
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        parts = ([self.top] if self.top is not None else []) + self._pending
        values = torch.cat(parts)
        self.top = values.topk(min(self.size, values.shape[0]), dim=0, sorted=True).values
        self._pending, self._pending_rows = [], 0

    def result(self) -> torch.Tensor:
        """k̂ per point, float64, shape (num_points,).

        ``inf`` when fewer than :data:`MIN_TAIL` weights lie above the cutoff
        (small K, or tied weights: ArviZ's convention, and flagged);
        ``-inf`` when the largest ``M + 1`` weights are all equal (bounded
        weights, e.g. the exact posterior as proposal; not flagged); NaN when
        the largest weight is not finite.
        """
        self._merge()
        return pareto_k_from_top(self.top.T, tail_length(self.num_samples), self.count)


def pareto_k_from_top(top: torch.Tensor, tail: int, count: int) -> torch.Tensor:
    """k̂ from each point's largest log-weights, sorted in descending order.

    Parameters
    ----------
    top : Tensor, shape (num_points, >= min(count, tail + 1))
        Largest log-weights, descending, float64.
    tail : int
        M, from :func:`tail_length` of the total sample size.
    count : int
        The total sample size K.

    Returns
    -------
    Tensor, shape (num_points,)
    """
    k = torch.full((top.shape[0],), math.inf, dtype=torch.float64, device=top.device)
    if count < tail + 1:
        return k
    shifted = top[:, :tail + 1] - top[:, :1]
    cutoff = shifted[:, tail].clamp(min=_LOG_TINY)
    lengths = (shifted[:, :tail] > cutoff[:, None]).sum(1)
    finite = torch.isfinite(top[:, 0])
    k = torch.where(finite, k, math.nan)
    k = torch.where(finite & (shifted[:, tail] == 0), -math.inf, k)
    fit = finite & (lengths >= MIN_TAIL)
    for length in lengths[fit].unique().tolist():
        rows = torch.nonzero(fit & (lengths == length)).squeeze(1)
        for block in rows.split(FIT_BLOCK):
            ascending = shifted[block, :length].flip(1)
            exceedances = ascending.exp() - cutoff[block, None].exp()
            k[block] = fit_generalized_pareto(exceedances)[0]
    return k


def fit_generalized_pareto(exceedances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zhang & Stephens' (2009) estimate of a generalized Pareto shape and scale, per row.

    The same computation as ``arviz.stats.stats._gpdfit`` (its prior on k
    included), batched over rows.

    Parameters
    ----------
    exceedances : Tensor, shape (num_points, n)
        Positive tail values above the cutoff, ascending in each row, n >= 5.

    Returns
    -------
    k, sigma : Tensor, shape (num_points,)
    """
    n = exceedances.shape[1]
    m_est = 30 + int(n**0.5)
    grid = torch.arange(1, m_est + 1, dtype=torch.float64, device=exceedances.device)
    b = 1 - (m_est / (grid - 0.5)).sqrt()
    quartile = exceedances[:, int(n / 4 + 0.5) - 1]
    b = b / (_PRIOR_BS * quartile[:, None]) + 1 / exceedances[:, -1:]
    k_grid = torch.log1p(-b[:, :, None] * exceedances[:, None, :]).mean(-1)
    log_likelihood = n * (torch.log(-(b / k_grid)) - k_grid - 1)
    weights = 1 / (log_likelihood[:, None, :] - log_likelihood[:, :, None]).exp().sum(-1)
    eps = torch.finfo(torch.float64).eps
    weights = torch.where(weights >= 10 * eps, weights, 0.0)
    weights = weights / weights.sum(-1, keepdim=True)
    b_post = (b * weights).sum(-1)
    k_post = torch.log1p(-b_post[:, None] * exceedances).mean(-1)
    sigma = -k_post / b_post
    return (n * k_post + _PRIOR_K * 0.5) / (n + _PRIOR_K), sigma


def pareto_k(log_weights: torch.Tensor) -> torch.Tensor:
    """k̂ of all the log-weights at once (the reference the streamed version must equal).

    Parameters
    ----------
    log_weights : Tensor, shape (num_samples, num_points)

    Returns
    -------
    Tensor, shape (num_points,), float64
    """
    running = RunningParetoTail(log_weights.shape[0])
    running.update(log_weights)
    return running.result()


def pareto_k_threshold(num_samples: int) -> float:
    """``min(1 - 1 / log10 K, 0.7)``: the largest trustworthy k̂ for K samples (0 for K <= 10)."""
    if num_samples <= 10:
        return 0.0
    return min(1 - 1 / math.log10(num_samples), PARETO_K_THRESHOLD)


def is_reliable(k: torch.Tensor, num_samples: int) -> torch.Tensor:
    """True where k̂ <= :func:`pareto_k_threshold` of K (NaN and inf are not reliable)."""
    return k <= pareto_k_threshold(num_samples)


def trusted_stderr(stderr: torch.Tensor, k: torch.Tensor, num_samples: int) -> torch.Tensor:
    """The standard error where k̂ is reliable, ``inf`` where it is not.

    Above :func:`pareto_k_threshold` the sample variance of the weights is
    ruled by the few largest draws, so the delta-method error understates the
    real one on most such points (and overstates it on some): no finite error
    bar is honest there. ``inf`` says so and can never be overconfident.
    """
    return torch.where(is_reliable(k, num_samples), stderr, torch.full_like(stderr, math.inf))
