"""MCMC diagnostics with ArviZ: the only module of ppl_vae that imports it.

Draws of the latent posterior become an ``InferenceData`` with dims
``(chain, draw, point, latent)``, built with ``az.from_dict`` (ArviZ 1.x drops
``from_pyro`` and moves to DataTree; a change there touches this file only).
:func:`check_convergence` turns rank-normalized split R-hat, bulk and tail
effective sample sizes and divergences into a per-point verdict.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ppl_vae.checkpoint import atomic_write  # noqa: E402
from ppl_vae.errors import DataError  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az  # noqa: E402

#: Largest acceptable rank-normalized split R-hat (Vehtari et al., 2021).
R_HAT_MAX = 1.01
#: Smallest acceptable bulk and tail ESS, per chain (Vehtari et al., 2021 ask for 100 per chain).
MIN_ESS_PER_CHAIN = 100

_STAT_DIMS = ("chain", "draw", "point")


def _numpy(values: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def to_inference_data(samples: torch.Tensor | np.ndarray,
                      sample_stats: Mapping[str, torch.Tensor | np.ndarray] | None = None,
                      point_index: Sequence[int] | None = None) -> az.InferenceData:
    """Posterior draws of ``"z"`` as ArviZ ``InferenceData``.

    Parameters
    ----------
    samples : Tensor or ndarray, shape (chain, draw, point, latent)
    sample_stats : dict of arrays, each shape (chain, draw, point), optional
        E.g. ``diverging``, ``tree_depth``, ``step_size``, ``acceptance_rate``.
    point_index : sequence of int, optional
        Coordinate labels of the points (default 0, 1, ...).

    Returns
    -------
    arviz.InferenceData
        ``posterior.z`` with dims (chain, draw, point, latent) and
        ``sample_stats`` with dims (chain, draw, point).
    """
    draws = _numpy(samples)
    if draws.ndim != 4:
        raise DataError(f"samples must have shape (chain, draw, point, latent); got {draws.shape}")
    if draws.shape[1] < 4:
        raise DataError(f"need at least 4 draws per chain for diagnostics; got {draws.shape[1]}")
    if not np.isfinite(draws).all():
        raise DataError("the samples hold NaN or infinite values; the sampler diverged")
    chains, num_draws, points, latents = draws.shape
    index = list(point_index) if point_index is not None else list(range(points))
    if len(index) != points:
        raise DataError(f"point_index has {len(index)} labels for {points} points")
    stats = {}
    for name, value in (sample_stats or {}).items():
        array = _numpy(value)
        if array.shape != (chains, num_draws, points):
            raise DataError(f"sample stat {name!r} has shape {array.shape}; expected "
                            f"(chain, draw, point) = {(chains, num_draws, points)}")
        stats[name] = array
    return az.from_dict(
        posterior={"z": draws},
        sample_stats=stats or None,
        coords={"point": index, "latent": list(range(latents))},
        dims={"z": ["point", "latent"], **{name: ["point"] for name in stats}},
    )


@dataclass(frozen=True)
class ConvergenceReport:
    """Per-point convergence verdict of an MCMC run.

    Attributes
    ----------
    r_hat, ess_bulk, ess_tail : ndarray, shape (point, latent)
    divergences : ndarray of int, shape (point,)
    num_chains, num_draws : int
    point_index : list of int
    flagged : ndarray of bool, shape (point,)
        R-hat above :data:`R_HAT_MAX`, an ESS below :data:`MIN_ESS_PER_CHAIN`
        per chain, or any divergence.
    reasons : list of str
        One line per flagged point.
    """

    r_hat: np.ndarray
    ess_bulk: np.ndarray
    ess_tail: np.ndarray
    divergences: np.ndarray
    num_chains: int
    num_draws: int
    point_index: list[int]
    flagged: np.ndarray
    reasons: list[str]

    @property
    def converged(self) -> bool:
        return not bool(self.flagged.any())

    def table(self) -> str:
        """One line per point: worst R-hat, smallest ESS, divergences, and a flag."""
        lines = [f"{'point':>7}{'max R-hat':>11}{'min bulk ESS':>14}{'min tail ESS':>14}"
                 f"{'divergences':>13}  flag"]
        for k, point in enumerate(self.point_index):
            lines.append(f"{point:>7}{np.nanmax(self.r_hat[k]):>11.4f}{self.ess_bulk[k].min():>14.0f}"
                         f"{self.ess_tail[k].min():>14.0f}{int(self.divergences[k]):>13}  "
                         f"{'FLAGGED' if self.flagged[k] else 'ok'}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "converged": self.converged,
            "num_chains": self.num_chains,
            "num_draws": self.num_draws,
            "point_index": list(self.point_index),
            "max_r_hat": float(np.nanmax(self.r_hat)) if np.isfinite(self.r_hat).any() else None,
            "min_ess_bulk": float(self.ess_bulk.min()),
            "min_ess_tail": float(self.ess_tail.min()),
            "divergences": int(self.divergences.sum()),
            "flagged_points": [p for p, f in zip(self.point_index, self.flagged) if f],
            "reasons": list(self.reasons),
        }


def check_convergence(idata: az.InferenceData) -> ConvergenceReport:
    """R-hat, bulk and tail ESS per point and coordinate, and the points that fail them.

    Parameters
    ----------
    idata : arviz.InferenceData
        From :func:`to_inference_data`.

    Returns
    -------
    ConvergenceReport
    """
    posterior = idata.posterior["z"]
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant draws give NaN R-hat: flagged below
        r_hat = az.rhat(idata, var_names=["z"])["z"].transpose("point", "latent").values
        ess_bulk = az.ess(idata, var_names=["z"], method="bulk")["z"].transpose("point", "latent").values
        ess_tail = az.ess(idata, var_names=["z"], method="tail")["z"].transpose("point", "latent").values
    points = list(posterior.coords["point"].values.tolist())
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        divergences = idata.sample_stats["diverging"].sum(("chain", "draw")).values.astype(int)
    else:
        divergences = np.zeros(len(points), dtype=int)
    min_ess = MIN_ESS_PER_CHAIN * chains
    flagged = np.zeros(len(points), dtype=bool)
    reasons = []
    for k, point in enumerate(points):
        problems = []
        worst = np.nan_to_num(r_hat[k], nan=np.inf)
        if worst.max() > R_HAT_MAX:
            problems.append(f"R-hat {worst.max():.3f} > {R_HAT_MAX} (latent {int(worst.argmax())})")
        for label, ess in (("bulk", ess_bulk[k]), ("tail", ess_tail[k])):
            low = np.nan_to_num(ess, nan=0.0)
            if low.min() < min_ess:
                problems.append(f"{label} ESS {low.min():.0f} < {min_ess}")
        if divergences[k] > 0:
            problems.append(f"{divergences[k]} divergent transitions")
        if problems:
            flagged[k] = True
            reasons.append(f"point {point}: " + "; ".join(problems))
    return ConvergenceReport(r_hat, ess_bulk, ess_tail, divergences, chains, draws, points,
                             flagged, reasons)


def _save(figure: plt.Figure, path: str | os.PathLike) -> None:
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
    plt.close(figure)


def plot_trace(idata: az.InferenceData, path: str | os.PathLike,
               points: Sequence[int] | None = None, max_points: int = 4) -> None:
    """Trace and rank plots of the first points' latent coordinates, saved as PNG.

    Parameters
    ----------
    idata : arviz.InferenceData
    path : path-like
    points : sequence of int, optional
        Point labels to show (default the first ``max_points``).
    max_points : int
    """
    labels = list(idata.posterior.coords["point"].values.tolist())
    chosen = list(points) if points is not None else labels[:max_points]
    axes = az.plot_trace(idata, var_names=["z"], coords={"point": chosen[:max_points]},
                         kind="rank_bars", compact=False, show=False)
    figure = np.atleast_2d(axes)[0, 0].figure
    figure.suptitle("NUTS chains: draws (left) and rank histograms per chain (right)")
    figure.tight_layout()
    _save(figure, path)


def plot_pair(idata: az.InferenceData, path: str | os.PathLike, point: int,
              latents: Sequence[int] = (0, 1)) -> None:
    """Pair plot of one point's latent coordinates, all chains, saved as PNG."""
    axes = az.plot_pair(idata, var_names=["z"],
                        coords={"point": [point], "latent": list(latents)},
                        kind="kde", marginals=True, show=False)
    figure = np.atleast_2d(axes)[0, 0].figure
    figure.suptitle(f"posterior p(z | x) of point {point} (NUTS)")
    _save(figure, path)
