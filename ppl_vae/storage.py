"""Atomic writes, run folders (one writer, a manifest of what ppl_vae wrote) and JSON-safe values.

**Atomic writes.** :func:`atomic_write` writes into a temporary file in the
same folder, flushes it to disk and renames it over the old file, so a crash
leaves either the old or the new file, never a truncated one.

**Run folders.** A run folder (``ppl-vae train --out``, ``ppl-vae compare
--out``, the ``out_dir`` of :func:`ppl_vae.training.train`) is held by one
process at a time: :func:`hold` takes an exclusive ``fcntl.flock`` on
``.ppl_vae.lock`` inside it, with the holder's PID written into the file. The
operating system releases the lock when the process ends, however it ends, so
``kill -9`` never leaves a stale lock. A second writer gets one line naming the
holder's PID. Readers (``sample``, ``evaluate``) take no lock: every file is
replaced atomically, so they always read a complete checkpoint.

``.ppl_vae_manifest.json`` lists the files ppl_vae wrote into the folder and
which command wrote them. A name is recorded *before* its file is written, so a
killed run never leaves a file the manifest does not know. Nothing outside the
manifest is ever replaced or deleted, with or without ``--overwrite``;
``--overwrite`` removes the previous run's files when the new run starts (for
``train``: every file of the manifest, comparisons of the old model included),
so none of them is left stale beside the new run. Every write into a held folder
goes through :func:`atomic_write`, which asks :func:`claim_for_write` for the
run's temporary-file tag: temporary files are named ``.NAME.TAG.tmp`` with a
random tag stored in the manifest, and a later run deletes only temporaries
with that tag.

The folder's own files are data, never orders: every name the manifest lists,
every file the run writes or deletes and the lock file are reached through
:func:`ppl_vae.safe_files.member`, which accepts only a plain file name directly
inside the folder and, before a deletion, nothing but a regular file standing
there (a write renames over its path, which replaces a link without following
it). The manifest is read only as a regular file of at most
:data:`MAX_MANIFEST_BYTES`, its tag must be hexadecimal, and a lock file that is
not a small regular file of ppl_vae's own (a link, a hard link, a pipe, a file
with other content) is refused rather than truncated.

A run that fails before it wrote anything leaves the folder as it found it:
the lock file, the manifest and any folder it created are removed.

**JSON.** :func:`json_safe` turns a report's NaN and infinite floats into None,
so that it is valid JSON (a comparison's files, the command line's JSON output).

This module sits at the bottom of the package, beside :mod:`ppl_vae.safe_files`:
:mod:`ppl_vae.checkpoint` writes through it, :mod:`ppl_vae.training.run_folder`
and the command line hold their folders with it, and it imports neither.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import secrets
import stat
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ppl_vae.errors import ConfigError
from ppl_vae.safe_files import member, name_problem, read_regular, remove_member


# ----- atomic writes ----------------------------------------------------------------------


def remove_stale_temporaries(folder: str | os.PathLike, names: tuple[str, ...]) -> None:
    """Delete the temporary files :func:`atomic_write` leaves for ``names`` when its process is killed.

    Deletes every ``.NAME.*.tmp``, whoever wrote it: call it only on folders
    that ppl_vae owns. Run folders use :class:`RunFolder`, which removes only
    the temporaries its own runs created.
    """
    for name in names:
        for stale in Path(folder).glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def temporary_name(path: str | os.PathLike, tag: str) -> Path:
    """The temporary file :func:`atomic_write` uses for ``path`` when given ``tag``."""
    path = Path(path)
    return path.parent / f".{path.name}.{tag}.tmp"


def atomic_write(path: str | os.PathLike, write: Any, tag: str | None = None) -> None:
    """Write a file atomically: ``write(file)`` into a temporary file, fsync, rename.

    The new file gets the permissions the umask allows (as ``open`` would give),
    not the 0600 of ``tempfile.mkstemp``.

    Parameters
    ----------
    path : path-like
        Final location; its folder must exist.
    write : callable
        Called with a binary file object open for writing.
    tag : str, optional
        Name the temporary file ``.NAME.TAG.tmp`` (see :func:`temporary_name`),
        so that its owner can recognize it if the process dies; by default a
        random name. Inside a folder held by :func:`hold` the run's tag is used
        and the file is recorded in its manifest.
    """
    path = Path(path)
    if tag is None:
        tag = claim_for_write(path)
    if tag is None:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    else:
        tmp_name = str(temporary_name(path, tag))
        # A fresh file: never one that stands there already (a link planted in the folder).
        fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
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


def _umask() -> int:
    """The process's umask: from /proc where Linux shows it, else by setting it and back."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # not thread-safe for that instant, hence the /proc route first
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str, tag: str | None = None) -> None:
    """Write a text file atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")), tag)


# ----- run folders: one writer, a manifest ------------------------------------------------


LOCK_NAME = ".ppl_vae.lock"
MANIFEST_NAME = ".ppl_vae_manifest.json"
MANIFEST_FORMAT = 1
#: A manifest lists a few file names; anything larger was not written by ppl_vae.
MAX_MANIFEST_BYTES = 2**20
#: A lock file holds one PID.
MAX_LOCK_BYTES = 32
#: What a run's temporary-file tag looks like (``secrets.token_hex(8)``).
TAG_PATTERN = re.compile(r"[0-9a-f]{1,64}")
_FIX = "choose another --out folder, or delete it if every file in the folder may be replaced"

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
            if name in self.files or name_problem(name):
                member(self.path, name, _FIX, to_delete=False)
            elif os.path.lexists(self.path / name):
                raise ConfigError(
                    f"{self.path / name} was not written by ppl_vae, and ppl_vae never replaces "
                    "or deletes files it did not write (not even with --overwrite); move it away, "
                    "or choose another --out folder"
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
                remove_member(self.path, name, _FIX)
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
            with contextlib.suppress(OSError, ConfigError):
                remove_member(self.path, MANIFEST_NAME, _FIX)
            self._had_manifest = False
        _unlock(self.path, self._lock_fd)
        if not succeeded and not self.written:
            _remove_empty(self._created)


def _unlock(path: Path, fd: int) -> None:
    """Remove the lock file and close it; unlinking while still locked makes a waiter open a new one."""
    with contextlib.suppress(OSError, ConfigError):
        remove_member(path, LOCK_NAME, _FIX)
    os.close(fd)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a run created, innermost first, stopping at the first non-empty one."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def _read_manifest(path: Path) -> dict[str, Any] | None:
    """The folder's manifest, every name in it checked to be a plain file name; None if there is none."""
    manifest_path = path / MANIFEST_NAME
    if not os.path.lexists(manifest_path):
        return None
    fix = f"the list of files ppl_vae wrote there is damaged or not ppl_vae's; {_FIX}"
    text = read_regular(manifest_path, MAX_MANIFEST_BYTES, fix)
    try:
        manifest = json.loads(text)
        problem = _manifest_problem(manifest)
    except (ValueError, RecursionError) as error:
        problem = f"it is not JSON ({str(error)[:80] or type(error).__name__})"
    if problem is not None:
        raise ConfigError(f"{manifest_path} cannot be read: {problem}; {fix}")
    return manifest


def _manifest_problem(manifest: Any) -> str | None:
    """What is wrong with a parsed manifest, or None."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return "it is not a mapping with a mapping of files"
    for name, owner in manifest["files"].items():
        problem = name_problem(name)
        if problem is None and name in (MANIFEST_NAME, LOCK_NAME):
            problem = "is ppl_vae's own bookkeeping"
        if problem is not None:
            return f"it lists {str(name)[:80]!r}, which {problem}"
        if not isinstance(owner, str):
            return f"the command that wrote {name!r} is not a string"
    tag = manifest.get("tag", "")
    if not (tag == "" or (isinstance(tag, str) and TAG_PATTERN.fullmatch(tag))):
        return f"its temporary-file tag {str(tag)[:40]!r} is not hexadecimal"
    return None


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
        fd = _open_lock_file(lock_path)
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
            raise ConfigError(
                f"{path} is in use by another ppl-vae run (process {_holder(lock_path)}); wait "
                "for it to finish or stop it, or choose another --out folder"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.lstat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file after we opened it: lock the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _open_lock_file(lock_path: Path) -> int:
    """Open (or create) the lock file, refusing one that ppl_vae cannot have written.

    A link (symbolic or hard), a pipe or a file holding anything but a PID
    would have another file truncated, or the run hang; none is opened for writing.
    """
    member(lock_path.parent, LOCK_NAME, _FIX)  # no link, folder or pipe stands there
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:  # a link put there since
            raise _not_a_lock(lock_path) from None
        raise
    info = os.fstat(fd)
    if (stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and info.st_size <= MAX_LOCK_BYTES
            and (info.st_size == 0 or os.pread(fd, MAX_LOCK_BYTES, 0).strip().isdigit())):
        return fd
    os.close(fd)
    raise _not_a_lock(lock_path)


def _not_a_lock(lock_path: Path) -> ConfigError:
    return ConfigError(
        f"{lock_path} is not a lock file ppl_vae wrote (a link, a pipe or a file with other "
        f"content), so ppl_vae leaves it alone; remove it if it is not yours, or {_FIX}")


def _holder(lock_path: Path) -> str:
    """The PID written in a held lock file, or "unknown"."""
    try:
        return read_regular(lock_path, MAX_LOCK_BYTES, _FIX).decode("ascii").strip() or "unknown"
    except (ConfigError, UnicodeDecodeError):
        return "unknown"


def _open(path: Path, owner: str, names: Iterable[str], resume: bool, overwrite: bool,
          adopt: tuple[str, ...]) -> RunFolder:
    try:
        created = _make_folder(path)
        fd = _lock(path)
    except OSError as error:
        raise ConfigError(
            f"cannot write to {path} ({error.strerror or error}); choose a writable --out folder"
        ) from None
    try:
        manifest = _read_manifest(path)
        if manifest is None and (resume or overwrite) and adopt:
            legacy = {name: owner for name in adopt if _is_regular(path / name)}
            manifest = {"files": legacy} if adopt[0] in legacy else None
        folder = RunFolder(path, owner, fd, manifest, created)
        if manifest and manifest.get("tag"):  # temporaries of a run that was killed
            _remove_regular(path.glob(f".*.{manifest['tag']}.tmp"))
        _remove_regular(path.glob(f".{MANIFEST_NAME}.*.tmp"))  # ppl_vae's own name
        folder.check_names(names)
        if overwrite:
            folder.remove_previous(every_command=owner == "train")
    except BaseException:
        _unlock(path, fd)
        _remove_empty(created)
        raise
    return folder


def _is_regular(path: Path) -> bool:
    """True for a regular file (not a link to one)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _remove_regular(paths: Iterable[Path]) -> None:
    """Delete those of ``paths`` that are regular files; leave links, folders and pipes alone."""
    for path in paths:
        if _is_regular(path):
            remove_member(path.parent, path.name, _FIX)


@contextlib.contextmanager
def hold(path: str | os.PathLike, owner: str, names: Iterable[str] = (), *, resume: bool = False,
         overwrite: bool = False, adopt: tuple[str, ...] = ()) -> Iterator[RunFolder]:
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
    adopt : tuple of str
        Files a folder written before manifests existed may hold: with
        ``resume`` or ``overwrite``, a folder without a manifest that holds the
        first of them counts those of them it holds as written by ``owner``
        (a training folder's checkpoint and its companions).

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
    folder = _open(Path(path), owner, names, resume, overwrite, adopt)
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


# ----- JSON -------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, recursively (for valid JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


__all__ = ["LOCK_NAME", "MANIFEST_NAME", "RunFolder", "atomic_write", "atomic_write_text",
           "claim_for_write", "hold", "json_safe", "remove_stale_temporaries", "temporary_name"]
