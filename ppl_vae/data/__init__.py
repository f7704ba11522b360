"""Data, all offline: loaders, binarization and the fixed evaluation copy, synthetic sets, corruptions.

``load_dataset(name)`` (:mod:`ppl_vae.data.loaders`) returns a :class:`Dataset`;
:mod:`ppl_vae.data.binarization` draws binary data from intensities;
:mod:`ppl_vae.data.synthetic` renders glyphs with known factors;
:mod:`ppl_vae.data.corruptions` makes corrupted copies of images. Nothing here
imports a model, an inference algorithm or the training loop.
"""

from ppl_vae.data.binarization import (
    BINARIZE_MODES,
    bernoulli_draw,
    binarize,
    check_binarize_mode,
    evaluation_data,
)
from ppl_vae.data.corruptions import flip_pixels, mirror_images, paste_patch, shift_images
from ppl_vae.data.loaders import KNOWN_DATASETS, Dataset, load_dataset
from ppl_vae.data.synthetic import (
    FACTOR_NAMES,
    FACTOR_RANGES,
    make_strokes,
    render_glyphs,
    sample_factors,
)

__all__ = [
    "BINARIZE_MODES",
    "FACTOR_NAMES",
    "FACTOR_RANGES",
    "KNOWN_DATASETS",
    "Dataset",
    "bernoulli_draw",
    "binarize",
    "check_binarize_mode",
    "evaluation_data",
    "flip_pixels",
    "load_dataset",
    "make_strokes",
    "mirror_images",
    "paste_patch",
    "render_glyphs",
    "sample_factors",
    "shift_images",
]
