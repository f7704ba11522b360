"""Corrupted copies of flat images, to test anomaly detection on (:mod:`ppl_vae.evaluation.anomaly`).

:func:`flip_pixels` flips a share of the pixels, :func:`paste_patch` pastes a
square, :func:`shift_images` moves the images and :func:`mirror_images`
mirrors them left to right. Every function takes images flattened row by row,
shape (batch, height * width), and follows their device and dtype.
"""

from __future__ import annotations

import torch

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.validation import check_positive_int


def _check_images(x: torch.Tensor, image_shape: tuple[int, int], where: str) -> tuple[int, int]:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise DataError(f"{where} needs flat images of shape (batch, height * width); got "
                        f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if len(image_shape) != 2:
        raise ConfigError(f"{where}: image_shape must be (height, width); got {image_shape!r}")
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


__all__ = ["flip_pixels", "mirror_images", "paste_patch", "shift_images"]
