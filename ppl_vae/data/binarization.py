"""Binarization: binary data drawn from intensities, and the fixed evaluation copy of a test set.

A Bernoulli likelihood is a distribution over 0/1 values; training with
``dynamic`` binarization draws fresh binary data from the intensities every
epoch, ``static`` draws once, ``none`` keeps the intensities. Evaluation always
uses one seeded draw, :func:`evaluation_data`, so every epoch and
``ppl-vae evaluate`` see the same binary test set.
"""

from __future__ import annotations

import torch

from ppl_vae.errors import ConfigError, DataError

BINARIZE_MODES: tuple[str, ...] = ("none", "static", "dynamic")


def check_binarize_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`BINARIZE_MODES`.

    Raises
    ------
    ConfigError
        For any other value (a setting, like ``SVIConfig``'s other choices).
    """
    if not isinstance(mode, str) or mode not in BINARIZE_MODES:
        raise ConfigError(
            f"unknown binarize mode {mode!r}; choose one of {', '.join(BINARIZE_MODES)} "
            "(--binarize)"
        )
    return mode


def evaluation_data(x: torch.Tensor, mode: str, seed: int) -> torch.Tensor:
    """The fixed evaluation copy of ``x``: one seeded binary draw unless ``mode == "none"``.

    Training with ``static`` or ``dynamic`` binarization is evaluated on this
    copy, so every epoch and ``ppl-vae evaluate`` see the same binary test set.
    """
    if check_binarize_mode(mode) == "none":
        return x
    generator = torch.Generator(device=x.device).manual_seed(seed + 1)
    return binarize(x, generator=generator)


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw binary data, each value 1 with probability ``x``.

    Parameters
    ----------
    x : Tensor, any shape
        Probabilities in [0, 1], e.g. pixel intensities.
    generator : torch.Generator, optional
        Source of randomness, on the device of ``x``; the global one if None.

    Returns
    -------
    Tensor, the shape, dtype and device of ``x``
        Zeros and ones.

    Raises
    ------
    DataError
        If ``x`` is not floating point, or holds values outside [0, 1] or NaN.
    """
    if not x.is_floating_point():
        raise DataError(
            f"binarize needs floating point intensities in [0, 1]; got {x.dtype}. "
            "Scale 8-bit pixels with x.float() / 255"
        )
    outside = ~((x >= 0) & (x <= 1))
    if bool(outside.any()):
        raise DataError(
            f"binarization needs intensities in [0, 1]; {int(outside.sum())} values lie outside "
            "or are NaN. Rescale the data to [0, 1], or use --likelihood gaussian with "
            "--binarize none"
        )
    return bernoulli_draw(x, generator)


#: dtypes whose CPU draws ``uniform < p`` repeat ``torch.bernoulli`` exactly: both map one
#: 32-bit (float32) or 64-bit (float64) word of the generator to [0, 1) the same way.
_SAME_DRAW_DTYPES = (torch.float32, torch.float64)


def bernoulli_draw(p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch.bernoulli(p)``, unchecked: the same values and the same use of the generator.

    On the CPU, for contiguous float32 and float64 tensors (drawn in memory
    order, as ``torch.bernoulli`` draws them), the draw is ``uniform < p``
    (``tests/data/test_loaders.py`` checks the values and the generator's state
    after, bit for bit): the same uniforms in the same order, in less time
    than ``torch.bernoulli`` takes there, which dynamic binarization pays
    every epoch (the documentation's speed page has the measurement).
    Elsewhere, ``torch.bernoulli``.

    Parameters
    ----------
    p : Tensor, any shape
        Probabilities in [0, 1] (not checked: see :func:`binarize`).
    generator : torch.Generator, optional
        On the device of ``p``; the global one if None.

    Returns
    -------
    Tensor, the shape, dtype and device of ``p``
    """
    if p.device.type != "cpu" or p.dtype not in _SAME_DRAW_DTYPES or not p.is_contiguous():
        return torch.bernoulli(p, generator=generator)
    uniform = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)
    return torch.lt(uniform, p, out=uniform)


__all__ = ["BINARIZE_MODES", "bernoulli_draw", "binarize", "check_binarize_mode", "evaluation_data"]
