"""Rendered glyphs whose generative factors are known: slant, thickness, scale and position.

Each image is one glyph (a handwritten-looking "7" or a plain bar) drawn as a
polyline of constant width with anti-aliased edges, grey levels in [0, 1].
Five independent factors place it:

=============  ==================  =================================================
factor         default range       meaning
=============  ==================  =================================================
``slant``      -30 to 30 degrees   rotation; positive leans the top to the right
``thickness``  1.5 to 3.5          stroke width
``scale``      0.75 to 1.25        size; the glyph is 10 units tall at scale 1
``x``          -3 to 3             shift of the glyph to the right of the centre
``y``          -3 to 3             shift downwards (rows grow downwards in an image)
=============  ==================  =================================================

Lengths are in pixels of a 28 x 28 image; a smaller ``image_size`` draws the
same picture at a lower resolution. Every corner of the factor box fits
inside the frame, so no glyph is ever cut off. Rendering is pure torch and
deterministic: the same factors give the same pixels on every call.

``load_dataset("strokes")`` wraps :func:`make_strokes` in a
:class:`ppl_vae.data.Dataset` whose ``train_factors`` and ``test_factors``
hold the factor values of every image.
"""

from __future__ import annotations

import torch

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.validation import check_int

FACTOR_NAMES: tuple[str, ...] = ("slant", "thickness", "scale", "x", "y")

#: Uniform ranges the factors are drawn from, ``(low, high)`` per factor.
FACTOR_RANGES: dict[str, tuple[float, float]] = {
    "slant": (-30.0, 30.0),
    "thickness": (1.5, 3.5),
    "scale": (0.75, 1.25),
    "x": (-3.0, 3.0),
    "y": (-3.0, 3.0),
}

#: Glyphs as polylines in unit coordinates (y up, height 2, centred near 0).
GLYPHS: dict[str, tuple[tuple[float, float], ...]] = {
    "seven": ((-0.55, 1.0), (0.55, 1.0), (-0.15, -1.0)),
    "bar": ((0.0, 1.0), (0.0, -1.0)),
}

_REFERENCE_SIZE = 28          # factor lengths are pixels of an image this wide
_HALF_HEIGHT = 5.0            # half the glyph's height at scale 1, reference pixels
# Below this size a glyph at the corners of FACTOR_RANGES touches the frame.
_MIN_IMAGE_SIZE = 14
_MAX_IMAGE_SIZE = 128
_CHUNK = 1024                 # images rendered at once, to bound the memory of one pass


def sample_factors(num_points: int, seed: int = 0, dtype: torch.dtype = torch.float64,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Draw factors independently and uniformly from :data:`FACTOR_RANGES`.

    Parameters
    ----------
    num_points : int
        Number of factor vectors, at least 1.
    seed : int
        Seed of a private ``torch.Generator``; the global RNG is not touched.
    dtype : torch.dtype
        Floating dtype of the result; the draw is made in float64 and cast, so
        it is the same draw in every dtype.
    device : torch.device or str, optional
        Device of the result (the draw is made on the CPU).

    Returns
    -------
    Tensor, shape (num_points, 5)
        Columns in the order of :data:`FACTOR_NAMES`.

    Raises
    ------
    ConfigError
        For a non-positive ``num_points``, a negative ``seed`` or a non-floating ``dtype``.
    """
    check_int(num_points, "num_points", 1)
    check_int(seed, "seed", 0)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating torch dtype; got {dtype!r}")
    generator = torch.Generator().manual_seed(int(seed))
    unit = torch.rand(num_points, len(FACTOR_NAMES), generator=generator, dtype=torch.float64)
    low = torch.tensor([FACTOR_RANGES[name][0] for name in FACTOR_NAMES], dtype=torch.float64)
    high = torch.tensor([FACTOR_RANGES[name][1] for name in FACTOR_NAMES], dtype=torch.float64)
    return (low + unit * (high - low)).to(dtype=dtype, device=device)


def render_glyphs(factors: torch.Tensor, image_size: int = 28,
                  glyph: str = "seven") -> torch.Tensor:
    """Draw one anti-aliased glyph per row of ``factors``.

    A pixel's grey level is ``clamp(thickness / 2 + 1/2 - d, 0, 1)``, with
    ``d`` the distance from the pixel's centre to the glyph's polyline: fully
    inked within half the stroke width, fading to white over one pixel.

    Parameters
    ----------
    factors : Tensor, shape (num_images, 5)
        Floating point, columns in the order of :data:`FACTOR_NAMES`; any
        values are drawn (values outside :data:`FACTOR_RANGES` may leave the frame).
    image_size : int
        Height and width of the images, 14 to 128 pixels.
    glyph : {"seven", "bar"}
        The shape drawn, see :data:`GLYPHS`.

    Returns
    -------
    Tensor, shape (num_images, image_size * image_size)
        Grey levels in [0, 1] (1 is ink), images flattened row by row; dtype
        and device of ``factors``.

    Raises
    ------
    ConfigError
        For an unknown glyph or an image size out of range.
    DataError
        For factors of the wrong shape or type, or with NaN or infinite values.
    """
    check_int(image_size, "image_size", _MIN_IMAGE_SIZE, _MAX_IMAGE_SIZE)
    points = _glyph_points(glyph)
    if not isinstance(factors, torch.Tensor) or not factors.is_floating_point():
        raise DataError(
            f"render_glyphs needs a floating point tensor of factors; got "
            f"{getattr(factors, 'dtype', type(factors).__name__)}")
    if factors.dim() != 2 or factors.shape[1] != len(FACTOR_NAMES):
        raise DataError(
            f"factors must have shape (num_images, {len(FACTOR_NAMES)}) with columns "
            f"{', '.join(FACTOR_NAMES)}; got {tuple(factors.shape)}")
    if not bool(torch.isfinite(factors).all()):
        raise DataError("factors hold NaN or infinite values")
    chunks = [_render_chunk(chunk, image_size, points) for chunk in factors.split(_CHUNK)]
    if not chunks:
        return factors.new_zeros(0, image_size * image_size)
    return torch.cat(chunks)


def make_strokes(num_points: int = 5000, image_size: int = 28, glyph: str = "seven",
                 seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw factors with :func:`sample_factors` and render them with :func:`render_glyphs`.

    Rendering is done in float64 and the result cast, so the images are the
    same in every ``dtype`` up to rounding.

    Parameters
    ----------
    num_points : int
    image_size : int
    glyph : {"seven", "bar"}
    seed : int
    dtype : torch.dtype

    Returns
    -------
    images : Tensor, shape (num_points, image_size * image_size)
        Grey levels in [0, 1].
    factors : Tensor, shape (num_points, 5)
        The factors of each image, columns in the order of :data:`FACTOR_NAMES`.
    """
    factors = sample_factors(num_points, seed)
    images = render_glyphs(factors, image_size, glyph)
    return images.to(dtype), factors.to(dtype)


def _render_chunk(factors: torch.Tensor, image_size: int,
                  points: tuple[tuple[float, float], ...]) -> torch.Tensor:
    ratio = image_size / _REFERENCE_SIZE
    slant, thickness, scale, shift_x, shift_y = (column[:, None] for column in factors.unbind(1))
    angle = torch.deg2rad(slant)
    cos, sin = angle.cos(), angle.sin()
    centre = (image_size - 1) / 2
    half_height = _HALF_HEIGHT * ratio * scale

    def to_pixels(u: float, v: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Glyph coordinates (y up) to pixel column and row (row down), shape (n, 1)."""
        right = (u * cos + v * sin) * half_height
        up = (-u * sin + v * cos) * half_height
        return centre + shift_x * ratio + right, centre + shift_y * ratio - up

    grid = torch.arange(image_size, dtype=factors.dtype, device=factors.device)
    rows, columns = torch.meshgrid(grid, grid, indexing="ij")
    px, py = columns.reshape(1, -1), rows.reshape(1, -1)
    distance = None
    for start, end in zip(points[:-1], points[1:]):
        ax, ay = to_pixels(*start)
        bx, by = to_pixels(*end)
        dx, dy = bx - ax, by - ay
        length2 = (dx * dx + dy * dy).clamp_min(1e-12)          # a glyph of scale 0 is a dot
        t = (((px - ax) * dx + (py - ay) * dy) / length2).clamp(0, 1)
        segment = torch.hypot(px - ax - t * dx, py - ay - t * dy)
        distance = segment if distance is None else torch.minimum(distance, segment)
    return (thickness * ratio / 2 + 0.5 - distance).clamp(0, 1)


def _glyph_points(glyph: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(glyph, str) or glyph not in GLYPHS:
        raise ConfigError(f"unknown glyph {glyph!r}; choose one of {', '.join(GLYPHS)}")
    return GLYPHS[glyph]
