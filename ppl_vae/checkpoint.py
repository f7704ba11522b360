"""Checkpoints: atomic writes, safe loads, and a clear word on every failure.

A checkpoint is a dictionary of tensors and plain Python values, so it loads
with ``torch.load(..., weights_only=True)``: no pickled code runs on load.
Writes go to a temporary file in the same folder, are flushed to disk, and
then renamed over the old file, so a crash leaves either the old or the new
checkpoint, never a truncated one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ppl_vae.errors import CheckpointError

#: Bumped whenever the layout of the checkpoint dictionary changes.
FORMAT_VERSION = 1

REQUIRED_KEYS = ("format_version", "model_class", "model_config", "model_state")

CHECKPOINT_NAME = "checkpoint.pt"


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """Accept a checkpoint file or the training output folder that holds one."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def remove_stale_temporaries(folder: str | os.PathLike, names: tuple[str, ...]) -> None:
    """Delete the temporary files :func:`atomic_write` leaves for ``names`` when its process is killed.

    Call it only where no other process is writing those files.
    """
    for name in names:
        for stale in Path(folder).glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Any) -> None:
    """Write a file atomically: ``write(file)`` into a temporary file, fsync, rename.

    Parameters
    ----------
    path : path-like
        Final location; its folder must exist.
    write : callable
        Called with a binary file object open for writing.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def save_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> None:
    """Save a checkpoint dictionary atomically.

    Parameters
    ----------
    path : path-like
        Target file (conventionally ``OUT/checkpoint.pt``).
    checkpoint : dict
        Must hold :data:`REQUIRED_KEYS` except ``format_version``, which is added.
    """
    checkpoint = {"format_version": FORMAT_VERSION, **checkpoint}
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"refusing to save a checkpoint without {', '.join(missing)}")
    atomic_write(path, lambda handle: torch.save(checkpoint, handle))


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Load and check a checkpoint without executing pickled code.

    Parameters
    ----------
    path : path-like
        A checkpoint file or a training output folder.
    map_location : str or torch.device, optional
        Where to put the tensors (default the CPU).

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, not a ppl_vae checkpoint, holds
        anything but tensors and plain values, or has another format version.
    """
    path = resolve_checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; pass the folder given to `ppl-vae train --out` "
            "or the checkpoint.pt inside it"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            reason = "it contains pickled Python objects, which are refused for safety"
        raise CheckpointError(
            f"cannot read checkpoint {path}: {reason}. It is corrupt, truncated or not "
            "a ppl_vae checkpoint; retrain, or point to another checkpoint."
        ) from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        raise CheckpointError(
            f"{path} is not a ppl_vae checkpoint (expected a dictionary with "
            f"{', '.join(REQUIRED_KEYS)}); point to the checkpoint.pt that `ppl-vae train` wrote"
        )
    if checkpoint["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {checkpoint['format_version']}, this ppl_vae reads "
            f"format {FORMAT_VERSION}; retrain with this version or install the one that wrote it"
        )
    return checkpoint


def check_same_config(expected: dict[str, Any], found: dict[str, Any], what: str) -> None:
    """Raise :class:`CheckpointError` naming the first field where two configs differ."""
    for key in sorted(set(expected) | set(found)):
        if expected.get(key) != found.get(key):
            raise CheckpointError(
                f"the checkpoint's {what} differs in {key!r}: checkpoint has "
                f"{found.get(key)!r}, this run has {expected.get(key)!r}. Use the same settings, "
                "or a new --out folder to start afresh."
            )
