"""Run folders: one writer at a time, a manifest of what ppl_vae wrote, nothing else touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ppl_vae.errors import ConfigError
from ppl_vae.storage import LOCK_NAME, MANIFEST_NAME, atomic_write_text, claim_for_write, hold
from ppl_vae.training.run_folder import LEGACY_TRAIN_FILES

ROOT = Path(__file__).resolve().parents[2]


def _holder(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder`` until it is killed; returns once it holds it."""
    script = textwrap.dedent(f"""
        import sys, time
        from ppl_vae.storage import hold
        with hold({str(folder)!r}, "train"):
            print("held", flush=True)
            time.sleep(120)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_writer_is_refused_with_the_holders_pid_and_kill_9_leaves_no_stale_lock(tmp_path):
    process = _holder(tmp_path / "run")
    try:
        with pytest.raises(ConfigError, match=f"in use by another ppl-vae run \\(process {process.pid}\\)"):
            with hold(tmp_path / "run", "train"):
                pass
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    with hold(tmp_path / "run", "train") as folder:  # the OS released the dead holder's lock
        assert (folder.path / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_holding_is_reentrant_within_one_process(tmp_path):
    with hold(tmp_path, "train") as outer, hold(tmp_path, "train") as inner:
        assert inner is outer
    assert not (tmp_path / LOCK_NAME).exists()


def test_every_write_inside_a_held_folder_is_recorded_before_it_lands(tmp_path):
    with hold(tmp_path, "train") as folder:
        atomic_write_text(tmp_path / "summary.json", "{}")
        manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
        assert manifest["files"] == {"summary.json": "train"} and manifest["tag"] == folder.tag
    assert claim_for_write(tmp_path / "other.txt") is None  # not held any more: not recorded


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_users_file_is_never_replaced_even_with_overwrite(tmp_path, overwrite):
    (tmp_path / "summary.json").write_text("mine")
    with pytest.raises(ConfigError, match="summary.json was not written by ppl_vae.*move it away"):
        with hold(tmp_path, "train", ("checkpoint.pt", "summary.json"), overwrite=overwrite):
            pass
    assert (tmp_path / "summary.json").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no lock, no manifest


def test_a_users_file_that_appears_during_the_run_is_not_replaced(tmp_path):
    with hold(tmp_path, "train"):
        (tmp_path / "samples.png").write_text("mine")
        with pytest.raises(ConfigError, match="not written by ppl_vae"):
            atomic_write_text(tmp_path / "samples.png", "generated")
    assert (tmp_path / "samples.png").read_text() == "mine"


def test_overwrite_removes_the_previous_runs_files_and_nothing_else(tmp_path):
    with hold(tmp_path, "train"):
        for name in ("checkpoint.pt", "samples.png", "summary.json"):
            atomic_write_text(tmp_path / name, "old run")
    with hold(tmp_path, "compare"):
        atomic_write_text(tmp_path / "comparison.json", "a comparison")
    (tmp_path / "notes.txt").write_text("mine")
    with hold(tmp_path, "train", ("checkpoint.pt", "summary.json"), overwrite=True):
        atomic_write_text(tmp_path / "checkpoint.pt", "new run")
        atomic_write_text(tmp_path / "summary.json", "new run")
    names = sorted(p.name for p in tmp_path.iterdir())  # the old model's comparison went too
    assert names == [MANIFEST_NAME, "checkpoint.pt", "notes.txt", "summary.json"]
    files = json.loads((tmp_path / MANIFEST_NAME).read_text())["files"]
    assert files == {"checkpoint.pt": "train", "summary.json": "train"}


def test_a_new_comparison_replaces_only_the_old_comparison(tmp_path):
    with hold(tmp_path, "train"):
        atomic_write_text(tmp_path / "checkpoint.pt", "the run")
    with hold(tmp_path, "compare", overwrite=True):
        atomic_write_text(tmp_path / "pair.png", "old comparison, latent 2")
    with hold(tmp_path, "compare", overwrite=True):
        atomic_write_text(tmp_path / "trace.png", "new comparison")
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME, "checkpoint.pt",
                                                          "trace.png"]


def test_only_the_temporaries_of_ppl_vae_runs_are_removed(tmp_path):
    with hold(tmp_path, "train") as folder:
        atomic_write_text(tmp_path / "checkpoint.pt", "x")
        tag = folder.tag
    ours = tmp_path / f".checkpoint.pt.{tag}.tmp"  # as a run killed mid-write leaves it
    theirs = tmp_path / ".checkpoint.pt.k3j2x.tmp"  # the user's, same pattern as mkstemp's
    ours.write_text("partial")
    theirs.write_text("mine")
    with hold(tmp_path, "train", resume=True):
        pass
    assert not ours.exists() and theirs.read_text() == "mine"


def test_a_training_folder_older_than_manifests_is_adopted_only_when_asked(tmp_path):
    for name in ("checkpoint.pt", "metrics.jsonl", "notes.txt"):
        (tmp_path / name).write_text("an old run")
    with pytest.raises(ConfigError, match="checkpoint.pt was not written by ppl_vae"):
        with hold(tmp_path, "train", ("checkpoint.pt",), resume=True):
            pass
    with hold(tmp_path, "train", ("checkpoint.pt",), resume=True, adopt=LEGACY_TRAIN_FILES) as folder:
        assert folder.files == {"checkpoint.pt": "train", "metrics.jsonl": "train"}


def test_a_failed_run_leaves_no_folder_and_an_existing_folder_as_it_was(tmp_path):
    target = tmp_path / "new" / "deeper"
    with pytest.raises(RuntimeError), hold(target, "train"):
        raise RuntimeError("diverged before the first checkpoint")
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(RuntimeError), hold(existing, "train"):
        raise RuntimeError("nothing to resume")
    assert list(existing.iterdir()) == []


def test_a_folder_that_is_a_file_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot write to"):
        with hold(tmp_path / "file", "train"):
            pass


def test_a_damaged_manifest_is_refused_not_ignored(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ConfigError, match="cannot be read"):
        with hold(tmp_path, "train"):
            pass
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_file_system_without_locks_warns_and_carries_on(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(RuntimeWarning, match="does not support locks"), hold(tmp_path, "train"):
        atomic_write_text(tmp_path / "summary.json", "{}")
    assert (tmp_path / "summary.json").exists()
