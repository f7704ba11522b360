"""Checkpoint files: atomic writes and safe, checked loads."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from ppl_vae.checkpoint import (
    FORMAT_VERSION,
    RESUME_KEYS,
    check_same_config,
    content_digest,
    load_checkpoint,
    require_keys,
    save_checkpoint,
)
from ppl_vae.errors import CheckpointError
from ppl_vae.models import VAE
from ppl_vae.storage import atomic_write, remove_stale_temporaries


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


# ----- integrity: a SHA-256 of the content, verified on load (issue 14, item 5) -----------------


def _flip_one_bit_inside(path, needle: bytes) -> None:
    """Flip the lowest bit of the first byte of ``needle`` in the file (a tensor's stored bytes)."""
    raw = bytearray(path.read_bytes())
    at = raw.find(needle)
    assert at > 0, "the tensor's bytes were not found in the file"
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


def test_a_single_flipped_bit_in_a_weight_is_reported_as_damage(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint = minimal_checkpoint()
    weight = max(checkpoint["model_state"].values(), key=torch.numel)
    save_checkpoint(path, checkpoint)
    assert load_checkpoint(path)["sha256"] == content_digest(load_checkpoint(path))
    _flip_one_bit_inside(path, weight.numpy().tobytes())
    # torch itself loads the damaged file without complaint: only the digest notices.
    torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError, match=r"checkpoint.pt is damaged \(checksum mismatch\)"):
        load_checkpoint(path)


def test_digest_ignores_insertion_order_and_sees_every_value():
    checkpoint = {**minimal_checkpoint(), "epoch": 3, "history": [{"test_elbo": -1.5}]}
    reordered = dict(reversed(list(checkpoint.items())))
    assert content_digest(checkpoint) == content_digest(reordered)
    changed = {**checkpoint, "history": [{"test_elbo": -1.5000001}]}
    assert content_digest(changed) != content_digest(checkpoint)


def test_a_checkpoint_of_the_current_format_without_a_digest_still_loads(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({**minimal_checkpoint(), "format_version": FORMAT_VERSION}, path)  # pre-digest file
    assert load_checkpoint(path)["model_class"] == "VAE"


# ----- schema: one place, one clear error per problem (item 6) --------------------------------

WRONG_FIELDS = [
    ("format_version", torch.tensor(1), "format_version .*not an integer"),
    ("format_version", "1", "format_version .*not an integer"),
    ("model_class", 7, "model_class should be a str"),
    ("model_config", [1, 2], "model_config should be a dict"),
    ("model_state", torch.zeros(3), "model_state should be a dict"),
    ("model_state", {"w": [1.0]}, "model_state should map parameter names to tensors"),
    ("metadata", "mnist", "metadata should be a dict"),
    ("svi_config", None, "svi_config should be a dict"),
    ("optimizer_state", [], "optimizer_state should be a dict"),
    ("rng_state", {"cuda": []}, "rng_state lacks the torch generator"),
    ("history", {"epoch": 1}, "history should be a list"),
    ("history", [1, 2], "history should be a list of per-epoch dicts"),
    ("epoch", 2.5, "epoch should be a int"),
    ("epoch", True, "epoch should be a int"),
    ("epoch", -1, "epoch is -1"),
    ("sha256", 12, r"damaged \(checksum mismatch\)"),
]


@pytest.mark.parametrize("key, value, message", WRONG_FIELDS)
def test_each_mistyped_field_gets_its_own_message(tmp_path, key, value, message):
    path = tmp_path / "checkpoint.pt"
    torch.save({**minimal_checkpoint(), "format_version": FORMAT_VERSION, key: value}, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_resume_needs_more_than_the_required_keys_and_says_which():
    with pytest.raises(CheckpointError, match="holds no optimizer_state.*which --resume needs"):
        require_keys(minimal_checkpoint(), RESUME_KEYS, "checkpoint.pt", "--resume")


# ----- non-finite weights: never written, never used (item 7) -----------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_never_written(tmp_path, bad):
    checkpoint = minimal_checkpoint()
    name = next(iter(checkpoint["model_state"]))
    checkpoint["model_state"][name][0] = bad
    with pytest.raises(CheckpointError, match=f"refusing to save.*NaN or inf.*{name}"):
        save_checkpoint(tmp_path / "checkpoint.pt", checkpoint)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_weights_are_refused_on_load(tmp_path):
    checkpoint = {**minimal_checkpoint(), "format_version": FORMAT_VERSION}
    name = next(iter(checkpoint["model_state"]))
    checkpoint["model_state"][name][0] = float("nan")
    checkpoint["sha256"] = content_digest(checkpoint)  # intact file, bad weights
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=f"NaN or infinite weights \\(in {name}"):
        load_checkpoint(tmp_path)


def test_output_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.bin", lambda handle: handle.write(b"x"))
        os.umask(0o077)
        atomic_write(tmp_path / "b.bin", lambda handle: handle.write(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o600
