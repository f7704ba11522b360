"""Tests of the applications (anomaly ROC, probes, PCA, quantized codes, image corruptions)
against exact answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ppl_vae.data.corruptions import flip_pixels, mirror_images, paste_patch, shift_images
from ppl_vae.errors import ConfigError, DataError
from ppl_vae.evaluation.anomaly import anomaly_roc
from ppl_vae.evaluation.representation import (
    MAX_QUANTIZATION_BITS,
    fit_pca,
    linear_probe,
    quantize_gaussian,
    stratified_subset,
)

#: float64 round-off in sums of a few hundred terms.
EXACT = 1e-10


# ----- anomaly detection --------------------------------------------------------------------


def test_anomaly_roc_perfect_and_reversed():
    normal = torch.tensor([-10.0, -11.0, -12.0])
    anomalies = torch.tensor([-50.0, -60.0])
    assert anomaly_roc(normal, anomalies).auc == 1.0
    assert anomaly_roc(anomalies, normal).auc == 0.0


def test_anomaly_roc_counts_pairs():
    # Pairs (anomaly below normal): -3 < -2, -3 < -1, -1.5 < -1 -> 3 of 4; no ties.
    roc = anomaly_roc(np.array([-1.0, -2.0]), np.array([-3.0, -1.5]))
    assert roc.auc == pytest.approx(0.75, abs=EXACT)
    assert roc.false_positive_rate[0] == 0 and roc.true_positive_rate[-1] == 1
    assert np.all(np.diff(roc.false_positive_rate) >= 0)


def test_anomaly_roc_thresholds_are_log_densities():
    roc = anomaly_roc(np.array([-1.0]), np.array([-3.0]))
    # Flagging below -3 catches the anomaly and no normal point.
    at = list(roc.thresholds).index(-3.0)
    assert (roc.false_positive_rate[at], roc.true_positive_rate[at]) == (0.0, 1.0)


def test_anomaly_roc_ties_count_half():
    assert anomaly_roc(np.zeros(4), np.zeros(3)).auc == pytest.approx(0.5, abs=EXACT)


@pytest.mark.parametrize("normal, anomalies", [
    (np.array([]), np.array([1.0])),
    (np.array([1.0, np.nan]), np.array([1.0])),
    (np.array([1.0]), np.array([[1.0]])),
    (np.array([1.0]), np.array([-np.inf])),
])
def test_anomaly_roc_rejects_bad_scores(normal, anomalies):
    with pytest.raises(DataError):
        anomaly_roc(normal, anomalies)


def test_flip_pixels_flips_the_expected_share():
    x = torch.zeros(200, 100)
    generator = torch.Generator().manual_seed(0)
    flipped = flip_pixels(x, 0.1, generator=generator)
    share = float(flipped.mean())
    # Binomial(20000, 0.1): standard error 0.0021; allow 4 of them.
    assert abs(share - 0.1) < 4 * math.sqrt(0.1 * 0.9 / x.numel())
    assert torch.equal(flip_pixels(flipped, 0.0), flipped)
    assert torch.equal(flip_pixels(flipped, 1.0), 1 - flipped)


def test_flip_pixels_rejects_bad_fraction():
    with pytest.raises(ConfigError):
        flip_pixels(torch.zeros(1, 4), 1.5)


def test_paste_patch_paints_one_square_per_image():
    x = torch.zeros(50, 36, dtype=torch.float64)
    patched = paste_patch(x, (6, 6), 3, generator=torch.Generator().manual_seed(1))
    assert patched.dtype == torch.float64
    assert torch.all(patched.sum(-1) == 9)
    for image in patched.reshape(-1, 6, 6):
        rows, columns = torch.nonzero(image, as_tuple=True)
        assert int(rows.max() - rows.min()) == 2 and int(columns.max() - columns.min()) == 2


def test_paste_patch_checks_its_size():
    with pytest.raises(ConfigError):
        paste_patch(torch.zeros(1, 16), (4, 4), 5)
    with pytest.raises(DataError):
        paste_patch(torch.zeros(1, 15), (4, 4), 2)


def test_shift_images_moves_and_drops_ink():
    image = torch.arange(1.0, 10.0).reshape(1, 9)          # rows (1 2 3) (4 5 6) (7 8 9)
    expected_right = torch.tensor([[0.0, 1, 2, 0, 4, 5, 0, 7, 8]])
    expected_up = torch.tensor([[4.0, 5, 6, 7, 8, 9, 0, 0, 0]])
    assert torch.equal(shift_images(image, (3, 3), right=1), expected_right)
    assert torch.equal(shift_images(image, (3, 3), down=-1), expected_up)
    assert torch.equal(shift_images(image, (3, 3)), image)
    with pytest.raises(ConfigError):
        shift_images(image, (3, 3), down=3)


def test_mirror_images_reverses_rows_and_is_an_involution():
    image = torch.arange(6.0).reshape(1, 6)                # rows (0 1 2) (3 4 5)
    assert torch.equal(mirror_images(image, (2, 3)), torch.tensor([[2.0, 1, 0, 5, 4, 3]]))
    assert torch.equal(mirror_images(mirror_images(image, (2, 3)), (2, 3)), image)


# ----- representation learning --------------------------------------------------------------


def test_stratified_subset_takes_equal_counts_and_is_seeded():
    labels = torch.tensor([0] * 5 + [1] * 7 + [2] * 4)
    subset = stratified_subset(labels, 3, seed=4)
    assert np.bincount(labels.numpy()[subset]).tolist() == [3, 3, 3]
    assert len(set(subset.tolist())) == 9
    assert np.array_equal(subset, stratified_subset(labels, 3, seed=4))
    with pytest.raises(DataError):
        stratified_subset(labels, 5, seed=0)


def test_linear_probe_separable_and_uninformative_features():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 2
    signal = labels[:, None].double() * 4 + torch.randn(200, 3, generator=generator, dtype=torch.float64)
    noise = torch.randn(200, 3, generator=generator, dtype=torch.float64)
    assert linear_probe(signal[:100], labels[:100], signal[100:], labels[100:]) == 1.0
    # Features independent of the labels: 100 test points, chance 0.5, sd 0.05.
    chance = linear_probe(noise[:100], labels[:100], noise[100:], labels[100:])
    assert abs(chance - 0.5) < 0.2


def test_linear_probe_rejects_bad_inputs():
    x, y = torch.zeros(4, 2), torch.tensor([0, 1, 0, 1])
    with pytest.raises(DataError):
        linear_probe(x, torch.zeros(4, dtype=torch.long), x, y)
    with pytest.raises(DataError):
        linear_probe(x, y, torch.zeros(4, 3), y)
    with pytest.raises(ConfigError):
        linear_probe(x, y, x, y, regularization=0.0)


def test_fit_pca_recovers_the_data_and_its_variances():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(50, 4, generator=generator, dtype=torch.float64) * torch.tensor(
        [3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    full = fit_pca(x, 4)
    assert torch.allclose(full.reconstruct(full.project(x)), x, atol=EXACT)
    assert torch.allclose(full.components @ full.components.T, torch.eye(4, dtype=torch.float64),
                          atol=EXACT)
    coefficients = full.project(x)
    assert torch.allclose(coefficients.std(0), full.scale, atol=EXACT)
    assert torch.all(full.scale[:-1] >= full.scale[1:])
    with pytest.raises(DataError):
        fit_pca(x, 5)


# ----- compression --------------------------------------------------------------------------


def test_quantize_gaussian_one_bit_is_the_half_normal_mean():
    values = torch.tensor([-0.3, 0.2, 5.0], dtype=torch.float64)
    indices, levels = quantize_gaussian(values, 1, scale=2.0)
    half_normal_mean = math.sqrt(2 / math.pi)
    assert indices.tolist() == [0, 1, 1]
    assert torch.allclose(levels, 2.0 * half_normal_mean * torch.tensor([-1.0, 1.0, 1.0],
                                                                        dtype=torch.float64), atol=EXACT)


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_quantize_gaussian_bins_are_equally_likely_and_levels_are_bin_means(bits):
    draws = torch.randn(200_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    indices, levels = quantize_gaussian(draws, bits)
    counts = torch.bincount(indices, minlength=2**bits).double()
    expected = len(draws) / 2**bits
    # Multinomial counts: sd sqrt(n p (1 - p)); 5 sd for the largest of up to 256 bins.
    assert torch.all((counts - expected).abs() < 5 * math.sqrt(expected))
    for level in (0, 2**bits // 2, 2**bits - 1):
        inside = draws[indices == level]
        # The level is the conditional mean: the sample mean of the bin, within 5 standard errors.
        stderr = float(inside.std()) / math.sqrt(len(inside))
        assert abs(float(inside.mean() - levels[indices == level][0])) < 5 * stderr


def test_quantize_gaussian_follows_dtype_and_rejects_bad_bits():
    values = torch.randn(4, 3)
    indices, levels = quantize_gaussian(values, 4, scale=torch.tensor([1.0, 2.0, 3.0]))
    assert levels.dtype == torch.float32 and indices.dtype == torch.int64
    assert torch.all((indices >= 0) & (indices < 16))
    with pytest.raises(ConfigError):
        quantize_gaussian(values, 0)
    with pytest.raises(ConfigError):
        quantize_gaussian(values, MAX_QUANTIZATION_BITS + 1)
    with pytest.raises(ConfigError):
        quantize_gaussian(values, 2, scale=0.0)
