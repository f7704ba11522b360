"""Figures the command line writes: grids of images."""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ppl_vae.checkpoint import atomic_write  # noqa: E402
from ppl_vae.errors import DataError  # noqa: E402


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
