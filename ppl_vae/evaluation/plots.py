"""Figures the command line writes: grids of images."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import torch

from ppl_vae.errors import DataError
from ppl_vae.storage import atomic_write

if TYPE_CHECKING:
    from ppl_vae.evaluation.compare import Comparison
    from ppl_vae.models.base import ProbabilisticModel


def image_grid(images: torch.Tensor, image_shape: tuple[int, int], num_columns: int | None = None,
               padding: int = 2) -> np.ndarray:
    """Tile flat images into one array, with ``padding`` blank pixels between tiles.

    Parameters
    ----------
    images : Tensor, shape (num_images, H * W)
    image_shape : (int, int)
        Height and width of one image.
    num_columns : int, optional
        Tiles per row; by default about the square root of ``num_images``.

    Returns
    -------
    ndarray, shape (rows * (H + padding) - padding, columns * (W + padding) - padding)
    """
    height, width = image_shape
    if images.dim() != 2 or images.shape[1] != height * width:
        raise DataError(
            f"cannot tile images of shape {tuple(images.shape)} as {height}x{width} pictures"
        )
    count = images.shape[0]
    columns = num_columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.zeros((rows * (height + padding) - padding, columns * (width + padding) - padding))
    pictures = images.detach().float().cpu().numpy().reshape(count, height, width)
    for i, picture in enumerate(pictures):
        top, left = (i // columns) * (height + padding), (i % columns) * (width + padding)
        grid[top:top + height, left:left + width] = picture
    return grid


def save_image_grid(images: torch.Tensor, image_shape: tuple[int, int], path: str | os.PathLike,
                    title: str | None = None, num_columns: int | None = None) -> None:
    """Save flat images as a tiled grey-scale PNG (written atomically).

    Parameters
    ----------
    images : Tensor, shape (num_images, H * W)
        Values in [0, 1] are shown black to white.
    image_shape : (int, int)
    path : path-like
        Output ``.png`` file.
    title : str, optional
    """
    grid = image_grid(images, image_shape, num_columns)
    figure, axes = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.4))
    axes.imshow(grid, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    axes.set_axis_off()
    if title:
        axes.set_title(title)
    figure.tight_layout()
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=120))
    plt.close(figure)


def plot_posterior_comparison(comparison: "Comparison", model: "ProbabilisticModel",
                              x: torch.Tensor, image_shape: tuple[int, int] | None, path: str | os.PathLike,
                              num_points: int = 6, latents: tuple[int, int] = (0, 1)) -> None:
    """NUTS draws of p(z | x) with each variational posterior drawn over them, one panel per point.

    Each panel shows the NUTS samples as grey dots and, for two latent
    coordinates, the 1- and 2-sigma ellipses of the encoder's q(z | x) and of
    q*, and the flow's samples as a density contour; an inset shows the image.
    Each panel's title gives the point's log p^(x), its Monte Carlo error and
    the proposal it came from (FLAGGED, in red, where no proposal's weights
    are trustworthy); the figure's title counts the proposals and the flagged points.

    Parameters
    ----------
    comparison : Comparison
        The result of :func:`ppl_vae.evaluation.compare.compare_posteriors`.
    model : ProbabilisticModel
        The compared model (its encoder gives the amortized q).
    x : Tensor, shape (num_points, data_dim)
        The compared points (for the insets).
    image_shape : (int, int) or None
    path : path-like
        Output PNG.
    num_points : int
        Panels to draw (the first points).
    latents : (int, int)
        The two latent coordinates to show.
    """
    from ppl_vae.evaluation.compare import guide_samples

    i, j = latents
    count = min(num_points, len(comparison.point_index))
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.0 * rows), squeeze=False,
                                layout="constrained")
    draws = comparison.nuts.samples.flatten(0, 1)[:, :count].detach().cpu()
    styles = {"encoder": ("tab:red", "encoder q(z|x)"), "local_gaussian": ("tab:blue", "q* (per point)"),
              "flow": ("tab:green", "flow q")}
    flow_draws = None
    if "flow" in comparison.posteriors:
        flow = comparison.posteriors["flow"]
        flow_draws = guide_samples(flow.guide, x, 2000).detach().cpu()
    with torch.no_grad():
        encoder_loc, encoder_scale = (t.cpu() for t in model.encode(x))
    for panel, axis in enumerate(axes.flat):
        if panel >= count:
            axis.set_axis_off()
            continue
        axis.scatter(draws[:, panel, i], draws[:, panel, j], s=2, color="0.6", alpha=0.35,
                     label="NUTS draws", rasterized=True)
        gaussians = {"encoder": (encoder_loc[panel], encoder_scale[panel])}
        if "local_gaussian" in comparison.posteriors:
            q = comparison.posteriors["local_gaussian"]
            gaussians["local_gaussian"] = (q.loc[panel].detach().cpu(), q.scale[panel].detach().cpu())
        for name, (loc, scale) in gaussians.items():
            color, label = styles[name]
            for k, width in ((1, 1.6), (2, 0.9)):
                angle = torch.linspace(0, 2 * math.pi, 100)
                axis.plot(loc[i] + k * scale[i] * angle.cos(), loc[j] + k * scale[j] * angle.sin(),
                          color=color, linewidth=width, label=label if k == 1 else None)
        if flow_draws is not None:
            _density_contour(axis, flow_draws[:, panel, i], flow_draws[:, panel, j],
                             styles["flow"][0])
            axis.plot([], [], color=styles["flow"][0], linestyle="dashed", label=styles["flow"][1])
        axis.set_xlabel(f"z[{i}]")
        axis.set_ylabel(f"z[{j}]")
        flagged = comparison.per_point["log_px_flagged"][panel]
        stderr = comparison.per_point["log_px_stderr"][panel]
        error = f"± {stderr:.3f}" if math.isfinite(stderr) else "(error unknown)"
        axis.set_title(f"test point {comparison.point_index[panel]}: log p̂(x) "
                       f"{comparison.per_point['log_px'][panel]:.2f} {error}\n"
                       f"from {comparison.per_point['log_px_method'][panel]}"
                       + (", FLAGGED (k̂ > 0.7)" if flagged else ""),
                       fontsize=9, color="tab:red" if flagged else "black")
        if image_shape is not None:
            inset = axis.inset_axes([0.76, 0.76, 0.22, 0.22])
            inset.imshow(x[panel].detach().cpu().reshape(image_shape), cmap="gray_r", vmin=0, vmax=1)
            inset.set_axis_off()
        if panel == 0:
            axis.legend(loc="lower left", fontsize=7, markerscale=4)
    title = "posterior p(z | x): NUTS draws against variational approximations (1 and 2 sd)"
    title += (f"\nlog p̂(x) from: {comparison.log_px_method}; flagged (k̂ > 0.7 for every proposal): "
              f"{len(comparison.flagged_points)} of {len(comparison.point_index)} points")
    if not comparison.converged:
        title += "\nWARNING: NUTS did not converge"
    figure.suptitle(title)
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=110))
    plt.close(figure)


def _density_contour(axis: "plt.Axes", xs: torch.Tensor, ys: torch.Tensor, color: str) -> None:
    """Contours of a smoothed 2-D histogram of samples, at the levels holding about 39% and 86%
    of the mass (the 1- and 2-sd ellipses of a Gaussian)."""
    counts, x_edges, y_edges = np.histogram2d(xs.numpy(), ys.numpy(), bins=30)
    padded = np.pad(counts.T, 1, mode="edge")
    counts = sum(padded[1 + di:padded.shape[0] - 1 + di, 1 + dj:padded.shape[1] - 1 + dj]
                 for di in (-1, 0, 1) for dj in (-1, 0, 1)) / 9.0  # 3x3 box smoothing
    ordered = np.sort(counts.ravel())[::-1]
    cumulative = np.cumsum(ordered) / ordered.sum()
    levels = sorted({float(ordered[np.searchsorted(cumulative, q)]) for q in (0.86, 0.39)})
    centres_x, centres_y = (x_edges[:-1] + x_edges[1:]) / 2, (y_edges[:-1] + y_edges[1:]) / 2
    if levels[-1] > 0:
        axis.contour(centres_x, centres_y, counts, levels=levels, colors=color, linewidths=1.0,
                     linestyles="dashed")
