"""Interrupted, killed and starved training runs lose nothing and resume exactly."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ppl_vae import VAE, SVIConfig, load_checkpoint, load_dataset, train
from ppl_vae.errors import CheckpointError, ConfigError, TrainingInterrupted

ROOT = Path(__file__).resolve().parents[2]
CLI_TRAIN = ["-m", "ppl_vae.cli", "train", "--data", "digits", "--latent-dim", "2",
             "--hidden-dims", "64", "--batch-size", "16", "--checkpoint-every", "1", "--quiet",
             "--epochs", "4"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _vae(data) -> VAE:
    torch.manual_seed(0)
    return VAE(data.data_dim, latent_dim=2, hidden_dims=(32,))


def _same_states(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _without_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "wall_time"} for record in history]


def _interrupt_at_step(model: VAE, step: int, signal_number: int) -> None:
    """Make q(z | x) send ``signal_number`` to this process on its ``step``-th use in training."""
    calls = {"count": 0}
    guide_distribution = model.guide_distribution

    def guide_distribution_that_signals(*args, **kwargs):
        if not torch.is_grad_enabled():  # a look at the program or an evaluation, not a step
            return guide_distribution(*args, **kwargs)
        calls["count"] += 1
        if calls["count"] == step:
            os.kill(os.getpid(), signal_number)
        return guide_distribution(*args, **kwargs)

    model.guide_distribution = guide_distribution_that_signals


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_epoch_saves_that_step_and_resume_is_bit_exact(tmp_path, digits, signal_number):
    config = SVIConfig(epochs=3, batch_size=64, binarize="dynamic", seed=3)
    steps_per_epoch = -(-len(digits.train_x) // config.batch_size)
    reference = _vae(digits)
    expected = train(reference, digits.train_x, config, out_dir=tmp_path / "whole", progress=False)

    stopped = _vae(digits)
    _interrupt_at_step(stopped, steps_per_epoch + 5, signal_number)
    with pytest.raises(TrainingInterrupted, match="--resume") as caught:
        train(stopped, digits.train_x, config, out_dir=tmp_path / "cut", progress=False)
    assert caught.value.signal_number == signal_number
    assert signal.getsignal(signal_number) is not None  # the previous handler is back
    saved = load_checkpoint(tmp_path / "cut")
    assert saved["epoch"] == 1 and saved["partial_epoch"]["step"] == 5
    _same_states(saved["model_state"], stopped.state_dict())

    resumed = _vae(digits)
    result = train(resumed, digits.train_x, config, out_dir=tmp_path / "cut", resume=True,
                   progress=False)
    _same_states(resumed.state_dict(), reference.state_dict())
    assert _without_times(result.history) == _without_times(expected.history)


def test_a_signal_without_an_output_folder_says_nothing_was_saved(digits):
    model = _vae(digits)
    _interrupt_at_step(model, 3, signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="nothing was saved"):
        train(model, digits.train_x, SVIConfig(epochs=2), progress=False)


def _run_cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *CLI_TRAIN, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The final parameters of the CLI run every interrupted run must reproduce."""
    out = tmp_path_factory.mktemp("uninterrupted")
    run = _run_cli(["--out", str(out)])
    assert run.wait(timeout=300) == 0, run.communicate()
    return load_checkpoint(out)["model_state"]


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.parametrize("signal_number", [
    signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_cli_stops_cleanly_on_a_real_signal_and_resumes_to_the_same_parameters(
        tmp_path, signal_number, uninterrupted):
    cut = _run_cli(["--out", str(tmp_path / "cut")])
    _wait_for(tmp_path / "cut" / "metrics.jsonl", cut)  # the first epoch is done
    cut.send_signal(signal_number)
    _, stderr = cut.communicate(timeout=120)
    if cut.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert cut.returncode == 128 + signal_number, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert load_checkpoint(tmp_path / "cut")["epoch"] >= 1

    resumed = _run_cli(["--out", str(tmp_path / "cut"), "--resume"])
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    _same_states(load_checkpoint(tmp_path / "cut")["model_state"], uninterrupted)


def _wait_for_new_checkpoint(out: Path, process: subprocess.Popen, timeout: float = 60.0) -> None:
    path = out / "checkpoint.pt"
    before = path.stat().st_mtime_ns if path.exists() else None
    deadline = time.monotonic() + timeout
    while not path.exists() or path.stat().st_mtime_ns == before:
        if process.poll() is not None:
            return
        assert time.monotonic() < deadline, "no new checkpoint appeared"
        time.sleep(0.01)


@pytest.mark.parametrize("delays", [(0.0,), pytest.param((0.0, 0.05, 0.13), marks=pytest.mark.slow)])
def test_kill_9_at_any_moment_leaves_a_loadable_checkpoint_and_resume_still_matches(
        tmp_path, delays, uninterrupted):
    """SIGKILL cannot be caught: what is on disk must be whole, and --resume must carry on."""
    out = tmp_path / "killed"
    run = _run_cli(["--out", str(out)])
    for delay in delays:  # staggered moments after a checkpoint write began
        _wait_for_new_checkpoint(out, run)
        time.sleep(delay)
        run.kill()
        run.communicate()
        checkpoint = load_checkpoint(out)  # never truncated
        metrics = out / "metrics.jsonl"  # written just after the checkpoint: may lag it by one
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        assert [json.loads(line)["epoch"] for line in lines] == list(range(1, len(lines) + 1))
        assert checkpoint["epoch"] - 1 <= len(lines) <= checkpoint["epoch"]
        run = _run_cli(["--out", str(out), "--resume"])
    assert run.wait(timeout=300) == 0, run.communicate()
    assert not list(out.glob(".*.tmp"))
    _same_states(load_checkpoint(out)["model_state"], uninterrupted)


def test_an_unwritable_output_folder_is_refused_before_training(tmp_path, digits, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(ConfigError, match="cannot write to .*Read-only file system"):
        train(_vae(digits), digits.train_x, SVIConfig(epochs=1), out_dir=tmp_path / "out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission bits")
def test_a_read_only_folder_is_refused_before_training(tmp_path, digits):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(ConfigError, match="cannot write to"):
        train(_vae(digits), digits.train_x, SVIConfig(epochs=1), out_dir=folder)


def test_a_full_disk_is_refused_before_training(tmp_path, digits, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    with pytest.raises(ConfigError, match="MiB free"):
        train(_vae(digits), digits.train_x, SVIConfig(epochs=1), out_dir=tmp_path / "out")


def test_a_disk_that_fills_during_training_keeps_the_last_checkpoint(tmp_path, digits, monkeypatch):
    import ppl_vae.checkpoint as checkpoint_module

    real_save, calls = torch.save, {"count": 0}

    def save_until_full(obj, handle, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] > 1:
            handle.write(b"partial bytes")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_until_full)
    out = tmp_path / "out"
    config = SVIConfig(epochs=3, checkpoint_every=1)
    with pytest.raises(CheckpointError, match="No space left.*epoch 1 is intact.*--resume"):
        train(_vae(digits), digits.train_x, config, out_dir=out, progress=False)
    monkeypatch.undo()
    assert load_checkpoint(out)["epoch"] == 1
    assert sorted(p.name for p in out.iterdir()) == [
        ".ppl_vae_manifest.json", "checkpoint.pt", "metrics.jsonl"]
