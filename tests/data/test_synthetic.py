"""Rendered glyphs with known factors: range, determinism, what each factor does, the data set."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ppl_vae.data import KNOWN_DATASETS, load_dataset
from ppl_vae.data.synthetic import (
    FACTOR_NAMES,
    FACTOR_RANGES,
    GLYPHS,
    make_strokes,
    render_glyphs,
    sample_factors,
)
from ppl_vae.errors import ConfigError, DataError

# Pixel sampling of a smooth edge: the ink of a rendered capsule misses its
# exact area by 2.4% at most over the factor box (measured), so allow 3%.
AREA_RELATIVE_TOLERANCE = 0.03
# Pixel sampling blurs a shift by a fraction of a pixel: the centre of mass of
# the 28 x 28 bar moves 0.045 px less than asked for a 1.25 px shift (measured).
SUBPIXEL_TOLERANCE = 0.06
# A sample mean may miss its true value by this many standard errors (fails by chance < 1e-6).
NUM_STANDARD_ERRORS = 5.0
# The middle of the factor box: upright, thickness 2.5, scale 1, centred.
MIDDLE = {"slant": 0.0, "thickness": 2.5, "scale": 1.0, "x": 0.0, "y": 0.0}


def factors_with(**changes: float) -> torch.Tensor:
    """One row of factors in float64: the middle of the box with ``changes``."""
    values = MIDDLE | changes
    return torch.tensor([[values[name] for name in FACTOR_NAMES]], dtype=torch.float64)


def moments(image: torch.Tensor, size: int) -> tuple[float, float, torch.Tensor]:
    """Ink mass, centre of mass (column, row) and the 2 x 2 covariance of the ink."""
    picture = image.reshape(size, size)
    rows, columns = torch.meshgrid(*(torch.arange(size, dtype=picture.dtype),) * 2, indexing="ij")
    mass = picture.sum()
    centre = torch.stack([(picture * columns).sum(), (picture * rows).sum()]) / mass
    offsets = torch.stack([columns - centre[0], rows - centre[1]]).reshape(2, -1)
    covariance = (offsets * picture.reshape(1, -1)) @ offsets.T / mass
    return float(mass), centre, covariance


# ----- sampling and rendering ------------------------------------------------------------------


@pytest.mark.parametrize("image_size, glyph", [(28, "seven"), (16, "bar"), (14, "seven")])
def test_images_have_the_documented_shape_range_and_type(image_size, glyph):
    images, factors = make_strokes(200, image_size, glyph, seed=3)
    assert images.shape == (200, image_size**2) and factors.shape == (200, len(FACTOR_NAMES))
    assert images.dtype == factors.dtype == torch.float32
    assert images.min() == 0 and images.max() == 1
    assert bool((images.sum(1) > 0).all())
    for column, name in enumerate(FACTOR_NAMES):
        low, high = FACTOR_RANGES[name]
        assert bool(((factors[:, column] >= low) & (factors[:, column] <= high)).all())


def test_factors_are_independent_uniform_draws():
    factors = sample_factors(20000, seed=0)
    low = torch.tensor([FACTOR_RANGES[name][0] for name in FACTOR_NAMES], dtype=torch.float64)
    high = torch.tensor([FACTOR_RANGES[name][1] for name in FACTOR_NAMES], dtype=torch.float64)
    unit = (factors - low) / (high - low)
    standard_error = math.sqrt(1 / 12 / len(unit))
    assert torch.allclose(unit.mean(0), torch.full((5,), 0.5, dtype=torch.float64),
                          atol=NUM_STANDARD_ERRORS * standard_error)
    off_diagonal = torch.corrcoef(unit.T) - torch.eye(5, dtype=torch.float64)
    assert off_diagonal.abs().max() < NUM_STANDARD_ERRORS / math.sqrt(len(unit))


def test_the_same_seed_gives_the_same_images_and_another_seed_others():
    images, factors = make_strokes(50, seed=7)
    again, again_factors = make_strokes(50, seed=7)
    other, _ = make_strokes(50, seed=8)
    assert torch.equal(images, again) and torch.equal(factors, again_factors)
    assert not torch.equal(images, other)
    in_float64, _ = make_strokes(50, seed=7, dtype=torch.float64)
    torch.testing.assert_close(in_float64.float(), images, rtol=0, atol=0)


def test_rendering_follows_the_dtype_of_the_factors():
    factors = sample_factors(4, dtype=torch.float32)
    assert render_glyphs(factors).dtype == torch.float32
    assert render_glyphs(factors.double()).dtype == torch.float64
    assert render_glyphs(factors[:0]).shape == (0, 784)


@pytest.mark.parametrize("glyph", sorted(GLYPHS))
@pytest.mark.parametrize("image_size", [14, 28, 64])
def test_no_glyph_in_the_factor_box_touches_the_frame(glyph, image_size):
    corners = torch.tensor(list(itertools.product(*(FACTOR_RANGES[name] for name in FACTOR_NAMES))),
                           dtype=torch.float64)
    pictures = render_glyphs(corners, image_size, glyph).reshape(-1, image_size, image_size)
    frame = torch.cat([pictures[:, 0], pictures[:, -1], pictures[:, :, 0], pictures[:, :, -1]], 1)
    assert frame.max() == 0


@pytest.mark.parametrize("glyph", sorted(GLYPHS))
def test_a_whole_pixel_shift_moves_the_image_by_exactly_that_many_pixels(glyph):
    centred = render_glyphs(factors_with(), 28, glyph).reshape(28, 28)
    right = render_glyphs(factors_with(x=2.0), 28, glyph).reshape(28, 28)
    down = render_glyphs(factors_with(y=3.0), 28, glyph).reshape(28, 28)
    torch.testing.assert_close(right, centred.roll(2, dims=1), rtol=0, atol=1e-12)
    torch.testing.assert_close(down, centred.roll(3, dims=0), rtol=0, atol=1e-12)
    _, centre, _ = moments(centred, 28)
    _, moved, _ = moments(render_glyphs(factors_with(x=-1.25, y=0.5), 28, glyph), 28)
    torch.testing.assert_close(moved - centre, torch.tensor([-1.25, 0.5], dtype=torch.float64),
                               rtol=0, atol=SUBPIXEL_TOLERANCE)


@pytest.mark.parametrize("slant", [0.0, 20.0])
def test_ink_grows_with_thickness_as_the_area_of_the_stroke(slant):
    thicknesses = torch.linspace(*FACTOR_RANGES["thickness"], 5, dtype=torch.float64)
    inks = []
    for width in thicknesses.tolist():
        picture = render_glyphs(factors_with(thickness=width, slant=slant), 28, "bar")
        ink, _, _ = moments(picture, 28)
        length = 10.0                                   # the bar is 10 pixels long at scale 1
        area = length * width + math.pi * width**2 / 4  # a capsule: rectangle and two half discs
        assert ink == pytest.approx(area, rel=AREA_RELATIVE_TOLERANCE)
        inks.append(ink)
    assert inks == sorted(inks)


def test_scale_stretches_the_glyph_and_slant_rotates_it():
    ratio = 64 / 28                                     # lengths are pixels of a 28 x 28 image
    for scale in (0.75, 1.0, 1.25):
        picture = render_glyphs(factors_with(scale=scale, thickness=1.5), 64, "bar").reshape(64, 64)
        # Rows at least half inked: the bar's length 10 * scale plus its two round caps.
        inked_rows = int((picture.amax(1) >= 0.5).sum())
        assert abs(inked_rows - (10 * scale + 1.5) * ratio) <= 1
    for slant in (-30.0, -10.0, 15.0, 30.0):
        _, _, covariance = moments(render_glyphs(factors_with(slant=slant), 64, "bar"), 64)
        # Principal axis of the ink, measured from the vertical, positive leaning right (rows down).
        axis = 0.5 * math.degrees(
            math.atan2(-2 * covariance[0, 1], covariance[1, 1] - covariance[0, 0]))
        assert axis == pytest.approx(slant, abs=0.5)


def test_slant_mirrors_the_seven_but_not_onto_itself():
    left = render_glyphs(factors_with(slant=-20.0)).reshape(28, 28)
    right = render_glyphs(factors_with(slant=20.0)).reshape(28, 28)
    assert (left - right).abs().sum() > 20
    assert moments(left, 28)[0] == pytest.approx(moments(right, 28)[0], rel=0.02)


@pytest.mark.parametrize("call, error, message", [
    (lambda: make_strokes(10, image_size=13), ConfigError, "image_size"),
    (lambda: make_strokes(10, image_size=129), ConfigError, "image_size"),
    (lambda: make_strokes(10, image_size=28.0), ConfigError, "image_size"),
    (lambda: make_strokes(10, glyph="eight"), ConfigError, "seven, bar"),
    (lambda: make_strokes(0), ConfigError, "num_points"),
    (lambda: make_strokes(10, seed=-1), ConfigError, "seed"),
    (lambda: sample_factors(10, dtype=torch.int64), ConfigError, "dtype"),
    (lambda: render_glyphs(torch.zeros(3, 4)), DataError, r"\(num_images, 5\)"),
    (lambda: render_glyphs(torch.zeros(3, 5, dtype=torch.int64)), DataError, "floating"),
    (lambda: render_glyphs(torch.full((1, 5), math.nan)), DataError, "NaN"),
])
def test_bad_arguments_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ----- the strokes data set ----------------------------------------------------------------


def test_strokes_load_by_name_with_their_factors():
    assert "strokes" in KNOWN_DATASETS
    data = load_dataset("strokes", num_points=300, image_size=16, glyph="bar", seed=2,
                        test_fraction=0.2)
    assert data.train_x.shape == (240, 256) and data.test_x.shape == (60, 256)
    assert data.image_shape == (16, 16) and data.train_y is None and data.true_params is None
    assert data.factor_names == FACTOR_NAMES
    assert data.train_factors.shape == (240, 5) and data.test_factors.shape == (60, 5)
    assert data.train_x.is_contiguous() and data.train_factors.dtype == torch.float32
    for x, factors in ((data.train_x, data.train_factors), (data.test_x, data.test_factors)):
        torch.testing.assert_close(render_glyphs(factors.double(), 16, "bar").float(), x,
                                   rtol=0, atol=1e-5)
    _, factors = make_strokes(300, 16, "bar", seed=2)
    split = torch.cat([data.train_factors, data.test_factors])
    assert torch.equal(split[split[:, 0].argsort()], factors[factors[:, 0].argsort()])


def test_strokes_defaults_seed_and_dtype():
    data = load_dataset("strokes", dtype=torch.float64)
    assert data.train_x.shape == (4500, 784) and data.train_x.dtype == torch.float64
    assert data.train_factors.dtype == torch.float64
    again = load_dataset("strokes", seed=1, num_points=100)
    assert not torch.equal(again.test_factors, load_dataset("strokes", num_points=100).test_factors)


def test_to_moves_the_factors():
    moved = load_dataset("strokes", num_points=20).to("meta")
    assert moved.train_factors.device.type == "meta" and moved.test_factors.device.type == "meta"


@pytest.mark.parametrize("options, error, message", [
    ({"num_point": 10}, ConfigError, "num_point'"),  # issue 16: unknown options were DataError
    ({"noise_scale": 0.1}, ConfigError, "noise_scale"),
    ({"num_points": 1}, ConfigError, "num_points"),
    ({"num_points": 2.5}, ConfigError, "num_points"),
    ({"image_size": 8}, ConfigError, "image_size"),
    ({"glyph": "circle"}, ConfigError, "glyph"),
])
def test_bad_strokes_options_are_refused(options, error, message):
    with pytest.raises(error, match=message):
        load_dataset("strokes", **options)


def test_other_data_sets_name_the_strokes_options():
    with pytest.raises(ConfigError, match="image_size, glyph belong to strokes"):
        load_dataset("digits", image_size=16)
