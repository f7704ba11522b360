"""Output folders that one run holds at a time and that never lose a file ppl_vae did not write.

A run folder (``ppl-vae train --out``, ``ppl-vae compare --out``, the
``out_dir`` of :func:`ppl_vae.training.train`) is held by one process at a
time: :func:`hold` takes an exclusive ``fcntl.flock`` on ``.ppl_vae.lock``
inside it, with the holder's PID written into the file. The operating system
releases the lock when the process ends, however it ends, so ``kill -9`` never
leaves a stale lock. A second writer gets one line naming the holder's PID.
Readers (``sample``, ``evaluate``) take no lock: every file is replaced
atomically, so they always read a complete checkpoint.

``.ppl_vae_manifest.json`` lists the files ppl_vae wrote into the folder and
which command wrote them. A name is recorded *before* its file is written, so a
killed run never leaves a file the manifest does not know. Nothing outside the
manifest is ever replaced or deleted, with or without ``--overwrite``;
``--overwrite`` removes the previous run's files when the new run starts (for
``train``: every file of the manifest, comparisons of the old model included),
so none of them is left stale beside the new run. Every write into a held folder
goes through :func:`ppl_vae.checkpoint.atomic_write`, which asks
:func:`claim_for_write` for the run's temporary-file tag: temporary files are
named ``.NAME.TAG.tmp`` with a random tag stored in the manifest, and a later
run deletes only temporaries with that tag.

A run that fails before it wrote anything leaves the folder as it found it:
the lock file, the manifest and any folder it created are removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from ppl_vae.checkpoint import CHECKPOINT_NAME, atomic_write_text, temporary_name
from ppl_vae.errors import ConfigError

#: One JSON line per epoch of a training run.
METRICS_NAME = "metrics.jsonl"
LOCK_NAME = ".ppl_vae.lock"
MANIFEST_NAME = ".ppl_vae_manifest.json"
MANIFEST_FORMAT = 1
#: Files of a training folder written before manifests existed: adopted by --resume and
#: --overwrite when the folder holds a checkpoint.pt and no manifest.
LEGACY_TRAIN_FILES = (CHECKPOINT_NAME, "metrics.jsonl", "summary.json", "samples.png")

_HELD: dict[Path, RunFolder] = {}
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


class RunFolder:
    """A folder this process holds: its lock, its manifest and the names it may write.

    Use :func:`hold` to get one; the attributes are read-only for callers.

    Attributes
    ----------
    path : Path
        The folder.
    owner : str
        The command whose run holds it (``"train"``, ``"compare"``).
    tag : str
        This run's temporary-file tag.
    files : dict of str to str
        Every file of the manifest and the command that wrote it.
    written : set of str
        The names this run has written (or is writing).
    """

    def __init__(self, path: Path, owner: str, lock_fd: int, manifest: dict[str, Any] | None,
                 created: list[Path]) -> None:
        self.path = path
        self.owner = owner
        self.tag = secrets.token_hex(8)
        self.files: dict[str, str] = dict(manifest["files"]) if manifest else {}
        self.written: set[str] = set()
        self._lock_fd = lock_fd
        self._had_manifest = manifest is not None
        self._created = created
        self._depth = 1

    def check_names(self, names: Iterable[str]) -> None:
        """Refuse, in one line, to write any of ``names`` that exists but was not written by ppl_vae."""
        for name in names:
            target = self.path / name
            if name not in self.files and (target.exists() or target.is_symlink()):
                raise ConfigError(
                    f"{target} was not written by ppl_vae, and ppl_vae never replaces or deletes "
                    "files it did not write (not even with --overwrite); move it away, or choose "
                    "another --out folder"
                )

    def claim(self, name: str) -> str:
        """Record ``name`` as written by this run (before it is written); return the temporary-file tag."""
        self.check_names([name])
        if self.files.get(name) != self.owner or name not in self.written:
            self.files[name] = self.owner
            self.written.add(name)
            self._write_manifest()
        return self.tag

    def remove_previous(self, every_command: bool) -> None:
        """Delete the files ppl_vae wrote before: all of them, or only this command's.

        A new training run replaces everything (a comparison of the old model
        would be stale beside it); a new comparison replaces the old comparison.
        """
        previous = [name for name, owner in self.files.items()
                    if every_command or owner == self.owner]
        for name in previous:
            try:
                (self.path / name).unlink(missing_ok=True)
            except OSError as error:
                raise ConfigError(
                    f"cannot remove {self.path / name} of the previous run ({error.strerror}); "
                    "remove it yourself, or choose another --out folder") from None
            del self.files[name]
        if previous:
            self._write_manifest()

    def _write_manifest(self) -> None:
        manifest = {"format": MANIFEST_FORMAT, "tag": self.tag, "files": self.files}
        atomic_write_text(self.path / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n",
                          tag=self.tag)
        self._had_manifest = True

    def release(self, succeeded: bool) -> None:
        """Unlock; after a run that wrote nothing, leave the folder as it was found."""
        if not succeeded and not self.written and not self.files:
            with contextlib.suppress(OSError):
                (self.path / MANIFEST_NAME).unlink(missing_ok=True)
            self._had_manifest = False
        # Unlink while still holding the lock: a waiting process then finds a new file (see hold).
        with contextlib.suppress(OSError):
            (self.path / LOCK_NAME).unlink(missing_ok=True)
        os.close(self._lock_fd)
        if not succeeded and not self.written:
            _remove_empty(self._created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a run created, innermost first, stopping at the first non-empty one."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def _read_manifest(path: Path) -> dict[str, Any] | None:
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if not (isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in files.items())):
            raise ValueError("files is not a mapping of names to commands")
        if not isinstance(manifest.get("tag", ""), str):
            raise ValueError("tag is not a string")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"{manifest_path}, the list of files ppl_vae wrote there, cannot be read ({error}); "
            "choose another --out folder, or delete it if every file in the folder may be replaced"
        ) from None
    return manifest


def _make_folder(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents; return the folders created, innermost first."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    path.mkdir(parents=True, exist_ok=True)
    return missing


def _lock(path: Path) -> int:
    """An open descriptor of ``path/.ppl_vae.lock`` holding an exclusive lock, the PID written in."""
    lock_path = path / LOCK_NAME
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in _NO_LOCKS:  # e.g. some network file systems
                warnings.warn(
                    f"cannot lock {path} ({error.strerror}): the file system does not support "
                    "locks, so make sure no other ppl-vae run writes into it", RuntimeWarning,
                    stacklevel=2)
                break
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            try:
                holder = lock_path.read_text().strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise ConfigError(
                f"{path} is in use by another ppl-vae run (process {holder}); wait for it to "
                "finish or stop it, or choose another --out folder"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file after we opened it: lock the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _open(path: Path, owner: str, names: Iterable[str], resume: bool, overwrite: bool) -> RunFolder:
    try:
        created = _make_folder(path)
        fd = _lock(path)
    except OSError as error:
        raise ConfigError(
            f"cannot write to {path} ({error.strerror or error}); choose a writable --out folder"
        ) from None
    try:
        manifest = _read_manifest(path)
        if manifest is None and (resume or overwrite) and owner == "train":
            legacy = {name: owner for name in LEGACY_TRAIN_FILES if (path / name).is_file()}
            manifest = {"files": legacy} if CHECKPOINT_NAME in legacy else None
        folder = RunFolder(path, owner, fd, manifest, created)
        if manifest and manifest.get("tag"):  # temporaries of a run that was killed
            for stale in path.glob(f".*.{manifest['tag']}.tmp"):
                stale.unlink(missing_ok=True)
        for stale in path.glob(f".{MANIFEST_NAME}.*.tmp"):  # ppl_vae's own name
            stale.unlink(missing_ok=True)
        folder.check_names(names)
        if overwrite:
            folder.remove_previous(every_command=owner == "train")
    except BaseException:
        with contextlib.suppress(OSError):
            (path / LOCK_NAME).unlink(missing_ok=True)  # still locked: see RunFolder.release
        os.close(fd)
        _remove_empty(created)
        raise
    return folder


@contextlib.contextmanager
def hold(path: str | os.PathLike, owner: str, names: Iterable[str] = (), *, resume: bool = False,
         overwrite: bool = False) -> Iterator[RunFolder]:
    """Hold a run folder for the duration of a ``with`` block.

    Parameters
    ----------
    path : path-like
        The folder; created (with its parents) if missing.
    owner : str
        The command writing into it; ``overwrite`` removes only that command's files.
    names : iterable of str
        Files the run will write: refused at once if one exists and ppl_vae did
        not write it.
    resume : bool
        The run continues the previous one (its files may be replaced).
    overwrite : bool
        Remove the files of the previous run first: every file of the manifest
        for ``owner == "train"``, else only those ``owner`` wrote.

    Yields
    ------
    RunFolder

    Raises
    ------
    ConfigError
        If another process holds the folder, it cannot be created or written,
        or one of ``names`` belongs to someone else.

    Notes
    -----
    Re-entrant: a nested ``hold`` of a folder this process already holds
    checks ``names`` and yields the same :class:`RunFolder`.
    """
    held = _HELD.get(Path(path).resolve())
    if held is not None:
        held.check_names(names)
        held._depth += 1
        try:
            yield held
        finally:
            held._depth -= 1
        return
    folder = _open(Path(path), owner, names, resume, overwrite)
    key = folder.path.resolve()
    _HELD[key] = folder
    succeeded = False
    try:
        yield folder
        succeeded = True
    finally:
        del _HELD[key]
        folder.release(succeeded)


def claim_for_write(path: str | os.PathLike) -> str | None:
    """The temporary-file tag for writing ``path``, recording it, if its folder is held; else None."""
    path = Path(path)
    folder = _HELD.get(path.parent.resolve())
    if folder is None or path.name in (MANIFEST_NAME, LOCK_NAME):
        return None
    return folder.claim(path.name)


def holding_out_dir(owner: str, names: tuple[str, ...]) -> Callable:
    """Decorate a function with ``out_dir``, ``resume`` and ``overwrite`` keywords to hold ``out_dir``.

    Only the main process of a distributed run holds the folder.
    """

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from ppl_vae.training.distributed import current_world

            out_dir = kwargs.get("out_dir")
            if out_dir is None or not current_world().is_main:
                return function(*args, **kwargs)
            with hold(out_dir, owner, names, resume=kwargs.get("resume", False),
                      overwrite=kwargs.get("overwrite", False)):
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


__all__ = ["LOCK_NAME", "MANIFEST_NAME", "METRICS_NAME", "RunFolder", "checkpoint_bytes",
           "claim_for_write", "hold", "holding_out_dir", "prepare_out_dir", "temporary_name",
           "write_metrics"]
