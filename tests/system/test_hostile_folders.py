"""Property: whatever a run folder or a compare folder holds, ppl_vae fails in one line or works,
and never changes a file outside the folder (issue 26).

Hypothesis builds hostile folders: manifests listing names with ``..``, absolute
paths, ``*``, slashes or the wrong types, wildcard or foreign tags, manifests
and lock files that are links (to the user's files or to ``/dev/zero``), hard
links, named pipes, folders, huge sparse files, deeply nested or non-mapping
JSON; compare folders with the same kinds of files and malformed arrays. The
library functions the commands call run in this process (``hold`` and a write,
as ``train`` and ``compare`` do; ``load_compare_results``, as ``explore
--compare`` does); every error must be a :class:`~ppl_vae.errors.PplVaeError`
(the command line's status 2) or an ``OSError`` of the write (also status 2),
of one line. The whole temporary tree outside the folder is checksummed
before and after.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppl_vae.errors import PplVaeError
from ppl_vae.explorer import POSTERIOR_DRAWS_NAME, CompareResults, load_compare_results
from ppl_vae.storage import LOCK_NAME, MANIFEST_NAME, atomic_write_text, hold
from ppl_vae.training.run_folder import LEGACY_TRAIN_FILES

#: Examples per property in the default suite: each builds a small tree of files (milliseconds).
EXAMPLES = 100
#: The slow run's examples.
SLOW_EXAMPLES = 1000
#: Size of a "huge" file; sparse, so it takes no disk space.
HUGE = 300 * 2**20

ABSOLUTE = "<absolute victim>"
HOSTILE_NAMES = st.sampled_from(["../outside/victim.txt", ABSOLUTE, "nested/../../outside/victim.txt",
                                 "*", ".*", "..", ".", "", "a/b", MANIFEST_NAME, LOCK_NAME, "x\0y"])
PLAIN_NAMES = st.sampled_from(["checkpoint.pt", "summary.json", "metrics.jsonl", ".notes.draft.tmp"])
COMMANDS = st.sampled_from(["train", "compare"])
OWNERS = st.one_of(COMMANDS, st.sampled_from([3, None, ["train"]]))
TAGS = st.sampled_from(["*", "", "../x", "draft", 5, None, "a" * 100, ".*"])
#: What a recipe may make hostile; each example perturbs one or two of them in a valid folder,
#: so that every check is reached (a folder hostile everywhere stops at its first problem).
ASPECTS = ("manifest", "names", "owners", "tag", "lock", "standing")
FILE_KINDS = ("absent", "symlink to victim", "hard link to victim", "fifo", "folder", "huge",
              "link to /dev/zero", "dangling link", "nested", "top-level list", "not json")


def _tree(root: Path) -> dict[str, object]:
    """Every entry under ``root``: its kind and content (regular files), link target (links)."""
    entries: dict[str, object] = {}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(folder) / name
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                entries[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(mode):
                entries[str(path)] = f"link to {os.readlink(path)}"
            else:
                entries[str(path)] = stat.S_IFMT(mode)
    return entries


def _outside(root: Path) -> Path:
    """The user's files beside the folder under test."""
    outside = root / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious\n")
    (outside / "abs.txt").write_text("mine\n")
    (outside / ".draft.0123456789abcdef.tmp").write_text("a draft\n")
    return outside


def _place(path: Path, kind: str, victim: Path, text: str) -> None:
    """Put a file of ``kind`` at ``path`` (``text`` for a plain one)."""
    if kind == "symlink to victim":
        path.symlink_to(victim)
    elif kind == "hard link to victim":
        os.link(victim, path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "huge":
        with open(path, "wb") as handle:
            handle.truncate(HUGE)
    elif kind == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "dangling link":
        path.symlink_to(path.parent / "missing")
    elif kind == "nested":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "top-level list":
        path.write_text("[1, 2]")
    elif kind == "not json":
        path.write_text("{not json")
    elif kind == "plain":
        path.write_text(text)


def _one_line(error: BaseException) -> None:
    message = str(error)
    assert message and "\n" not in message, message


@st.composite
def run_folders(draw):
    """A recipe for a hostile run folder and the hold() call a command makes on it."""
    hostile = draw(st.sets(st.sampled_from(ASPECTS), min_size=1, max_size=2))
    names = st.one_of(HOSTILE_NAMES, PLAIN_NAMES, st.text(max_size=6)) if "names" in hostile \
        else PLAIN_NAMES
    files = draw(st.dictionaries(names, OWNERS if "owners" in hostile else COMMANDS, min_size=1,
                                 max_size=4))
    standing = st.lists(st.tuples(
        st.sampled_from(["checkpoint.pt", "summary.json", "metrics.jsonl", ".notes.draft.tmp"]),
        st.sampled_from(("plain", "symlink to victim", "hard link to victim", "fifo", "folder"))),
        min_size=1, max_size=3, unique_by=lambda pair: pair[0])
    return {
        "manifest": draw(st.sampled_from(FILE_KINDS)) if "manifest" in hostile else "plain",
        "files": files,
        "tag": draw(TAGS) if "tag" in hostile else "0123456789abcdef",
        "lock": draw(st.sampled_from(("plain", *FILE_KINDS[1:8])) if "lock" in hostile
                     else st.sampled_from(("absent", "pid"))),
        "standing": draw(standing) if "standing" in hostile else [],
        "owner": draw(COMMANDS),
        "resume": draw(st.booleans()),
        "overwrite": draw(st.booleans()),
        "names": draw(st.lists(st.sampled_from(["checkpoint.pt", "summary.json"]), unique=True)),
    }


def _build_run_folder(root: Path, recipe: dict) -> Path:
    outside = _outside(root)
    victim = outside / "victim.txt"
    run = root / "run"
    run.mkdir()
    files = {str(outside / "abs.txt") if name == ABSOLUTE else name: owner
             for name, owner in recipe["files"].items()}
    manifest = json.dumps({"format": 1, "tag": recipe["tag"], "files": files})
    _place(run / MANIFEST_NAME, recipe["manifest"], victim, manifest)
    _place(run / LOCK_NAME, recipe["lock"], victim, "not a pid\n")
    if recipe["lock"] == "pid":
        (run / LOCK_NAME).write_text("12345\n")
    for name, kind in recipe["standing"]:
        if not os.path.lexists(run / name):
            _place(run / name, kind, victim, "a user's file\n")
    return run


def _hold_and_write(run: Path, recipe: dict) -> None:
    """What train and compare do with their folder: hold it, then write one file into it."""
    try:
        with hold(run, recipe["owner"], recipe["names"], resume=recipe["resume"],
                  overwrite=recipe["overwrite"],
                  adopt=LEGACY_TRAIN_FILES if recipe["owner"] == "train" else ()):
            try:
                atomic_write_text(run / "summary.json", "{}\n")
            except OSError as error:  # e.g. a folder where the file goes: one line, status 2
                assert error.strerror
    except PplVaeError as error:
        _one_line(error)


def _check_run_folder(recipe: dict) -> None:
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        run = _build_run_folder(root, recipe)
        before = _tree(root / "outside")
        _hold_and_write(run, recipe)
        assert _tree(root / "outside") == before


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run_folders())
def test_a_hostile_run_folder_fails_in_one_line_and_touches_nothing_outside(recipe):
    _check_run_folder(recipe)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run_folders())
def test_many_hostile_run_folders(recipe):
    _check_run_folder(recipe)


# ----- compare folders, as explore --compare reads them ----------------------------------------------


GOOD_SUMMARY = {"point_index": [0, 1], "converged": True,
                "per_point": {"encoder_elbo": [-3.0, -4.0], "local_gaussian_elbo": [-2.0, -3.0],
                              "log_px": [-1.0, -2.0]}}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                               max_size=3),
    max_leaves=8)
ARRAYS = {
    "good": lambda: np.zeros((2, 5, 2), np.float32),
    "nan": lambda: np.full((2, 5, 2), np.nan),
    "strings": lambda: np.full((2, 5, 2), "a"),
    "flat": lambda: np.zeros(4),
    "empty": lambda: np.zeros((2, 0, 2)),
    "complex": lambda: np.zeros((2, 5, 2), np.complex64),
    "objects": lambda: np.array([{"a": 1}, None], dtype=object),
}


@st.composite
def compare_folders(draw):
    summary = draw(st.one_of(st.just(GOOD_SUMMARY), JSON_VALUES,
                             st.fixed_dictionaries({"point_index": JSON_VALUES,
                                                    "converged": JSON_VALUES,
                                                    "per_point": JSON_VALUES})))
    return {
        "summary": summary,
        "summary_kind": draw(st.sampled_from(("plain",) * 4 + FILE_KINDS[1:])),
        "draws_kind": draw(st.sampled_from(("plain",) * 4 + FILE_KINDS[1:])),
        "arrays": {key: draw(st.sampled_from(sorted(ARRAYS))) for key in
                   draw(st.lists(st.sampled_from(["point_index", "nuts", "qstar_loc",
                                                  "qstar_scale"]), unique=True))},
    }


def _npz(arrays: dict[str, str]) -> bytes:
    chosen = {key: ARRAYS[kind]() for key, kind in arrays.items()}
    if chosen.get("point_index") is not None and arrays["point_index"] == "good":
        chosen["point_index"] = np.arange(2)
    buffer = io.BytesIO()
    np.savez(buffer, **chosen)
    return buffer.getvalue()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compare_folders())
def test_a_hostile_compare_folder_fails_in_one_line_or_loads_finite_arrays(recipe):
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        victim = _outside(root) / "victim.txt"
        folder = root / "compare"
        folder.mkdir()
        _place(folder / "comparison.json", recipe["summary_kind"], victim,
               json.dumps(recipe["summary"]))
        if recipe["draws_kind"] == "plain":
            (folder / POSTERIOR_DRAWS_NAME).write_bytes(_npz(recipe["arrays"]))
        else:
            _place(folder / POSTERIOR_DRAWS_NAME, recipe["draws_kind"], victim, "")
        before = _tree(root / "outside")
        try:
            results = load_compare_results(folder)
        except PplVaeError as error:
            _one_line(error)
        else:
            assert isinstance(results, CompareResults)
            assert results.nuts.dtype == np.float32 and np.isfinite(results.nuts).all()
            assert all(value is None or np.isfinite(value)
                       for values in results.per_point.values() for value in values)
        assert _tree(root / "outside") == before
