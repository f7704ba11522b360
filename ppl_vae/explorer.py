"""An interactive latent-space explorer: one self-contained HTML file.

:func:`write_explorer` writes a page that needs no server and no network: the
decoder's weights, the test points' encodings and images, and the script that
evaluates the decoder are all inline. The page evaluates the same multilayer
perceptron as :class:`~ppl_vae.models.networks.Decoder`, in JavaScript,

    h_0 = z,   h_k = a(W_k h_{k-1} + b_k),   output = W_L h_{L-1} + b_L,

and shows ``sigmoid(output)`` (Bernoulli pixel means) or ``output`` (Gaussian
means) as an image. A reader can hover over the latent plane and see the
decoded digit, click a test digit to see q(z | x) as 1- and 2-sd ellipses
(and, with :func:`load_compare_results`, the NUTS draws, q* and the gaps of
``ppl-vae compare``), drag a line to interpolate, and sample 100 digits.

The plane shows two latent coordinates. For ``latent_dim > 2`` they are the
two with the largest KL(q(z_j | x) || N(0, 1)) averaged over the shown points
(:func:`~ppl_vae.evaluation.representation.kl_per_dimension`), and every other
coordinate is held at the mean of the shown points' encoder means; the page
says so.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.models.networks import ACTIVATIONS
from ppl_vae.safe_files import read_regular
from ppl_vae.storage import atomic_write, atomic_write_text

#: Test points embedded in the page by default: 500 MNIST digits are about 0.5 MB.
DEFAULT_MAX_POINTS = 500

#: NUTS draws per point kept for the explorer's cloud (thinned evenly from all chains).
EXPLORER_DRAWS = 300

#: The file :func:`save_posterior_draws` writes next to ``comparison.json``.
POSTERIOR_DRAWS_NAME = "posterior_draws.npz"

#: ``comparison.json`` of thousands of points is a few MiB; the draws are float32 per point.
MAX_SUMMARY_BYTES = 256 * 2**20
MAX_DRAWS_BYTES = 2**30
_DRAWS_KEYS = ("point_index", "nuts", "qstar_loc", "qstar_scale")
#: The per-point values of ``comparison.json`` the page shows.
PER_POINT_SHOWN = ("encoder_elbo", "encoder_iwae", "local_gaussian_elbo", "log_px")

_TEMPLATE = "explorer.html"
_PAYLOAD_MARK = "__PPL_VAE_EXPLORER_PAYLOAD__"


@dataclass(frozen=True)
class CompareResults:
    """What ``ppl-vae compare`` wrote, per compared test point.

    Attributes
    ----------
    point_index : ndarray of int, shape (num_points,)
        Rows of the test set.
    nuts : ndarray, shape (num_points, num_draws, latent_dim)
        Thinned NUTS draws of p(z | x).
    qstar_loc, qstar_scale : ndarray, shape (num_points, latent_dim), or None
        The per-point Gaussian q*; None when compare ran without it.
    per_point : dict of list of float
        ``comparison.json``'s per-point ELBOs, IWAE bounds and ``log_px``.
    converged : bool
        Whether the NUTS run passed its convergence checks.
    """

    point_index: np.ndarray
    nuts: np.ndarray
    qstar_loc: np.ndarray | None
    qstar_scale: np.ndarray | None
    per_point: dict[str, list[float]]
    converged: bool

    @property
    def latent_dim(self) -> int:
        return int(self.nuts.shape[-1])


def save_posterior_draws(comparison: Any, path: str | os.PathLike,
                         num_draws: int = EXPLORER_DRAWS) -> None:
    """Write a comparison's thinned NUTS draws and q* parameters per point (atomically).

    Parameters
    ----------
    comparison : Comparison
        The result of :func:`~ppl_vae.evaluation.compare_posteriors`.
    path : path-like
        An ``.npz`` file, conventionally ``OUT/posterior_draws.npz``.
    num_draws : int
        Draws kept per point, evenly spaced over all chains' draws.

    Notes
    -----
    The file holds ``point_index`` (num_points,), ``nuts`` (num_points,
    num_draws, latent_dim) and, when q* was fitted, ``qstar_loc`` and
    ``qstar_scale`` (num_points, latent_dim), all float32 except the index.
    """
    samples = comparison.nuts.samples.detach().cpu()          # (chains, draws, points, latent)
    flat = samples.flatten(0, 1)                                # (chains * draws, points, latent)
    keep = torch.linspace(0, len(flat) - 1, min(num_draws, len(flat))).round().long()
    arrays = {"point_index": np.asarray(comparison.point_index, dtype=np.int64),
              "nuts": flat[keep].transpose(0, 1).float().numpy()}
    qstar = comparison.posteriors.get("local_gaussian")
    if qstar is not None:
        arrays["qstar_loc"] = qstar.loc.detach().cpu().float().numpy()
        arrays["qstar_scale"] = qstar.scale.detach().cpu().float().numpy()
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def load_compare_results(folder: str | os.PathLike) -> CompareResults:
    """Read ``comparison.json`` and ``posterior_draws.npz`` from a ``ppl-vae compare`` folder.

    Both files are checked as a checkpoint is: regular files of bounded size,
    arrays of numbers of the shapes :func:`save_posterior_draws` writes, finite
    values, per-point lists as long as the points. More draws per point than
    :data:`EXPLORER_DRAWS` are thinned evenly.

    Raises
    ------
    ConfigError
        If either file is missing, unreadable or malformed; one line naming the
        file and the problem, and saying to run compare again.
    """
    folder = Path(folder)
    summary_path, draws_path = folder / "comparison.json", folder / POSTERIOR_DRAWS_NAME
    for path in (summary_path, draws_path):
        if not os.path.lexists(path):
            raise ConfigError(f"no {path.name} in {folder}; run `ppl-vae compare --checkpoint RUN "
                              f"--out {folder}` first (this version writes both files)")
    fix = f"run `ppl-vae compare --checkpoint RUN --out {folder}` again"
    summary = _read_summary(summary_path, fix)
    arrays = _read_draws(draws_path, fix)
    try:
        return _checked_results(summary, arrays)
    except ValueError as error:
        raise ConfigError(f"the compare results in {folder} cannot be shown: {error}; {fix}") from None


def _read_summary(path: Path, fix: str) -> dict[str, Any]:
    """``comparison.json`` as a dictionary: no NaN or infinity, no nesting beyond Python's stack."""
    text = read_regular(path, MAX_SUMMARY_BYTES, fix)

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not a number JSON allows")

    try:
        summary = json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError) as error:
        raise ConfigError(f"{path} is not valid JSON ({str(error)[:80] or 'nested too deeply'}); "
                          f"{fix}") from None
    if not isinstance(summary, dict):
        raise ConfigError(f"{path} holds a {type(summary).__name__}, not a mapping; {fix}")
    return summary


def _read_draws(path: Path, fix: str) -> dict[str, np.ndarray]:
    """The arrays of ``posterior_draws.npz``, none larger than the file allows once unpacked."""
    data = read_regular(path, MAX_DRAWS_BYTES, fix)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            unpacked = sum(info.file_size for info in archive.zip.infolist())
            if unpacked > MAX_DRAWS_BYTES:
                raise ValueError(f"it unpacks to {unpacked / 2**20:.0f} MiB")
            return {key: archive[key] for key in _DRAWS_KEYS if key in archive.files}
    except (OSError, ValueError, EOFError, AttributeError, zipfile.BadZipFile) as error:
        raise ConfigError(f"{path} is not an .npz archive of plain arrays ({str(error)[:80]}); "
                          f"{fix}") from None


def _checked_results(summary: dict[str, Any], arrays: dict[str, np.ndarray]) -> CompareResults:
    """The results once every array and value has the type and shape the explorer draws."""
    for key in ("point_index", "nuts"):
        if key not in arrays:
            raise ValueError(f"{POSTERIOR_DRAWS_NAME} holds no {key}")
    index, nuts = arrays["point_index"], _finite(arrays["nuts"], "nuts", 3)
    if index.ndim != 1 or index.dtype.kind not in "iu" or len(index) != len(nuts) or (index < 0).any():
        raise ValueError(f"point_index should be {len(nuts)} non-negative integers, one per point")
    if summary.get("point_index") != index.tolist():
        raise ValueError("comparison.json and posterior_draws.npz name other points")
    if nuts.shape[1] > EXPLORER_DRAWS:
        nuts = nuts[:, np.linspace(0, nuts.shape[1] - 1, EXPLORER_DRAWS).round().astype(int)]
    if ("qstar_loc" in arrays) != ("qstar_scale" in arrays):
        raise ValueError("q* has a location without a scale, or a scale without a location")
    qstar = [_finite(arrays[key], key, 2) if key in arrays else None
             for key in ("qstar_loc", "qstar_scale")]
    if qstar[0] is not None and not (qstar[0].shape == qstar[1].shape == (len(nuts), nuts.shape[2])
                                     and (qstar[1] > 0).all()):
        raise ValueError("q* should be a location and a positive scale per point and coordinate")
    converged = summary.get("converged", True)
    if not isinstance(converged, bool):
        raise ValueError(f"converged is {converged!r}, not true or false")
    return CompareResults(index.astype(np.int64), nuts, *qstar,
                          _per_point(summary.get("per_point", {}), len(index)), converged)


def _finite(array: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """``array`` as float32 if it is a finite real array of ``ndim`` non-empty dimensions."""
    if array.dtype.kind not in "fiu" or array.ndim != ndim or 0 in array.shape:
        raise ValueError(f"{name} should be a non-empty {ndim}-d array of numbers; it is "
                         f"{array.dtype} of shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array.astype(np.float32)


def _per_point(per_point: Any, count: int) -> dict[str, list[float | None]]:
    """The per-point values the page shows, each a list of ``count`` numbers (None: not estimated)."""
    if not isinstance(per_point, dict):
        raise ValueError("per_point is not a mapping")
    shown = {}
    for key in PER_POINT_SHOWN:
        values = per_point.get(key)
        if values is None:
            continue
        if not (isinstance(values, list) and len(values) == count
                and all(value is None or _is_finite_number(value) for value in values)):
            raise ValueError(f"per_point's {key} should be {count} finite numbers, one per point")
        shown[key] = [None if value is None else float(value) for value in values]
    return shown


def _is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def decoder_layers(model: Any) -> list[dict[str, Any]]:
    """The decoder's linear layers as ``{"in", "out", "weight", "bias"}`` with base64 float32.

    ``weight`` is the row-major (out, in) matrix, as :class:`torch.nn.Linear` stores it.
    """
    network = getattr(getattr(model, "decoder", None), "net", None)
    if not isinstance(network, nn.Sequential):
        raise ConfigError(f"the explorer needs a model with an MLP decoder (a VAE); got "
                          f"{type(model).__name__}")
    layers = []
    for module in network:
        if isinstance(module, nn.Linear):
            weight = module.weight.detach().cpu().float().numpy()
            layers.append({"in": weight.shape[1], "out": weight.shape[0],
                           "weight": _b64(weight, "<f4"),
                           "bias": _b64(module.bias.detach().cpu().float().numpy(), "<f4")})
    return layers


def plane_dimensions(model: Any, loc: torch.Tensor, x: torch.Tensor) -> tuple[list[int], str]:
    """The two latent coordinates the plane shows and a sentence saying how they were chosen."""
    if model.latent_dim == 1:
        raise ConfigError("the explorer draws a plane of two latent coordinates; this model has "
                          "latent_dim 1: train one with --latent-dim 2 or more")
    if model.latent_dim == 2:
        return [0, 1], "The plane is the whole 2-D latent space."
    from ppl_vae.evaluation.representation import kl_per_dimension

    kl = kl_per_dimension(model, x)
    dims = sorted(torch.argsort(kl, descending=True)[:2].tolist())
    return dims, (f"latent_dim is {model.latent_dim}: the plane shows z[{dims[0]}] and z[{dims[1]}], "
                  f"the two coordinates with the largest KL to the prior (KL per dimension "
                  f"{kl[dims[0]]:.2f} and {kl[dims[1]]:.2f} nats); every other coordinate is held "
                  "at the mean of the test digits' encoder means.")


def explorer_payload(model: Any, x: torch.Tensor, *, labels: torch.Tensor | None = None,
                     image_shape: tuple[int, int] | None = None,
                     compare: CompareResults | None = None,
                     max_points: int = DEFAULT_MAX_POINTS, title: str = "") -> dict[str, Any]:
    """Everything the page needs, as JSON-ready values.

    Parameters
    ----------
    model : VAE
        A trained model with ``encode``, ``decoder``, ``latent_dim``, ``likelihood``
        and ``activation``.
    x : Tensor, shape (num_points, data_dim)
        Test points in [0, 1], in the order ``ppl-vae compare`` uses (rows of the test set).
    labels : Tensor of int, shape (num_points,), optional
        Class labels for the dots' colours.
    image_shape : (int, int), optional
        Height and width of one image; by default square.
    compare : CompareResults, optional
        From :func:`load_compare_results`, for the same model and points.
    max_points : int
        The first ``max_points`` points are embedded.
    title : str
        Shown as the page's heading.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] == 0:
        raise DataError("the explorer needs a non-empty (num_points, data_dim) tensor of test points")
    layers = decoder_layers(model)
    activation = getattr(model, "activation", None)
    if activation not in ACTIVATIONS:
        raise ConfigError(f"the explorer cannot evaluate the activation {activation!r}; "
                          f"it knows {', '.join(ACTIVATIONS)}")
    data_dim = x.shape[1]
    if image_shape is None:
        side = int(round(data_dim ** 0.5))
        if side * side != data_dim:
            raise DataError(f"points of {data_dim} features are not square images; pass image_shape")
        image_shape = (side, side)
    if image_shape[0] * image_shape[1] != data_dim:
        raise DataError(f"image_shape {tuple(image_shape)} does not hold {data_dim} pixels")
    x = x[:max_points].detach()
    with torch.no_grad():
        loc, scale = model.encode(x.to(next(model.parameters()).device))
    loc, scale = loc.cpu().double(), scale.cpu().double()
    dims, note = plane_dimensions(model, loc, x.to(next(model.parameters()).device))
    base = loc.mean(0) if model.latent_dim > 2 else torch.zeros(model.latent_dim, dtype=loc.dtype)
    payload: dict[str, Any] = {
        "title": title,
        "latent_dim": model.latent_dim,
        "dims": dims,
        "base": base.tolist(),
        "note": note,
        "image_shape": list(image_shape),
        "likelihood": model.likelihood,
        "activation": activation,
        "layers": layers,
        "points": {
            "count": len(x),
            "loc": loc[:, dims].tolist(),
            "scale": scale[:, dims].tolist(),
            "label": None if labels is None else [int(v) for v in labels[:max_points].tolist()],
            "images": _b64((x.cpu().clamp(0, 1).numpy() * 255).round(), "u1"),
        },
        "compare": None,
    }
    if model.latent_dim > 2:
        payload["coordinates"] = coordinate_choice(loc, scale)
    if compare is not None:
        payload["compare"] = _compare_payload(compare, dims, len(x), model.latent_dim)
    return payload


def coordinate_choice(loc: torch.Tensor, scale: torch.Tensor) -> dict[str, Any]:
    """What the page needs to show any two latent coordinates and each digit's reconstruction.

    Parameters
    ----------
    loc, scale : Tensor, shape (num_points, latent_dim)
        The encoder's q(z | x) of the shown points.

    Returns
    -------
    dict
        ``loc`` and ``scale``: every coordinate of every point (base64 float32, row-major
        (num_points, latent_dim)); ``kl``: KL(q(z_j | x) || N(0, 1)) of each coordinate j,
        averaged over the points, (mu_j^2 + sigma_j^2 - 1) / 2 - log sigma_j, for the
        page's choice of coordinates (largest first).
    """
    kl = (0.5 * (loc**2 + scale**2 - 1) - scale.log()).mean(0)
    return {"loc": _b64(loc.numpy(), "<f4"), "scale": _b64(scale.numpy(), "<f4"),
            "kl": [round(float(value), 4) for value in kl]}


def _compare_payload(compare: CompareResults, dims: list[int], num_points: int,
                     latent_dim: int) -> dict[str, Any]:
    if compare.latent_dim != latent_dim:
        raise ConfigError(f"the compare results have latent_dim {compare.latent_dim}, the model "
                          f"{latent_dim}; pass the --compare folder of this checkpoint")
    per_point = compare.per_point
    rows = []
    for k, index in enumerate(compare.point_index.tolist()):
        if index >= num_points:
            continue
        row: dict[str, Any] = {"point": index, "nuts": compare.nuts[k][:, dims].round(4).tolist()}
        if compare.qstar_loc is not None:
            row["qstar_loc"] = compare.qstar_loc[k][dims].tolist()
            row["qstar_scale"] = compare.qstar_scale[k][dims].tolist()
        for key in PER_POINT_SHOWN:
            if key in per_point:
                row[key] = per_point[key][k]
        if all(row.get(key) is not None for key in ("local_gaussian_elbo", "log_px", "encoder_elbo")):
            row["approximation_gap"] = row["log_px"] - row["local_gaussian_elbo"]
            row["amortization_gap"] = row["local_gaussian_elbo"] - row["encoder_elbo"]
        rows.append(row)
    return {"converged": compare.converged, "rows": rows}


def render_explorer(payload: dict[str, Any]) -> str:
    """The page's HTML with ``payload`` inline (safe inside ``<script>``)."""
    template = resources.files("ppl_vae").joinpath("templates", _TEMPLATE).read_text("utf-8")
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return template.replace(_PAYLOAD_MARK, data)


def write_explorer(model: Any, x: torch.Tensor, path: str | os.PathLike, **options: Any) -> int:
    """Write the explorer for ``model`` and the test points ``x`` to ``path`` (atomically).

    Parameters
    ----------
    model, x
        As for :func:`explorer_payload`.
    path : path-like
        The ``.html`` file to write; its folder must exist. An existing file is replaced.
    **options
        ``labels``, ``image_shape``, ``compare``, ``max_points`` and ``title``,
        as for :func:`explorer_payload`.

    Returns
    -------
    int
        The size of the page in bytes.

    Examples
    --------
    >>> from ppl_vae import VAE, load_dataset
    >>> from ppl_vae.explorer import write_explorer
    >>> vae = VAE(data_dim=64, latent_dim=2, hidden_dims=(32,))
    >>> size = write_explorer(vae, load_dataset("digits").test_x, "explorer.html")  # doctest: +SKIP
    """
    html = render_explorer(explorer_payload(model, x, **options))
    atomic_write_text(path, html)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # a page to share: readable like any new file, not 0600
    return len(html.encode("utf-8"))
