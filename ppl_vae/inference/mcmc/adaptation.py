"""Warm-up adaptation for many HMC chains at once: Stan's window schedule and per-chain dual averaging.

Every chain adapts its own step size (dual averaging, Hoffman & Gelman 2014,
section 3.2) and its own inverse mass matrix (the regularized variance or
covariance of its draws in each slow window, as Stan and Pyro do). The schedule
of windows is shared, so all chains end a window together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Stan's and Pyro's default window sizes: fast initial buffer, first slow window, fast final buffer.
START_BUFFER, FIRST_WINDOW, END_BUFFER = 75, 25, 50


def warmup_stages(warmup_steps: int) -> list[tuple[int, bool]]:
    """Warm-up split into stages; a slow stage ends with a new estimate of the mass matrix.

    The same schedule as Stan and Pyro: a fast buffer of 75 iterations, slow
    windows of 25, 50, 100, ... (the last stretched to meet the final buffer),
    and a fast buffer of 50; shrunk proportionally (15 % / 10 %) when warm-up
    is shorter than their sum, and a single fast stage below 20 iterations.

    Parameters
    ----------
    warmup_steps : int

    Returns
    -------
    list of (int, bool)
        ``(end, slow)`` per stage, ends increasing to ``warmup_steps``; stage
        ``k`` covers iterations ``[end_{k-1}, end_k)``.
    """
    if warmup_steps == 0:
        return []
    if warmup_steps < 20:
        return [(warmup_steps, False)]
    start, end, first = START_BUFFER, END_BUFFER, FIRST_WINDOW
    if start + end + first > warmup_steps:
        start, end = int(0.15 * warmup_steps), int(0.1 * warmup_steps)
        first = warmup_steps - start - end
    last_slow_end = warmup_steps - end
    stages, window_start, size = [(start, False)], start, first
    while window_start < last_slow_end:
        if 3 * size <= last_slow_end - window_start:
            next_size = 2 * size
        else:
            size, next_size = last_slow_end - window_start, size
        window_start += size
        stages.append((window_start, True))
        size = next_size
    return [*stages, (warmup_steps, False)]


@dataclass
class DualAveraging:
    """Per-chain dual averaging of log step sizes towards a target acceptance probability.

    Attributes
    ----------
    prox_center : Tensor, shape (chains,)
        ``mu = log(10 * initial step size)``, the point the iterates shrink towards.
    target : float
        Target mean acceptance probability.
    """

    prox_center: torch.Tensor
    target: float
    gamma: float = 0.05
    t0: float = 10.0
    kappa: float = 0.75

    def __post_init__(self) -> None:
        self.t = torch.zeros_like(self.prox_center)
        self.g_avg = torch.zeros_like(self.prox_center)
        self.x_avg = torch.zeros_like(self.prox_center)

    @classmethod
    def starting_from(cls, step_size: torch.Tensor, target: float) -> DualAveraging:
        """Restart the adaptation around ``step_size`` (Stan's choice of ``mu``)."""
        return cls(torch.log(10 * step_size), target)

    def update(self, accept_prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Fold in one iteration's mean acceptance probability for the chains in ``mask``.

        Returns
        -------
        Tensor, shape (chains,)
            The step size to use next; meaningful for the chains in ``mask`` only.
        """
        t = torch.where(mask, self.t + 1, self.t)
        g_avg = (1 - 1 / (t + self.t0)) * self.g_avg + (self.target - accept_prob) / (t + self.t0)
        x = self.prox_center - t.sqrt() / self.gamma * g_avg
        weight = t.clamp(min=1).pow(-self.kappa)
        x_avg = (1 - weight) * self.x_avg + weight * x
        self.t = t
        self.g_avg = torch.where(mask, g_avg, self.g_avg)
        self.x_avg = torch.where(mask, x_avg, self.x_avg)
        return x.exp()

    def final_step_size(self) -> torch.Tensor:
        """The averaged step size ``exp(x_avg)`` used after warm-up."""
        return self.x_avg.exp()


class RunningCovariance:
    """Per-chain Welford estimate of the draws' variances (diagonal) or covariance (dense).

    :meth:`inverse_mass` regularizes it towards 1e-3 (times the identity) as Stan does.
    """

    def __init__(self, like: torch.Tensor, dense: bool) -> None:
        self.dense = dense
        self.count = torch.zeros(like.shape[0], dtype=like.dtype, device=like.device)
        self.mean = torch.zeros_like(like)
        self.m2 = like.new_zeros(*like.shape, like.shape[-1]) if dense else torch.zeros_like(like)

    def update(self, z: torch.Tensor, mask: torch.Tensor) -> None:
        """Add ``z`` (shape (chains, dim)) for the chains in ``mask``."""
        count = torch.where(mask, self.count + 1, self.count)
        delta = z - self.mean
        mean = self.mean + delta / count.clamp(min=1)[:, None]
        after = z - mean
        step = delta[:, :, None] * after[:, None, :] if self.dense else delta * after
        keep = mask[:, None, None] if self.dense else mask[:, None]
        self.count = count
        self.mean = torch.where(mask[:, None], mean, self.mean)
        self.m2 = torch.where(keep, self.m2 + step, self.m2)

    def inverse_mass(self) -> torch.Tensor:
        """``n / (n + 5) * cov + 1e-3 * 5 / (n + 5)`` (times the identity), shape (chains, dim[, dim])."""
        n = self.count[:, None, None] if self.dense else self.count[:, None]
        covariance = self.m2 / (n - 1).clamp(min=1)
        shrink = 1e-3 * 5 / (n + 5)
        if self.dense:
            eye = torch.eye(covariance.shape[-1], dtype=covariance.dtype, device=covariance.device)
            symmetric = 0.5 * (covariance + covariance.transpose(-1, -2))  # exact, despite rounding
            return n / (n + 5) * symmetric + shrink * eye
        return n / (n + 5) * covariance + shrink


__all__ = ["DualAveraging", "RunningCovariance", "warmup_stages"]
