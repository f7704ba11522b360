"""Issue 14, item by item: run folders, checkpoint integrity, and one line for every failure.

Most commands run in this process through ``ppl_vae.cli.main`` (the same code
the console script runs, seconds cheaper); what depends on a real process
(locks held by another process, signals during imports) runs ``ppl-vae`` as a
subprocess.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cli_runs import TINY

import ppl_vae.cli as cli
import ppl_vae_console
from ppl_vae import VAE, SVIConfig, train
from ppl_vae.checkpoint import content_digest, save_checkpoint
from ppl_vae.cli import EXIT_ERROR, main
from ppl_vae.errors import PplVaeError
from ppl_vae.inference import iwae
from ppl_vae.storage import MANIFEST_NAME

ROOT = Path(__file__).resolve().parents[2]


def run_error(capsys, argv, status: int = EXIT_ERROR) -> str:
    """Run a command expected to fail; return its one line on stderr."""
    assert main(argv) == status
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def with_flag(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag`` set to ``value`` (replaced where present, else appended)."""
    argv = list(argv)
    if flag not in argv:
        return [*argv, flag, value]
    argv[argv.index(flag) + 1] = value
    return argv


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ppl_vae_console", *args], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ----- 1. one writer per run folder -------------------------------------------------------------


def test_1_a_second_writer_gets_the_holders_pid_and_readers_keep_working(trained, capsys,
                                                                         tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom ppl_vae.storage import hold\n"
         f"with hold({str(trained)!r}, 'train'):\n print('held', flush=True)\n time.sleep(60)"],
        env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = (trained / "checkpoint.pt").read_bytes()
        err = run_error(capsys, ["train", *TINY, "--out", str(trained), "--resume"])
        assert f"in use by another ppl-vae run (process {holder.pid})" in err
        assert (trained / "checkpoint.pt").read_bytes() == before
        # sample and evaluate read the last complete checkpoint of a folder being written.
        assert main(["sample", "--checkpoint", str(trained), "--out", str(tmp_path / "s.npy"),
                     "--num-samples", "3"]) == 0
        assert main(["evaluate", "--checkpoint", str(trained), "--elbo-samples", "2",
                     "--iwae-samples", "2", "--json"]) == 0
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_1_two_real_trainings_on_one_folder_one_wins_the_other_names_it(tmp_path):
    out = str(tmp_path / "shared")
    argv = ["train", *with_flag(TINY, "--epochs", "100000"), "--out", out]
    first = _cli(argv)
    deadline = time.monotonic() + 120
    while not (tmp_path / "shared" / ".ppl_vae.lock").exists():
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    second = _cli(argv)
    _, second_err = second.communicate(timeout=120)
    first.send_signal(signal.SIGTERM)
    _, first_err = first.communicate(timeout=120)
    assert second.returncode == EXIT_ERROR
    assert f"(process {first.pid})" in second_err and len(second_err.strip().splitlines()) == 1
    assert first.returncode == 128 + signal.SIGTERM, first_err
    assert "--resume" in first_err and "Traceback" not in first_err


# ----- 2. never overwrite or delete what ppl_vae did not write ------------------------------------


@pytest.mark.parametrize("mine", ["summary.json", "samples.png", "metrics.jsonl"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_2_a_users_file_in_out_is_refused_and_kept(capsys, tmp_path, mine, overwrite):
    out = tmp_path / "out"
    out.mkdir()
    (out / mine).write_text("the user's")
    stray = out / ".checkpoint.pt.a1b2c3.tmp"  # matches the pattern of ppl_vae's temporaries
    stray.write_text("also the user's")
    err = run_error(capsys, ["train", *TINY, "--out", str(out)]
                    + (["--overwrite"] if overwrite else []))
    assert f"{mine} was not written by ppl_vae" in err
    assert (out / mine).read_text() == "the user's" and stray.read_text() == "also the user's"
    assert sorted(p.name for p in out.iterdir()) == sorted([mine, stray.name])


def test_2_overwrite_replaces_only_the_previous_run_and_leaves_nothing_stale(capsys, tmp_path):
    out = tmp_path / "out"
    assert main(["train", *TINY, "--out", str(out)]) == 0  # digits: images, so samples.png
    (out / "notes.txt").write_text("the user's")
    points = tmp_path / "points.npy"
    np.save(points, np.random.default_rng(0).random((60, 5)).astype(np.float32))  # not images
    assert main(["train", *with_flag(TINY, "--data", f"npy:{points}"), "--out", str(out),
                 "--overwrite"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [MANIFEST_NAME, "checkpoint.pt", "metrics.jsonl", "notes.txt", "summary.json"]
    assert json.loads((out / "summary.json").read_text())["settings"]["data"] == f"npy:{points}"


# ----- 3. a resumed run is the same run ----------------------------------------------------------


def test_3_resume_on_other_data_of_the_same_dimension_names_both_sources(capsys, tmp_path):
    rng = np.random.default_rng(0)
    first, second = tmp_path / "first.npy", tmp_path / "second.npy"
    np.save(first, rng.random((60, 5)).astype(np.float32))
    np.save(second, rng.random((60, 5)).astype(np.float32))
    argv = with_flag(TINY, "--data", f"npy:{first}")
    assert main(["train", *argv, "--out", str(tmp_path / "o")]) == 0
    err = run_error(capsys, ["train", *with_flag(with_flag(argv, "--data", f"npy:{second}"),
                                                 "--epochs", "3"),
                             "--out", str(tmp_path / "o"), "--resume"])
    assert f"npy:{first}" in err and f"npy:{second}" in err and "--resume" not in err.split(";")[0]
    np.save(first, rng.random((60, 5)).astype(np.float32))  # same name, new content
    err = run_error(capsys, ["train", *with_flag(argv, "--epochs", "3"),
                             "--out", str(tmp_path / "o"), "--resume"])
    assert "content changed" in err


def test_3_resume_with_fewer_epochs_than_the_checkpoint_says_so(trained, capsys):
    err = run_error(capsys, ["train", *with_flag(TINY, "--epochs", "1"), "--out", str(trained),
                             "--resume"])
    assert "already holds 2 epochs and --epochs 1" in err


# ----- 4. umask and no empty folders after a failure ---------------------------------------------


def test_4_output_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["train", *with_flag(TINY, "--epochs", "1"), "--out", str(tmp_path / "o")]) == 0
    finally:
        os.umask(old)
    for name in ("checkpoint.pt", "metrics.jsonl", "samples.png", "summary.json"):
        assert stat.S_IMODE((tmp_path / "o" / name).stat().st_mode) == 0o644, name


def test_4_failed_runs_leave_no_empty_folders(capsys, tmp_path, trained, monkeypatch):
    run_error(capsys, ["train", *TINY, "--out", str(tmp_path / "nothing" / "here"), "--resume"])
    run_error(capsys, ["train", *with_flag(TINY, "--learning-rate", "1e30"),
                       "--checkpoint-every", "50", "--out", str(tmp_path / "diverged")])

    def failing_comparison(*args, **kwargs):
        raise PplVaeError("NUTS failed")

    monkeypatch.setattr(cli, "compare_posteriors", failing_comparison)
    run_error(capsys, ["compare", "--checkpoint", str(trained), "--out",
                       str(tmp_path / "comparison")])
    assert list(tmp_path.iterdir()) == []


# ----- 5-7. checkpoints: integrity, structure, non-finite weights --------------------------------


def _flipped_copy(trained: Path, folder: Path) -> Path:
    folder.mkdir()
    raw = bytearray((trained / "checkpoint.pt").read_bytes())
    weight = torch.load(trained / "checkpoint.pt", weights_only=True)["model_state"]
    largest = max(weight.values(), key=torch.numel).numpy().tobytes()
    raw[raw.find(largest) + 100] ^= 0x10
    (folder / "checkpoint.pt").write_bytes(bytes(raw))
    return folder


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_5_a_flipped_bit_is_damage_not_wrong_weights(trained, capsys, tmp_path, command):
    folder = _flipped_copy(trained, tmp_path / "copy")
    argv = [command, "--checkpoint", str(folder)]
    argv += ["--out", str(tmp_path / "s.npy")] if command == "sample" else []
    assert "checkpoint.pt is damaged (checksum mismatch)" in run_error(capsys, argv)


def _minimal(folder: Path, **extra) -> Path:
    vae = VAE(64, 2, hidden_dims=(16,))
    save_checkpoint(folder / "checkpoint.pt", {"model_class": "VAE", "model_config": vae.config(),
                                               "model_state": vae.state_dict(), **extra})
    return folder


def test_6_a_checkpoint_with_only_the_required_keys_loads_everywhere(capsys, tmp_path):
    folder = _minimal(tmp_path)
    assert main(["sample", "--checkpoint", str(folder), "--out", str(tmp_path / "s.npy"),
                 "--num-samples", "4"]) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 64)
    assert "not images" in run_error(capsys, ["sample", "--checkpoint", str(folder), "--out",
                                              str(tmp_path / "s.png")])
    assert "does not say which data" in run_error(capsys, ["evaluate", "--checkpoint", str(folder)])
    err = run_error(capsys, ["train", *TINY, "--out", str(folder), "--resume"])
    assert "holds no optimizer_state" in err and "--resume needs" in err


@pytest.mark.parametrize("key, value", [
    ("format_version", "1"), ("model_class", 3), ("model_state", [1.0]), ("metadata", "digits"),
    ("svi_config", 0), ("optimizer_state", None), ("rng_state", {}), ("history", {}),
    ("epoch", "2"),
])
@pytest.mark.parametrize("command", ["sample", "evaluate", "train"])
def test_6_each_mistyped_field_is_one_line_in_every_command(trained, capsys, tmp_path, key, value,
                                                            command):
    checkpoint = torch.load(trained / "checkpoint.pt", weights_only=True)
    checkpoint[key] = value
    checkpoint["sha256"] = content_digest(checkpoint)  # an edited file, resealed: the schema speaks
    folder = tmp_path / "edited"
    folder.mkdir()
    torch.save(checkpoint, folder / "checkpoint.pt")
    argv = {"sample": ["sample", "--checkpoint", str(folder), "--out", str(tmp_path / "s.npy")],
            "evaluate": ["evaluate", "--checkpoint", str(folder)],
            "train": ["train", *with_flag(TINY, "--epochs", "3"), "--out", str(folder), "--resume"]}
    assert key in run_error(capsys, argv[command])


def _set(path: tuple, value):
    def mutate(checkpoint):
        parent = checkpoint
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
    return mutate


@pytest.mark.parametrize("mutate, message", [
    (_set(("rng_state", "torch"), torch.zeros(2, dtype=torch.uint8)), "generator's state"),
    (_set(("history",), []), "history holds 0 epochs but epoch is 2"),
    (_set(("optimizer_state", "state", 0, "exp_avg"), torch.zeros(3)), "exp_avg does not match"),
    (_set(("optimizer_state", "state", 0, "step"), "x"), "mapping of parameters to tensors"),
    (_set(("optimizer_state", "param_groups", 0, "lr"), "x"), "optimizer's lr is 'x'"),
    (_set(("partial_epoch",), {"step": 3}), "partial_epoch has no loss_sum"),
    (_set(("model_config", "data_dim"), torch.zeros(3)), "model_config should hold plain values"),
    (_set(("metadata", "image_shape"), "x"), "image_shape should be None or"),
], ids=["rng", "history", "adam-shape", "adam-step", "adam-lr", "partial", "config", "image"])
def test_6_deeper_damage_found_by_fuzzing_is_one_line_on_resume(trained, capsys, tmp_path, mutate,
                                                                 message):
    checkpoint = torch.load(trained / "checkpoint.pt", weights_only=True)
    mutate(checkpoint)
    checkpoint["sha256"] = content_digest(checkpoint)
    folder = tmp_path / "edited"
    folder.mkdir()
    torch.save(checkpoint, folder / "checkpoint.pt")
    assert message in run_error(capsys, ["train", *with_flag(TINY, "--epochs", "3"), "--out",
                                         str(folder), "--resume"])


@pytest.mark.parametrize("command", ["sample", "evaluate", "train"])
def test_7_nan_weights_are_refused_everywhere(trained, capsys, tmp_path, command):
    checkpoint = torch.load(trained / "checkpoint.pt", weights_only=True)
    name = next(iter(checkpoint["model_state"]))
    checkpoint["model_state"][name][0] = float("nan")
    checkpoint["sha256"] = content_digest(checkpoint)
    folder = tmp_path / "nan"
    folder.mkdir()
    torch.save(checkpoint, folder / "checkpoint.pt")
    argv = {"sample": ["sample", "--checkpoint", str(folder), "--out", str(tmp_path / "s.png")],
            "evaluate": ["evaluate", "--checkpoint", str(folder)],
            "train": ["train", *with_flag(TINY, "--epochs", "3"), "--out", str(folder), "--resume"]}
    assert "NaN or infinite weights" in run_error(capsys, argv[command])
    assert not (tmp_path / "s.png").exists()


# ----- 8. failed writes other than the checkpoint ------------------------------------------------


def test_8_a_folder_where_samples_png_goes_is_one_line_and_resume_writes_it(capsys, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    argv = ["train", *TINY, "--out", str(out)]
    assert main(argv) == 0
    (out / "samples.png").unlink()
    (out / "samples.png").mkdir()  # a folder where the file should go
    err = run_error(capsys, [*argv, "--resume"])  # the run is complete: rewrites the last files
    assert "a folder stands where the file should go" in err and "--resume" in err
    assert "samples.png and summary.json are missing" in err
    (out / "samples.png").rmdir()
    assert main([*argv, "--resume"]) == 0  # the checkpoint is complete: --resume writes the rest
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG" and (out / "summary.json").exists()


def test_8_a_full_disk_for_summary_json_is_one_line(capsys, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli, "atomic_write_text", full)
    err = run_error(capsys, ["train", *TINY, "--out", str(tmp_path / "o")])
    assert "could not write" in err and "No space left" in err and "summary.json is missing" in err


def test_8_sample_and_compare_outputs_in_the_way(trained, capsys, tmp_path):
    (tmp_path / "dir.png").mkdir()
    assert "is a folder" in run_error(
        capsys, ["sample", "--checkpoint", str(trained), "--out", str(tmp_path / "dir.png")])
    (tmp_path / "file").write_text("x")
    assert "is a file, not a folder" in run_error(
        capsys, ["sample", "--checkpoint", str(trained), "--out", str(tmp_path / "file" / "s.png")])
    assert "cannot write to" in run_error(
        capsys, ["compare", "--checkpoint", str(trained), "--out", str(tmp_path / "file")])


def test_8_sample_write_failure_is_one_line(trained, capsys, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli, "atomic_write", full)
    err = run_error(capsys, ["sample", "--checkpoint", str(trained), "--out",
                             str(tmp_path / "s.npy")])
    assert "could not write" in err and "No space left" in err


# ----- 9 and 12. every option checked before any work, by the flag the user typed ---------------


@pytest.mark.parametrize("argv", [
    ["train", *TINY, "--out", "OUT"],
    ["sample", "--checkpoint", "nowhere", "--out", "OUT/s.png"],
    ["evaluate", "--checkpoint", "nowhere"],
    ["compare", "--checkpoint", "nowhere", "--out", "OUT"],
])
@pytest.mark.parametrize("seed", ["-5", str(2**32), str(10**30)])
def test_9_seed_out_of_range_is_refused_first_in_every_command(capsys, tmp_path, argv, seed):
    argv = [a.replace("OUT", str(tmp_path / "o")) for a in argv] + ["--seed", seed]
    assert "--seed must lie between 0 and 4294967295" in run_error(capsys, argv)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag, value, expected", [
    ("--num-samples", "1", "--num-samples must be at least 4"),
    ("--iwae-samples", "0", "--iwae-samples must be a positive integer"),
    ("--num-points", "-1", "--num-points must be a positive integer"),
    ("--warmup-steps", "0", "--warmup-steps must be a positive integer"),
])
def test_9_compare_options_are_checked_before_nuts(capsys, tmp_path, flag, value, expected):
    err = run_error(capsys, ["compare", "--checkpoint", "nowhere", "--out", str(tmp_path / "o"),
                             flag, value])
    assert expected in err


@pytest.mark.parametrize("flag, value, expected", [
    ("--observation-scale", "inf", "--observation-scale must be a positive finite number"),
    ("--learning-rate", "nan", "--learning-rate must be a positive finite number"),
    ("--batch-size", "0", "--batch-size must be a positive integer"),
    ("--hidden-dims", "-3", "--hidden-dims must be a positive integer"),
    ("--beta", "-1", "--beta must be a non-negative finite number"),
    ("--epochs", "two", "argument --epochs: invalid int value: 'two'"),
])
def test_12_train_messages_name_the_flag(capsys, tmp_path, flag, value, expected):
    argv = ["train", *TINY, "--out", str(tmp_path / "o")]
    argv = with_flag(argv, flag, value)
    assert expected in run_error(capsys, argv)


def test_9_more_points_than_the_test_set_says_it_uses_fewer(trained, capsys, tmp_path,
                                                            monkeypatch):
    def stop(model, x, config):
        raise PplVaeError(f"stopped with {len(x)} points")

    monkeypatch.setattr(cli, "compare_posteriors", stop)
    main(["compare", "--checkpoint", str(trained), "--out", str(tmp_path / "o"),
          "--num-points", "5000"])
    err = capsys.readouterr().err
    available = len(cli.load_dataset("digits").test_x)
    assert f"--num-points 5000 exceeds the {available} test points; comparing all {available}" in err
    assert f"stopped with {available} points" in err


# ----- 10. dtype and device in the library -------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
@pytest.mark.parametrize("entry", ["train", "iwae", "encode"])
def test_10_data_of_another_dtype_is_named_with_the_fix(dtype, entry):
    model = VAE(4, 2, hidden_dims=(8,))
    x = torch.rand(6, 4).to(dtype)
    calls = {"train": lambda: train(model, x, SVIConfig(epochs=1), progress=False),
             "iwae": lambda: iwae(model, x, 3), "encode": lambda: model.encode(x)}
    with pytest.raises(PplVaeError, match=f"{dtype}.*parameters are torch.float32.*x.to"):
        calls[entry]()


@pytest.mark.parametrize("entry", ["train", "iwae", "encode"])
def test_10_a_meta_tensor_is_named(entry):
    model = VAE(4, 2, hidden_dims=(8,))
    x = torch.empty(6, 4, device="meta")
    calls = {"train": lambda: train(model, x, SVIConfig(epochs=1), progress=False),
             "iwae": lambda: iwae(model, x, 3), "encode": lambda: model.encode(x)}
    with pytest.raises(PplVaeError, match="meta tensor"):
        calls[entry]()


# ----- 11. signals: one line at any moment --------------------------------------------------------


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_11_a_signal_during_the_imports_is_one_line(tmp_path, signal_number):
    run = _cli(["train", *TINY, "--out", str(tmp_path / "o")])
    # Wait until torch's library is being loaded: the entry's handlers are in place by then,
    # and importing torch, Pyro and matplotlib takes seconds more.
    maps, deadline = Path(f"/proc/{run.pid}/maps"), time.monotonic() + 60
    while not (maps.exists() and "libtorch" in maps.read_text()):
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    run.send_signal(signal_number)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signal_number, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"interrupted by {signal.Signals(signal_number).name} while starting" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_11_a_signal_during_the_last_writes_says_what_is_missing(capsys, tmp_path, monkeypatch,
                                                                 signal_number):
    def interrupted(*args, **kwargs):
        raise ppl_vae_console.Interrupted(signal_number)

    monkeypatch.setattr(cli, "save_image_grid", interrupted)
    out = tmp_path / "o"
    err = run_error(capsys, ["train", *TINY, "--out", str(out)], status=128 + signal_number)
    assert f"stopped by {signal.Signals(signal_number).name} while writing the last files" in err
    assert "samples.png and summary.json are missing" in err and "--resume" in err
    monkeypatch.undo()
    assert main(["train", *TINY, "--out", str(out), "--resume"]) == 0
    assert (out / "samples.png").exists() and (out / "summary.json").exists()


# ----- 12. the rest of the messages --------------------------------------------------------------


def test_12_fifo_symlink_loop_device_and_structured_arrays_are_named(capsys, tmp_path):
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    (tmp_path / "a.npy").symlink_to(tmp_path / "b.npy")
    (tmp_path / "b.npy").symlink_to(tmp_path / "a.npy")
    structured = tmp_path / "records.npy"
    np.save(structured, np.zeros(10, dtype=[("x", "f4"), ("y", "f4")]))
    for path, words in ((fifo, "named pipe (FIFO)"), (tmp_path / "a.npy", "symbolic link loop"),
                        (Path("/dev/zero"), "device file"), (structured, "structured")):
        err = run_error(capsys, ["train", "--data", f"npy:{path}", "--out", str(tmp_path / "o")])
        assert words in err and "does not exist" not in err


def test_12_png_suffix_in_capitals_is_accepted(trained, tmp_path):
    assert main(["sample", "--checkpoint", str(trained), "--out", str(tmp_path / "x.PNG"),
                 "--num-samples", "4"]) == 0
    assert (tmp_path / "x.PNG").read_bytes()[:4] == b"\x89PNG"


def test_12_out_of_memory_while_loading_data_says_so(capsys, tmp_path, monkeypatch):
    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(cli, "load_dataset", exhausted)
    err = run_error(capsys, ["train", *TINY, "--out", str(tmp_path / "o")])
    assert "ran out of memory while loading the data set digits" in err
    assert "--batch-size" not in err


def test_12_a_non_latin_path_gives_no_font_warnings(capsys, tmp_path):
    folder = tmp_path / "数据"
    folder.mkdir()
    path = folder / "手写数字.npy"
    np.save(path, np.random.default_rng(0).random((60, 64)).astype(np.float32))  # 8 x 8 images
    argv = with_flag(with_flag(TINY, "--data", f"npy:{path}"), "--epochs", "1")
    assert main(["train", *argv, "--out", str(folder / "运行")]) == 0
    assert (folder / "运行" / "samples.png").exists()
    assert capsys.readouterr().err == ""


# ----- 13. an explosion without NaN is not silent ------------------------------------------------


def test_13_an_exploding_loss_warns(capsys, tmp_path):
    argv = with_flag(with_flag(TINY, "--learning-rate", "1000"), "--epochs", "1")
    assert main(["train", *argv, "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "warning: the test ELBO fell to" in err
    assert "--learning-rate" in err


def test_13_a_healthy_run_does_not_warn(trained, capsys):
    assert main(["evaluate", "--checkpoint", str(trained), "--elbo-samples", "2",
                 "--iwae-samples", "2"]) == 0
    history = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    from ppl_vae.training.checks import warn_if_exploding

    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")
        warn_if_exploding(history, VAE(64, 2, hidden_dims=(16,)))


def _history(scores):
    return [{"epoch": i + 1, "test_elbo": score} for i, score in enumerate(scores)]


@pytest.mark.parametrize("scores, warns", [
    ([-120.0, -110.0, -105.0, -104.0], False),   # healthy
    ([-120.0, -110.0, -190.0], False),           # a bad epoch, but within |best| of the best
    ([-120.0, -110.0, -3.9e7], True),            # the explosion
    ([-120.0, -3.9e7, -4.0e7], False),           # still down there: warned once already
    ([-0.5, -0.2, -1.5], True),                  # near zero the margin is 1 nat, not |best|
])
def test_13_the_best_so_far_rule_warns_once_per_fall(scores, warns):
    import warnings

    from ppl_vae.training.checks import warn_if_exploding

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_exploding(_history(scores))
    assert bool(caught) == warns, [str(w.message) for w in caught]
    if warns:
        assert f"epoch {len(scores)}" in str(caught[0].message)


# ----- 14. the thread count is recorded, and a resume with another one says so ------------------


def test_14_a_resume_with_another_thread_count_says_it_is_not_bit_identical(capsys, tmp_path):
    out = tmp_path / "o"
    threads = torch.get_num_threads()
    assert main(["train", *with_flag(TINY, "--epochs", "1"), "--out", str(out)]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["num_threads"] == threads
    torch.set_num_threads(threads + 1)
    try:
        assert main(["train", *TINY, "--out", str(out), "--resume"]) == 0
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert f"written with {threads} CPU threads and this run uses {threads + 1}" in err
    assert "not bit-identically" in err and f"OMP_NUM_THREADS={threads}" in err
