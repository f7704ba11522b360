"""Checkpoint files: atomic writes and safe, checked loads."""

from __future__ import annotations

import pytest
import torch

from ppl_vae.checkpoint import (
    FORMAT_VERSION,
    atomic_write,
    check_same_config,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from ppl_vae.errors import CheckpointError
from ppl_vae.models import VAE


def minimal_checkpoint() -> dict:
    vae = VAE(4, 2, hidden_dims=(3,))
    return {"model_class": "VAE", "model_config": vae.config(), "model_state": vae.state_dict()}


def test_round_trip_loads_with_weights_only(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, minimal_checkpoint())
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION
    loaded = load_checkpoint(tmp_path)  # a folder resolves to its checkpoint.pt
    assert loaded["model_config"] == minimal_checkpoint()["model_config"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write(path, lambda handle: handle.write(b"good"))

    def crash_halfway(handle):
        handle.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, crash_halfway)
    assert path.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nowhere")


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04 truncated"])
def test_corrupt_checkpoint(tmp_path, content):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_truncated_real_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, minimal_checkpoint())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


class ForeignPayload:
    """Any class outside torch's allow-list: unpickling it could run arbitrary code."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    payload = {**minimal_checkpoint(), "format_version": FORMAT_VERSION,
               "extra": ForeignPayload()}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(path)


def test_foreign_dictionary_and_other_version(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a ppl_vae checkpoint"):
        load_checkpoint(path)
    torch.save({**minimal_checkpoint(), "format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(path)


def test_config_mismatch_names_the_field():
    with pytest.raises(CheckpointError, match="'latent_dim'.*checkpoint has 2.*this run has 3"):
        check_same_config({"latent_dim": 3, "data_dim": 4}, {"latent_dim": 2, "data_dim": 4}, "model")


def test_stale_temporaries_of_the_named_files_are_removed_and_nothing_else(tmp_path):
    stale = [tmp_path / ".samples.png.k3j2.tmp", tmp_path / ".summary.json.x9.tmp"]
    kept = [tmp_path / ".other.png.k3j2.tmp", tmp_path / "samples.png", tmp_path / "summary.json"]
    for path in stale + kept:
        path.write_text("x")
    remove_stale_temporaries(tmp_path, ("samples.png", "summary.json"))
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
