"""Run-folder files reached safely: nothing inside a folder can make ppl_vae act outside it.

A run folder's own files (the manifest, the lock, a comparison's results) can
be edited by anyone who can write into the folder, or arrive in a downloaded
folder. So every path a run folder writes or deletes comes from
:func:`member`, which accepts one plain file name directly inside the folder
and refuses anything standing there that is not a regular file (a symbolic
link, a folder, a named pipe, a device); it never follows a link. Every read
of a run-folder file goes through :func:`read_regular`, which opens without
following a link and without blocking on a pipe, and reads only a regular
file of bounded size.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ppl_vae.errors import ConfigError

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"),
          (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a device file"),
          (stat.S_ISBLK, "a device file"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str | None:
    """What a file of ``mode`` (from ``lstat``) is when it is not a regular file, else None."""
    return next((what for test, what in _KINDS if test(mode)), None)


def name_problem(name: object) -> str | None:
    """Why ``name`` is not one plain file name directly inside a folder (a phrase), or None."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a file name"
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        return "is not a file name directly inside the folder"
    if any(char in name for char in "*?["):
        return "holds a wildcard character"
    return None


def member(folder: str | os.PathLike, name: object, fix: str, *, to_delete: bool = True) -> Path:
    """``folder/name``, once ``name`` is a plain file name and nothing but a regular file stands there.

    A file about to be written may have anything standing at its path: the
    atomic rename that writes it replaces a link without following it, and
    fails on a folder (``to_delete=False`` checks the name only).

    Parameters
    ----------
    folder : path-like
        The run folder.
    name : object
        A file name, as found in a manifest or given by the library.
    fix : str
        What the user can do, ending the one-line message.
    to_delete : bool
        Also refuse a link, folder, pipe or device standing at the path.

    Returns
    -------
    Path
        The path of the file, which may not exist yet.

    Raises
    ------
    ConfigError
        If ``name`` is not one plain file name (``..``, ``/``, an absolute
        path, a wildcard, not a string), or a link, folder, pipe or device
        stands at that path.
    """
    problem = name_problem(name)
    if problem is not None:
        raise ConfigError(f"{folder}: {str(name)[:80]!r} {problem}; {fix}")
    path = Path(folder) / str(name)
    if not to_delete:
        return path
    try:
        kind = file_kind(os.lstat(path).st_mode)
    except FileNotFoundError:
        return path
    if kind is not None:
        raise ConfigError(f"{path} is {kind}, not a file ppl_vae wrote, so ppl_vae leaves it "
                          f"alone; {fix}")
    return path


def remove_member(folder: str | os.PathLike, name: object, fix: str) -> None:
    """Delete the regular file ``folder/name`` (see :func:`member`); a missing file is no error."""
    member(folder, name, fix).unlink(missing_ok=True)


def read_regular(path: str | os.PathLike, max_bytes: int, fix: str) -> bytes:
    """The bytes of ``path``, read only if it is a regular file of at most ``max_bytes``.

    The file is opened without following a symbolic link and without waiting
    for a writer of a named pipe, and checked on the open descriptor.

    Raises
    ------
    ConfigError
        Naming the path and what it is instead (missing, a link, a pipe, a
        device, a folder, too large), then ``fix``.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise ConfigError(f"{path} {_open_problem(path, error)}; {fix}") from None
    info = os.fstat(fd)
    kind = file_kind(info.st_mode)
    if kind is not None:
        os.close(fd)
        raise ConfigError(f"{path} is {kind}, not a regular file; {fix}")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if info.st_size > max_bytes or len(data) > max_bytes:
        raise ConfigError(f"{path} is larger than the {max_bytes / 2**20:g} MiB such a file "
                          f"can hold; {fix}")
    return data


def _open_problem(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "is a symbolic link, which ppl_vae does not follow here"
    if error.errno == errno.ENOENT:
        return "does not exist"
    return f"cannot be read ({error.strerror})"


__all__ = ["file_kind", "member", "name_problem", "read_regular", "remove_member"]
