"""Checkpoints: atomic writes, safe loads, integrity and structure checked, a clear word on every failure.

A checkpoint is a dictionary of tensors and plain Python values, so it loads
with ``torch.load(..., weights_only=True)``: no pickled code runs on load.
Writes go through :func:`ppl_vae.storage.atomic_write`: a temporary file in
the same folder, flushed to disk, then renamed over the old file, so a crash
leaves either the old or the new checkpoint, never a truncated one.

Every checkpoint :func:`save_checkpoint` writes carries ``sha256``, a SHA-256
digest of its content (every tensor's dtype, shape and bytes and every plain
value, in a fixed order; see :func:`content_digest`). :func:`load_checkpoint`
recomputes it, so a flipped bit anywhere in the weights is reported as damage
instead of loading as wrong weights, and then checks the whole structure in one
place (:func:`validate_checkpoint`): each problem gets its own one-line error.
Checkpoints of format 1 written before the digest existed load unverified,
with a warning.
Non-finite weights are never written and never loaded.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import warnings
from pathlib import Path
from typing import Any

import torch

from ppl_vae.errors import CheckpointError
from ppl_vae.storage import atomic_write

#: Bumped whenever the layout of the checkpoint dictionary changes.
FORMAT_VERSION = 1

REQUIRED_KEYS = ("format_version", "model_class", "model_config", "model_state")

#: Keys a checkpoint may hold besides :data:`REQUIRED_KEYS`, with the types they must have.
OPTIONAL_KEYS: dict[str, tuple[type, ...]] = {
    "optimizer_state": (dict,),
    "svi_config": (dict,),
    "epoch": (int,),
    "history": (list,),
    "rng_state": (dict,),
    "elapsed": (int, float),
    "metadata": (dict,),
    "partial_epoch": (dict,),
    "data_fingerprint": (dict,),
    "num_threads": (int,),
    "sha256": (str,),
}

#: What ``--resume`` needs beyond :data:`REQUIRED_KEYS`.
RESUME_KEYS = ("optimizer_state", "svi_config", "epoch", "history", "rng_state")

#: The largest ``metadata["data_seed"]``: the data's split and binarization seed torch's
#: generators with it (and with it plus one), which take at most 64 bits.
DATA_SEED_MAX = 2**63 - 1

CHECKPOINT_NAME = "checkpoint.pt"
DIGEST_KEY = "sha256"


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """Accept a checkpoint file or the training output folder that holds one."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def content_digest(value: Any) -> str:
    """SHA-256 of a checkpoint's content: tensors by dtype, shape and bytes, plain values by type and value.

    Dictionaries are visited in the order of their keys' ``repr``, so the digest
    does not depend on insertion order. The key :data:`DIGEST_KEY` of the
    top-level dictionary is left out.
    """
    digest = hashlib.sha256()
    _update_digest(digest, {k: v for k, v in value.items() if k != DIGEST_KEY}
                   if isinstance(value, dict) else value)
    return digest.hexdigest()


def _update_digest(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{tensor.dtype}{tuple(value.shape)}".encode())
        if tensor.numel():
            digest.update(tensor.view(torch.uint8).numpy())  # the buffer itself, no copy
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            _update_digest(digest, key)
            _update_digest(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__[0]}{len(value)}".encode())
        for item in value:
            _update_digest(digest, item)
    elif isinstance(value, float):
        digest.update(b"f" + struct.pack("<d", value))
    else:
        digest.update(f"{type(value).__name__}:{value!r}".encode())


def non_finite_weights(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or inf."""
    return [name for name, value in state.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())]


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any], tag: str | None = None) -> None:
    """Save a checkpoint dictionary atomically, with its content digest.

    Parameters
    ----------
    path : path-like
        Target file (conventionally ``OUT/checkpoint.pt``).
    checkpoint : dict
        Must hold :data:`REQUIRED_KEYS` except ``format_version``, which is
        added, as is ``sha256``.
    tag : str, optional
        Passed to :func:`atomic_write`.

    Raises
    ------
    CheckpointError
        If a required key is missing, the structure is invalid, or a weight is
        NaN or infinite (nothing is written then).
    """
    checkpoint = {"format_version": FORMAT_VERSION, **checkpoint}
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"refusing to save a checkpoint without {', '.join(missing)}")
    checkpoint.pop(DIGEST_KEY, None)
    validate_checkpoint(checkpoint, Path(path), verb="save")
    checkpoint[DIGEST_KEY] = content_digest(checkpoint)
    atomic_write(path, lambda handle: torch.save(checkpoint, handle), tag)


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint without executing pickled code, verify its digest and check its structure.

    Parameters
    ----------
    path : path-like
        A checkpoint file or a training output folder.
    map_location : str or torch.device, optional
        Where to put the tensors (default the CPU).

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, damaged (digest mismatch), not a
        ppl_vae checkpoint, holds anything but tensors and plain values, has
        another format version, a field of the wrong type, or NaN or infinite
        weights.
    """
    path = resolve_checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; pass the folder given to `ppl-vae train --out` "
            "or the checkpoint.pt inside it"
        )
    try:
        with _open_regular(path) as handle:
            checkpoint = torch.load(handle, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            reason = "it contains pickled Python objects, which are refused for safety"
        raise CheckpointError(
            f"cannot read checkpoint {path}: {reason}. It is corrupt, truncated or not "
            "a ppl_vae checkpoint; retrain, or point to another checkpoint."
        ) from None
    if isinstance(checkpoint, dict) and DIGEST_KEY in checkpoint:
        stored = checkpoint[DIGEST_KEY]
        if not isinstance(stored, str) or stored != content_digest(checkpoint):
            raise CheckpointError(
                f"{path.name} is damaged (checksum mismatch); the previous checkpoint was "
                f"replaced when this one was written, so restore {path} from a backup, or retrain "
                "(`ppl-vae train ... --overwrite`)"
            )
    validate_checkpoint(checkpoint, path)
    if DIGEST_KEY not in checkpoint:
        warnings.warn(
            f"{path} carries no sha256 checksum (written before checksums existed, or the key was "
            "removed), so damage to it cannot be detected; save it again to add one",
            RuntimeWarning, stacklevel=2)
    return checkpoint


def _open_regular(path: Path) -> Any:
    """``path`` open for reading, checked on the descriptor to be a regular file.

    Opened without waiting for a writer, so a named pipe put there after the
    caller's check is refused instead of hanging the load.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError("it is not a regular file")
    return os.fdopen(fd, "rb")


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:80]


def validate_checkpoint(checkpoint: Any, path: str | os.PathLike = CHECKPOINT_NAME,
                        verb: str = "load") -> None:
    """Check the structure of a checkpoint dictionary: the one place where it is checked.

    Parameters
    ----------
    checkpoint : any
        What ``torch.load`` returned.
    path : path-like
        Named in the messages.
    verb : {"load", "save"}
        Whether the checkpoint is being read or written (for the messages).

    Raises
    ------
    CheckpointError
        Naming the first problem: not a dictionary, a required key missing,
        another format version, a field of the wrong type, non-finite weights.
    """
    path = Path(path)
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        raise CheckpointError(
            f"{path} is not a ppl_vae checkpoint (expected a dictionary with "
            f"{', '.join(REQUIRED_KEYS)}); point to the checkpoint.pt that `ppl-vae train` wrote"
        )
    version = checkpoint["format_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(
            f"{path} has format_version {_describe(version)}, not an integer; the file was "
            "edited or written by another program: retrain, or point to another checkpoint"
        )
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}, this ppl_vae reads "
            f"format {FORMAT_VERSION}; retrain with this version or install the one that wrote it"
        )
    fix = ("the file was edited or written by another program: retrain, or point to another "
           "checkpoint")
    expected: dict[str, tuple[type, ...]] = {
        "model_class": (str,), "model_config": (dict,), "model_state": (dict,), **OPTIONAL_KEYS}
    for key, types in expected.items():
        if key not in checkpoint:
            continue
        value = checkpoint[key]
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise CheckpointError(f"{path}: {key} should be a {names}, not {_describe(value)}; {fix}")
    for key in ("model_config", "svi_config", "metadata"):
        if key in checkpoint and not _is_plain(checkpoint[key]):
            raise CheckpointError(
                f"{path}: {key} should hold plain values (numbers, strings, lists), but holds a "
                f"tensor or another object; {fix}")
    bad_names = [name for name in checkpoint["model_state"] if not isinstance(name, str)]
    bad_values = [name for name, value in checkpoint["model_state"].items()
                  if not isinstance(value, torch.Tensor)]
    if bad_names or bad_values:
        raise CheckpointError(
            f"{path}: model_state should map parameter names to tensors, but "
            f"{_describe((bad_names or bad_values)[0])} is not one; {fix}")
    if "epoch" in checkpoint and checkpoint["epoch"] < 0:
        raise CheckpointError(f"{path}: epoch is {checkpoint['epoch']}, below 0; {fix}")
    if "history" in checkpoint and not all(isinstance(r, dict) for r in checkpoint["history"]):
        raise CheckpointError(f"{path}: history should be a list of per-epoch dicts; {fix}")
    if "rng_state" in checkpoint:
        _check_rng_state(checkpoint["rng_state"], "rng_state", path, fix)
    if "history" in checkpoint and "epoch" in checkpoint:
        if len(checkpoint["history"]) != checkpoint["epoch"]:
            raise CheckpointError(
                f"{path}: history holds {len(checkpoint['history'])} epochs but epoch is "
                f"{checkpoint['epoch']}; {fix}")
    if "partial_epoch" in checkpoint:
        partial = checkpoint["partial_epoch"]
        step = partial.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise CheckpointError(f"{path}: partial_epoch has no positive step; {fix}")
        if not isinstance(partial.get("loss_sum"), torch.Tensor) or partial["loss_sum"].numel() != 1:
            raise CheckpointError(f"{path}: partial_epoch has no loss_sum tensor; {fix}")
        for key in ("epoch_rng_state", "rng_state"):
            _check_rng_state(partial.get(key), f"partial_epoch's {key}", path, fix)
    shape = checkpoint.get("metadata", {}).get("image_shape")
    if shape is not None and not (isinstance(shape, (list, tuple)) and len(shape) == 2 and all(
            isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in shape)):
        raise CheckpointError(
            f"{path}: metadata's image_shape should be None or [height, width], not "
            f"{_describe(shape)}; {fix}")
    seed = checkpoint.get("metadata", {}).get("data_seed")
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)
                                 and 0 <= seed <= DATA_SEED_MAX):
        raise CheckpointError(
            f"{path}: metadata's data_seed should be an integer in [0, 2**63 - 1] (the seed "
            f"torch's generators take), not {_describe(seed)}; {fix}")
    non_finite = non_finite_weights(checkpoint["model_state"])
    if non_finite:
        if verb == "save":
            raise CheckpointError(
                f"refusing to save a checkpoint whose weights hold NaN or inf (in {non_finite[0]}); "
                "the last checkpoint written is kept")
        raise CheckpointError(
            f"{path} holds NaN or infinite weights (in {non_finite[0]}, {len(non_finite)} tensors "
            "in all), which give meaningless samples and scores; retrain with a smaller "
            "--learning-rate or --clip-norm, or point to another checkpoint"
        )


def _is_plain(value: Any) -> bool:
    """True for None, bool, int, float, str and lists, tuples and str-keyed dicts of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_plain(item) for key, item in value.items())
    return False


def _check_rng_state(state: Any, what: str, path: Path, fix: str) -> None:
    """A generator state as :func:`torch.get_rng_state` gives it (and CUDA ones, if any)."""
    expected = torch.get_rng_state()
    tensor = state.get("torch") if isinstance(state, dict) else None
    if not (isinstance(tensor, torch.Tensor) and tensor.dtype == torch.uint8
            and tensor.shape == expected.shape):
        raise CheckpointError(
            f"{path}: {what} lacks the torch generator's state (a uint8 tensor of "
            f"{expected.numel()} bytes); {fix}")
    cuda = state.get("cuda", [])
    if not (isinstance(cuda, list) and all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8
                                           for t in cuda)):
        raise CheckpointError(f"{path}: {what}'s CUDA generator states are not byte tensors; {fix}")


def require_keys(checkpoint: dict[str, Any], keys: tuple[str, ...], path: str | os.PathLike,
                 purpose: str) -> None:
    """Raise :class:`CheckpointError` naming the first of ``keys`` the checkpoint lacks for ``purpose``."""
    missing = [key for key in keys if key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"{path} holds no {', '.join(missing)}, which {purpose} needs (it was saved with "
            "only a model's weights); start a new run with --overwrite, or use the checkpoint "
            "with `ppl-vae sample`"
        )


def check_same_config(expected: dict[str, Any], found: dict[str, Any], what: str) -> None:
    """Raise :class:`CheckpointError` naming the first field where two configs differ."""
    for key in sorted(set(expected) | set(found)):
        if expected.get(key) != found.get(key):
            raise CheckpointError(
                f"the checkpoint's {what} differs in {key!r}: checkpoint has "
                f"{found.get(key)!r}, this run has {expected.get(key)!r}. Use the same settings, "
                "or a new --out folder to start afresh."
            )
