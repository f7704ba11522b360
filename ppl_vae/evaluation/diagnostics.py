"""MCMC diagnostics with ArviZ: the only module of ppl_vae that imports it.

Draws of the latent posterior become an ``InferenceData`` with dims
``(chain, draw, point, latent)``, built with ``az.from_dict`` (ArviZ 1.x drops
``from_pyro`` and moves to DataTree; a change there touches this file only).
:func:`check_convergence` turns rank-normalized split R-hat, bulk and tail
effective sample sizes and divergences into a per-point verdict.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.storage import atomic_write

if TYPE_CHECKING:
    import arviz as az

#: Largest acceptable rank-normalized split R-hat (Vehtari et al., 2021, Bayesian Analysis 16(2)).
R_HAT_MAX = 1.01
#: Smallest acceptable bulk and tail ESS per chain: Vehtari et al. (2021) ask for
#: 100 per chain so that R-hat and the Monte Carlo standard errors are themselves reliable.
MIN_ESS_PER_CHAIN = 100
#: Fewest draws per chain that rank-normalized R-hat and ESS accept.
MIN_DRAWS = 4


def _arviz() -> Any:
    """ArviZ, imported on first use: ``import ppl_vae`` stays light and changes no global state."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ announces its 1.x refactor on import
        import arviz

    return arviz


#: dtype of each sample statistic that :func:`to_inference_data` knows; others pass through.
STAT_DTYPES = {
    "diverging": np.bool_,
    "tree_depth": np.int64,
    "num_steps": np.int64,
    "step_size": np.float64,
    "acceptance_rate": np.float64,
}


def _numpy(values: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _stat_array(name: str, value: torch.Tensor | np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """One sample statistic, checked for shape (chain, draw, point) and cast to its known dtype."""
    array = _numpy(value)
    if array.shape != shape:
        raise DataError(f"sample stat {name!r} has shape {array.shape}; expected (chain, draw, point) = "
                        f"{shape}. Broadcast a joint run's statistic over the points first")
    dtype = STAT_DTYPES.get(name)
    if dtype is None:
        return array
    cast = array.astype(dtype)
    if not np.array_equal(cast, array):
        raise DataError(f"sample stat {name!r} does not fit dtype {np.dtype(dtype).name}; "
                        f"pass {'0/1 or booleans' if dtype is np.bool_ else 'whole numbers'}")
    return cast


def latent_dim_name(site: str) -> str:
    """Name of the dimension that indexes a site's values within a point (``"latent"`` for ``"z"``)."""
    return "latent" if site == "z" else f"{site}_latent"


def _from_arrays(draws: np.ndarray | Mapping[str, np.ndarray], stats: Mapping[str, np.ndarray],
                 index: list[int]) -> az.InferenceData:
    sites = dict(draws) if isinstance(draws, Mapping) else {"z": draws}
    return _arviz().from_dict(
        posterior=sites,
        sample_stats=dict(stats) or None,
        coords={"point": index,
                **{latent_dim_name(name): list(range(value.shape[3])) for name, value in sites.items()}},
        dims={**{name: ["point", latent_dim_name(name)] for name in sites},
              **{name: ["point"] for name in stats}},
    )


def to_inference_data(samples: torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray],
                      sample_stats: Mapping[str, torch.Tensor | np.ndarray] | None = None,
                      point_index: Sequence[int] | None = None) -> az.InferenceData:
    """Posterior draws of the latent sites as ArviZ ``InferenceData``, one variable per site.

    Parameters
    ----------
    samples : Tensor or ndarray, shape (chain, draw, point, latent), or dict of them
        Finite draws of ``"z"``, or of each named site (shape (chain, draw,
        point) + event_shape; the event dimensions are flattened into one
        dimension named ``"<site>_latent"``); at least one chain of :data:`MIN_DRAWS` draws.
    sample_stats : dict of Tensor or ndarray, each shape (chain, draw, point), optional
        Known keys are cast to their :data:`STAT_DTYPES` (``diverging`` bool,
        ``tree_depth`` and ``num_steps`` int, ``step_size`` and
        ``acceptance_rate`` float); other keys pass through unchanged.
    point_index : sequence of int, optional
        Coordinate labels of the points (default 0, 1, ..., point - 1).

    Returns
    -------
    arviz.InferenceData
        ``posterior.z`` with dims (chain, draw, point, latent) (one variable
        per site for a dict) and, when stats are given, ``sample_stats`` with
        dims (chain, draw, point).

    Raises
    ------
    DataError
        Wrong number of dimensions, too few chains or draws, non-finite draws,
        a statistic of the wrong shape or type, or a wrong number of point labels.
    """
    if isinstance(samples, Mapping):
        sites = {name: _numpy(value) for name, value in samples.items()}
        if not sites or any(value.ndim < 3 for value in sites.values()):
            raise DataError("samples must map each site to draws of shape (chain, draw, point, ...)")
        sites = {name: value.reshape(*value.shape[:3], -1) for name, value in sites.items()}
        shapes = {value.shape[:3] for value in sites.values()}
        if len(shapes) != 1:
            raise DataError(f"the sites' draws disagree in (chain, draw, point): {sorted(shapes)}")
        stats = _checked(sample_stats, next(iter(shapes)), point_index,
                               np.concatenate(list(sites.values()), -1))
        return _from_arrays(sites, *stats)
    draws = _numpy(samples)
    if draws.ndim != 4:
        raise DataError(f"samples must have shape (chain, draw, point, latent); got {draws.shape}. "
                        "Add a chain axis of length 1 for a single chain")
    return _from_arrays(draws, *_checked(sample_stats, draws.shape[:3], point_index, draws))


def _checked(sample_stats: Mapping[str, torch.Tensor | np.ndarray] | None,
                   shape: tuple[int, ...], point_index: Sequence[int] | None,
                   draws: np.ndarray) -> tuple[dict[str, np.ndarray], list[int]]:
    chains, num_draws, points = shape
    if chains < 1 or num_draws < MIN_DRAWS:
        raise DataError(f"need at least 1 chain of {MIN_DRAWS} draws for diagnostics; got {chains} "
                        f"chains of {num_draws} draws. Run more samples")
    if not np.isfinite(draws).all():
        raise DataError("the samples hold NaN or infinite values; check the model's log density "
                        "and the sampler's step size")
    index = list(range(points)) if point_index is None else [int(label) for label in point_index]
    if len(index) != points:
        raise DataError(f"point_index has {len(index)} labels for {points} points; pass one label per point")
    stats = {name: _stat_array(name, value, (chains, num_draws, points))
             for name, value in (sample_stats or {}).items()}
    return stats, index


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


@dataclass(frozen=True)
class ConvergenceReport:
    """Per-point convergence verdict of an MCMC run.

    Attributes
    ----------
    r_hat, ess_bulk, ess_tail : ndarray, shape (point, latent)
        Rank-normalized split R-hat, bulk and tail effective sample sizes.
    divergences : ndarray of int, shape (point,)
        Divergent transitions per point; 0 without ``diverging`` stats.
    num_chains, num_draws : int
    flagged : ndarray of bool, shape (point,)
        R-hat above :data:`R_HAT_MAX` or NaN, an ESS below
        :data:`MIN_ESS_PER_CHAIN` per chain, or any divergence.
    reasons : list of str
        One line per flagged point.
    point_index : list of int
        Coordinate label of each point.
    """

    r_hat: np.ndarray
    ess_bulk: np.ndarray
    ess_tail: np.ndarray
    divergences: np.ndarray
    num_chains: int
    num_draws: int
    flagged: np.ndarray
    reasons: list[str]
    point_index: list[int]

    @property
    def converged(self) -> bool:
        """Whether no point is flagged."""
        return not bool(self.flagged.any())

    def _rows(self) -> list[dict[str, Any]]:
        return [{
            "point": point,
            "max_r_hat": _finite_or_none(self.r_hat[k].max()),
            "min_ess_bulk": _finite_or_none(self.ess_bulk[k].min()),
            "min_ess_tail": _finite_or_none(self.ess_tail[k].min()),
            "divergences": int(self.divergences[k]),
            "flagged": bool(self.flagged[k]),
        } for k, point in enumerate(self.point_index)]

    def table(self) -> str:
        """One line per point: worst R-hat, smallest ESS, divergences, and a flag (NaN shown as ``nan``)."""
        def number(value: float | None, spec: str) -> str:
            return "nan" if value is None else format(value, spec)

        lines = [f"{'point':>7}{'max R-hat':>11}{'min bulk ESS':>14}{'min tail ESS':>14}"
                 f"{'divergences':>13}  flag"]
        lines.extend(f"{row['point']:>7}{number(row['max_r_hat'], '.4f'):>11}"
                     f"{number(row['min_ess_bulk'], '.0f'):>14}{number(row['min_ess_tail'], '.0f'):>14}"
                     f"{row['divergences']:>13}  {'FLAGGED' if row['flagged'] else 'ok'}"
                     for row in self._rows())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able summary: overall verdict, thresholds and one record per point (NaN as None)."""
        return {
            "converged": self.converged,
            "num_chains": self.num_chains,
            "num_draws": self.num_draws,
            "r_hat_max": R_HAT_MAX,
            "min_ess": MIN_ESS_PER_CHAIN * self.num_chains,
            "max_r_hat": _finite_or_none(self.r_hat.max()),
            "min_ess_bulk": _finite_or_none(self.ess_bulk.min()),
            "min_ess_tail": _finite_or_none(self.ess_tail.min()),
            "divergences": int(self.divergences.sum()),
            "flagged_points": [p for p, f in zip(self.point_index, self.flagged) if f],
            "reasons": list(self.reasons),
            "points": self._rows(),
        }


def _sites(idata: az.InferenceData) -> list[str]:
    return list(idata.posterior.data_vars)


def _coordinate_labels(idata: az.InferenceData) -> list[str]:
    """A label per latent coordinate, in the column order of :func:`_diagnostic`."""
    return [f"latent {i}" if site == "z" else f"{site}[{i}]" for site in _sites(idata)
            for i in range(idata.posterior[site].sizes[latent_dim_name(site)])]


def _diagnostic(idata: az.InferenceData, statistic: Any, **kwargs: Any) -> np.ndarray:
    """An ArviZ diagnostic of every latent site, as an array of shape (point, latent coordinates)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant draws give NaN, which is flagged
        result = statistic(idata, var_names=_sites(idata), **kwargs)
    return np.concatenate([result[site].transpose("point", latent_dim_name(site)).values
                           for site in _sites(idata)], axis=1)


def _split_r_hat(idata: az.InferenceData) -> np.ndarray:
    """Rank-normalized split R-hat, shape (point, latent coordinates), also for a single chain.

    ArviZ returns NaN for one chain, so its first and last halves are passed
    as two chains; ArviZ splits those again, which makes this R-hat over
    quarters of the chain: stricter, never looser, than a plain split.
    """
    if idata.posterior.sizes["chain"] > 1:
        return _diagnostic(idata, _arviz().rhat)
    halves = {}
    for site in _sites(idata):
        draws = idata.posterior[site].transpose("chain", "draw", "point", latent_dim_name(site)).values
        half = draws.shape[1] // 2
        halves[site] = np.concatenate([draws[:, :half], draws[:, -half:]], axis=0)
    points = idata.posterior.coords["point"].values.tolist()
    return _diagnostic(_from_arrays(halves, {}, points), _arviz().rhat)


def _problems(r_hat: np.ndarray, ess_bulk: np.ndarray, ess_tail: np.ndarray, divergences: int,
              min_ess: int, labels: list[str]) -> list[str]:
    """Why one point fails, from its diagnostics of shape (latent,); empty when it passes."""
    problems = []
    if np.isnan(r_hat).any():
        problems.append(f"R-hat is NaN ({labels[int(np.isnan(r_hat).argmax())]}; constant draws?)")
    elif r_hat.max() > R_HAT_MAX:
        problems.append(f"R-hat {r_hat.max():.3f} > {R_HAT_MAX} ({labels[int(r_hat.argmax())]})")
    for label, ess in (("bulk", ess_bulk), ("tail", ess_tail)):
        low = np.nan_to_num(ess, nan=0.0)
        if low.min() < min_ess:
            problems.append(f"{label} ESS {low.min():.0f} < {min_ess} ({labels[int(low.argmin())]})")
    if divergences > 0:
        problems.append(f"{divergences} divergent transitions")
    return problems


def check_convergence(idata: az.InferenceData) -> ConvergenceReport:
    """R-hat, bulk and tail ESS per point and coordinate, and the points that fail them.

    Parameters
    ----------
    idata : arviz.InferenceData
        From :func:`to_inference_data`: ``posterior.z`` with dims
        (chain, draw, point, latent), optionally ``sample_stats.diverging``
        with dims (chain, draw, point).

    Returns
    -------
    ConvergenceReport
        A point is flagged when its largest R-hat exceeds :data:`R_HAT_MAX`
        (or is NaN), its smallest bulk or tail ESS is below
        ``MIN_ESS_PER_CHAIN * num_chains``, or it has a divergence.
    """
    if "posterior" not in idata.groups() or not _sites(idata):
        raise DataError("idata has no posterior variables; build it with to_inference_data")
    posterior = idata.posterior
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    points = posterior.coords["point"].values.tolist()
    r_hat = _split_r_hat(idata)
    ess_bulk = _diagnostic(idata, _arviz().ess, method="bulk")
    ess_tail = _diagnostic(idata, _arviz().ess, method="tail")
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        divergences = idata.sample_stats["diverging"].sum(("chain", "draw")).values.astype(int)
    else:
        divergences = np.zeros(len(points), dtype=int)
    min_ess = MIN_ESS_PER_CHAIN * chains
    labels = _coordinate_labels(idata)
    problems = [_problems(r_hat[k], ess_bulk[k], ess_tail[k], int(divergences[k]), min_ess, labels)
                for k in range(len(points))]
    flagged = np.array([bool(p) for p in problems], dtype=bool)
    reasons = [f"point {point}: " + "; ".join(p) for point, p in zip(points, problems) if p]
    return ConvergenceReport(r_hat, ess_bulk, ess_tail, divergences, chains, draws, flagged, reasons,
                             points)


def _save(figure: plt.Figure, path: str | os.PathLike) -> None:
    try:
        atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
    finally:
        plt.close(figure)


def _site(idata: az.InferenceData, site: str | None) -> str:
    sites = _sites(idata)
    if site is None:
        return sites[0]
    if site not in sites:
        raise DataError(f"site {site!r} is not in the posterior; choose from {sites}")
    return site


def _check_points(idata: az.InferenceData, points: Sequence[int]) -> list[int]:
    labels = idata.posterior.coords["point"].values.tolist()
    unknown = [p for p in points if p not in labels]
    if unknown:
        raise DataError(f"points {unknown} are not in the posterior; choose from {labels}")
    return list(dict.fromkeys(points))  # each point once, in the order given


def plot_trace(idata: az.InferenceData, path: str | os.PathLike,
               points: Sequence[int] | None = None, max_points: int = 4, site: str | None = None) -> None:
    """Per-chain densities (left) and rank histograms (right) of some points' latents, saved as PNG.

    Well-mixed chains have overlapping densities and flat rank histograms
    (Vehtari et al., 2021).

    Parameters
    ----------
    idata : arviz.InferenceData
        From :func:`to_inference_data`.
    path : path-like
        PNG file to write; its folder must exist.
    points : sequence of int, optional
        Point labels to show (default the first ones); only the first
        ``max_points`` are drawn, one row per (point, latent).
    max_points : int
        At most this many points, to keep the figure legible.
    site : str, optional
        The latent site to show (default the first).
    """
    if max_points < 1:
        raise ConfigError(f"max_points must be at least 1; got {max_points}")
    site = _site(idata, site)
    labels = idata.posterior.coords["point"].values.tolist()
    chosen = _check_points(idata, labels if points is None else points)[:max_points]
    latents = idata.posterior[site].coords[latent_dim_name(site)].values.tolist()
    axes = _arviz().plot_trace(idata, var_names=[site], coords={"point": chosen}, kind="rank_bars",
                               compact=False, show=False)
    axes = np.atleast_2d(axes)
    for (density, rank), (point, latent) in zip(axes, itertools.product(chosen, latents)):
        density.set_title(f"point {point}, latent {latent}: density per chain")
        density.set_xlabel(f"{site}[{latent}]")
        density.set_ylabel("density")
        rank.set_title(f"point {point}, latent {latent}: rank histogram per chain")
        rank.set_xlabel("rank among all chains' draws", fontsize="medium")
        rank.set_ylabel("chain", fontsize="medium")
    figure = axes[0, 0].figure
    figure.suptitle(f"NUTS chains of points {', '.join(map(str, chosen))}")
    figure.tight_layout()
    _save(figure, path)


def plot_pair(idata: az.InferenceData, path: str | os.PathLike, point: int,
              latents: Sequence[int] = (0, 1), site: str | None = None) -> None:
    """Pair plot (KDE with marginals) of one point's latent coordinates, all chains, saved as PNG.

    Parameters
    ----------
    idata : arviz.InferenceData
        From :func:`to_inference_data`.
    path : path-like
        PNG file to write; its folder must exist.
    point : int
        Label of the point.
    latents : sequence of int
        At least two distinct latent coordinates to plot against each other.
    site : str, optional
        The latent site to show (default the first).
    """
    _check_points(idata, [point])
    site = _site(idata, site)
    dim = latent_dim_name(site)
    available = idata.posterior[site].coords[dim].values.tolist()
    latents = list(latents)
    if len(set(latents)) < 2 or any(latent not in available for latent in latents):
        raise DataError(f"latents must name at least two distinct coordinates out of {available}; "
                        f"got {latents}")
    pair = _arviz().plot_pair(idata, var_names=[site], coords={"point": [point], dim: latents},
                              kind="kde", marginals=True, show=False)
    axes = np.atleast_2d(pair)
    for k, latent in enumerate(latents):
        axes[-1, k].set_xlabel(f"{site}[{latent}]")
        if k > 0:
            axes[k, 0].set_ylabel(f"{site}[{latent}]")
    axes[0, 0].set_ylabel("density")
    if len(latents) == 2:
        axes[-1, -1].set_xlabel("density")  # ArviZ turns the last marginal sideways for a single pair
    figure = axes[-1, 0].figure
    figure.suptitle(f"posterior p(z | x) of point {point} (NUTS, all chains)")
    _save(figure, path)
