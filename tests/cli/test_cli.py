"""The ppl-vae command end to end on tiny runs, and its one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers.cli_runs import TINY

from ppl_vae.checkpoint import content_digest
from ppl_vae.cli import EXIT_ERROR, main
from ppl_vae.data import load_dataset


def run_error(capsys, argv) -> str:
    """Run a command expected to fail; return its one-line message."""
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_train_writes_checkpoint_metrics_samples_and_summary(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"checkpoint.pt", "metrics.jsonl", "samples.png", "summary.json"} <= names
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["settings"]["binarize"] == "dynamic" and math.isfinite(summary["test_elbo"])
    assert (trained / "samples.png").read_bytes()[:4] == b"\x89PNG"
    assert torch.load(trained / "checkpoint.pt", weights_only=True)["epoch"] == 2


def test_sample_writes_png_and_npy(trained, tmp_path):
    assert main(["sample", "--checkpoint", str(trained), "--num-samples", "9",
                 "--out", str(tmp_path / "s.npy")]) == 0
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (9, 64) and samples.min() >= 0 and samples.max() <= 1
    assert main(["sample", "--checkpoint", str(trained / "checkpoint.pt"),
                 "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_evaluate_reports_elbo_below_iwae(trained, capsys):
    assert main(["evaluate", "--checkpoint", str(trained), "--elbo-samples", "20",
                 "--iwae-samples", "50", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_points"] == len(load_dataset("digits").test_x) and report["epoch"] == 2
    assert report["elbo"] < report["iwae"] < 0


def test_resume_continues_to_more_epochs(trained, tmp_path):
    out = tmp_path / "more"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    argv = ["train", *TINY, "--out", str(out), "--resume"]
    argv[argv.index("--epochs") + 1] = "3"
    assert main(argv) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("command", ["train", "sample", "evaluate"])
def test_help_lists_the_options(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    assert "--device" in capsys.readouterr().out


def test_unknown_data_set_lists_the_known_ones(capsys, tmp_path):
    err = run_error(capsys, ["train", "--data", "mnst", "--out", str(tmp_path / "o")])
    assert "mnist5k" in err and "digits" in err
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


@pytest.mark.parametrize("flag, value, word", [
    ("--latent-dim", "0", "--latent-dim"), ("--epochs", "0", "--epochs"),
    ("--batch-size", "-5", "--batch-size"),
])
def test_non_positive_sizes(capsys, tmp_path, flag, value, word):
    argv = ["train", *TINY, "--out", str(tmp_path / "o")]
    argv[argv.index(flag) + 1] = value
    assert word in run_error(capsys, argv)
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_grey_or_negative_values_with_bernoulli(capsys, tmp_path):
    path = tmp_path / "wide.npy"
    np.save(path, np.random.default_rng(0).normal(size=(40, 9)).astype(np.float32))
    err = run_error(capsys, ["train", "--data", f"npy:{path}", "--epochs", "1",
                             "--out", str(tmp_path / "o"), "--quiet"])
    assert "--binarize" in err and "gaussian" in err
    assert main(["train", "--data", f"npy:{path}", "--epochs", "1", "--likelihood", "gaussian",
                 "--hidden-dims", "8", "--latent-dim", "2", "--out", str(tmp_path / "g"),
                 "--quiet"]) == 0


def test_non_finite_data(capsys, tmp_path):
    path = tmp_path / "nan.npy"
    values = np.random.default_rng(0).random((40, 9)).astype(np.float32)
    values[3, 2] = np.nan
    np.save(path, values)
    assert "NaN" in run_error(capsys, ["train", "--data", f"npy:{path}", "--out", str(tmp_path / "o")])


def test_missing_and_corrupt_checkpoints(capsys, tmp_path):
    assert "no checkpoint" in run_error(
        capsys, ["evaluate", "--checkpoint", str(tmp_path / "absent")])
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00" * 100)
    assert "corrupt" in run_error(capsys, ["sample", "--checkpoint", str(tmp_path),
                                           "--out", str(tmp_path / "s.png")])


def test_checkpoint_from_another_model_is_refused(trained, capsys, tmp_path):
    checkpoint = torch.load(trained / "checkpoint.pt", weights_only=True)
    checkpoint["model_config"]["latent_dim"] = 5
    checkpoint["sha256"] = content_digest(checkpoint)  # edited and resealed: the digest holds
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    err = run_error(capsys, ["sample", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "s.png")])
    assert "do not fit" in err


def test_sample_to_a_bad_path(trained, capsys, tmp_path):
    assert ".png or .npy" in run_error(
        capsys, ["sample", "--checkpoint", str(trained), "--out", str(tmp_path / "s.jpg")])
    assert "does not exist" in run_error(
        capsys, ["sample", "--checkpoint", str(trained), "--out", str(tmp_path / "no" / "s.png")])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu(capsys, tmp_path):
    assert "--device cpu" in run_error(capsys, ["train", *TINY, "--device", "cuda",
                                                "--out", str(tmp_path / "o")])


def test_missing_idx_folder_names_the_files(capsys, tmp_path):
    err = run_error(capsys, ["train", "--data", "mnist", "--data-root", str(tmp_path / "none"),
                             "--out", str(tmp_path / "o")])
    assert "train-images-idx3-ubyte" in err
