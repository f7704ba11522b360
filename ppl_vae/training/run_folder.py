"""What a training run needs of its output folder, beyond :mod:`ppl_vae.storage`.

:mod:`ppl_vae.storage` holds a run folder (one writer under an ``fcntl`` lock,
a manifest of the files ppl_vae wrote, nothing else ever replaced or deleted)
and writes every file atomically; this module adds what is particular to
training: the metrics file, the files of a training folder written before
manifests existed (adopted on ``--resume`` and ``--overwrite``), the decorator
that holds ``train``'s ``out_dir``, and the checks of free space and
permissions before the first epoch.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ppl_vae.checkpoint import CHECKPOINT_NAME
from ppl_vae.errors import ConfigError
from ppl_vae.storage import atomic_write_text, hold

#: One JSON line per epoch of a training run.
METRICS_NAME = "metrics.jsonl"
#: Files of a training folder written before manifests existed: adopted by --resume and
#: --overwrite when the folder holds a checkpoint.pt and no manifest.
LEGACY_TRAIN_FILES = (CHECKPOINT_NAME, METRICS_NAME, "summary.json", "samples.png")


def holding_out_dir(owner: str, names: tuple[str, ...]) -> Callable:
    """Decorate a function with ``out_dir``, ``resume`` and ``overwrite`` keywords to hold ``out_dir``.

    Only the main process of a distributed run holds the folder. A training
    folder written before manifests existed is adopted (:data:`LEGACY_TRAIN_FILES`).
    """
    adopt = LEGACY_TRAIN_FILES if owner == "train" else ()

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from ppl_vae.training.distributed import current_world

            out_dir = kwargs.get("out_dir")
            if out_dir is None or not current_world().is_main:
                return function(*args, **kwargs)
            with hold(out_dir, owner, names, resume=kwargs.get("resume", False),
                      overwrite=kwargs.get("overwrite", False), adopt=adopt):
                return function(*args, **kwargs)

        return wrapper

    return decorate


def write_metrics(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """Write ``metrics.jsonl`` atomically: one JSON line per epoch of ``history``."""
    atomic_write_text(out_dir / METRICS_NAME, "".join(json.dumps(r) + "\n" for r in history))


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """About how large a checkpoint is: the parameters and Adam's two moments, plus 1 MiB."""
    return 3 * sum(p.numel() * p.element_size() for p in model.parameters()) + 2**20


def prepare_out_dir(out_dir: Path, model: torch.nn.Module, resume: bool, overwrite: bool) -> None:
    """Check, before any training, that checkpoints can be written to ``out_dir``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(
            f"cannot write to {out_dir} ({error.strerror}); choose a writable --out folder"
        ) from None
    # The new checkpoint is written beside the old one before it replaces it.
    needed = 2 * checkpoint_bytes(model)
    free = shutil.disk_usage(out_dir).free
    if free < needed:
        raise ConfigError(
            f"only {free / 2**20:.1f} MiB free in {out_dir}, and checkpoints of this model need "
            f"about {needed / 2**20:.1f} MiB; free some space or choose another --out folder"
        )
    exists = (out_dir / CHECKPOINT_NAME).exists()
    if exists and not (resume or overwrite):
        raise ConfigError(
            f"{out_dir} already holds a checkpoint; pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out folder"
        )
    if resume and not exists:
        raise ConfigError(f"nothing to resume: {out_dir} holds no {CHECKPOINT_NAME}")


__all__ = ["LEGACY_TRAIN_FILES", "METRICS_NAME", "checkpoint_bytes", "holding_out_dir",
           "prepare_out_dir", "write_metrics"]
