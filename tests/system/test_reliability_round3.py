"""Issue 26, bug by bug: a run folder's own files never reach outside it, and every command fails in one line.

Each test is named after the bug of the issue it pins (``test_1_...`` for bug
1). Commands run in this process through ``ppl_vae.cli.main``; what depends on
a fresh process (a hanging read, the environment matplotlib reads at import)
runs ``ppl-vae`` as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cli_runs import TINY

from ppl_vae import VAE, SVIConfig, iwae, train
from ppl_vae.checkpoint import content_digest, load_checkpoint, save_checkpoint
from ppl_vae.cli import EXIT_ERROR, main
from ppl_vae.errors import CheckpointError, ConfigError, DataError, TrainingDivergedError
from ppl_vae.explorer import EXPLORER_DRAWS, POSTERIOR_DRAWS_NAME, load_compare_results
from ppl_vae.storage import LOCK_NAME, MANIFEST_NAME, hold

ROOT = Path(__file__).resolve().parents[2]
#: ``compare`` at its smallest: the tests below need it to reach its folder, not NUTS.
QUICK_COMPARE = ["--num-points", "2", "--num-samples", "4", "--warmup-steps", "2", "--num-chains", "2",
                 "--methods", "encoder", "--elbo-samples", "2", "--iwae-samples", "2"]
#: A subprocess that hangs on a named pipe is stopped after this many seconds (the bug, not a timing).
HANG_LIMIT = 120


def run_error(capsys, argv: list[str]) -> str:
    """Run a command expected to fail with status 2; return its one line on stderr."""
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
            "OMP_NUM_THREADS": "1", **extra}


def _console(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ppl_vae_console", *args], env=_env(**env),
                          capture_output=True, text=True, timeout=HANG_LIMIT)


def _manifest(folder: Path, files: dict, tag: object = "0123456789abcdef") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_NAME).write_text(json.dumps({"format": 1, "tag": tag, "files": files}))


@pytest.fixture
def victims(tmp_path) -> dict[Path, bytes]:
    """Files of the user's outside the run folder, with their content."""
    files = {tmp_path / "victim": b"precious\n", tmp_path / "elsewhere" / "absolute": b"mine\n"}
    for path, content in files.items():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
    return files


def _intact(victims: dict[Path, bytes]) -> bool:
    return all(path.is_file() and path.read_bytes() == content for path, content in victims.items())


# ----- 1, 2, 3. the manifest is data, not orders ----------------------------------------------------


def test_1_train_overwrite_refuses_manifest_names_outside_the_folder(capsys, tmp_path, victims):
    run = tmp_path / "run"
    _manifest(run, {"../victim": "train", str(tmp_path / "elsewhere" / "absolute"): "train"})
    err = run_error(capsys, ["train", *TINY, "--out", str(run), "--overwrite"])
    assert MANIFEST_NAME in err and "not a file name directly inside the folder" in err
    assert _intact(victims)


def test_2_compare_refuses_manifest_names_outside_the_folder(capsys, tmp_path, victims, trained):
    out = tmp_path / "run"
    _manifest(out, {"../victim": "compare", str(tmp_path / "elsewhere" / "absolute"): "compare"})
    err = run_error(capsys, ["compare", "--checkpoint", str(trained), "--out", str(out),
                             *QUICK_COMPARE])
    assert "not a file name directly inside the folder" in err
    assert _intact(victims)


def test_3_a_wildcard_tag_deletes_none_of_the_users_temporaries(capsys, tmp_path):
    run = tmp_path / "run"
    _manifest(run, {}, tag="*")
    mine = run / ".notes.draft.tmp"
    mine.write_text("draft")
    err = run_error(capsys, ["train", *TINY, "--out", str(run), "--resume"])
    assert "tag" in err and mine.read_text() == "draft"


# ----- 4. the lock file -----------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["symlink", "link"])
@pytest.mark.parametrize("command", ["train", "compare"])
def test_4_a_lock_linked_to_a_users_file_is_refused_and_the_file_kept(capsys, tmp_path, victims,
                                                                       trained, link, command):
    run = tmp_path / "run"
    run.mkdir()
    victim = tmp_path / "victim"
    getattr(os, link)(victim, run / LOCK_NAME)
    argv = (["train", *TINY, "--out", str(run), "--resume"] if command == "train" else
            ["compare", "--checkpoint", str(trained), "--out", str(run), *QUICK_COMPARE])
    err = run_error(capsys, argv)
    assert LOCK_NAME in err
    assert _intact(victims)


# ----- 5. reading the manifest ---------------------------------------------------------------------


def test_5_a_fifo_manifest_is_named_and_does_not_hang(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / MANIFEST_NAME)
    done = _console(["train", *TINY, "--out", str(run), "--resume"])
    assert done.returncode == EXIT_ERROR, done.stderr
    assert "named pipe (FIFO)" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_5_a_manifest_linked_to_dev_zero_is_refused_without_reading(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / MANIFEST_NAME).symlink_to("/dev/zero")
    err = run_error(capsys, ["train", *TINY, "--out", str(run), "--resume"])
    assert "symbolic link" in err and "--batch-size" not in err


def test_5_a_huge_manifest_is_refused_as_too_large(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / MANIFEST_NAME, "wb") as handle:  # sparse: no disk space used
        handle.truncate(64 * 2**20)
    err = run_error(capsys, ["train", *TINY, "--out", str(run), "--resume"])
    assert "larger than" in err


# ----- 6. explore --compare on hostile results ------------------------------------------------------


def _compare_folder(folder: Path, draws: int = 40, **changes) -> Path:
    """A compare folder for the 2-latent ``trained`` run, with ``changes`` to its arrays or JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(0)
    arrays = {"point_index": np.arange(3), "nuts": generator.normal(size=(3, draws, 2)),
              "qstar_loc": np.zeros((3, 2)), "qstar_scale": np.ones((3, 2))}
    summary = {"point_index": [0, 1, 2], "converged": True,
               "per_point": {"encoder_elbo": [-30.0, -31.0, -32.0],
                             "local_gaussian_elbo": [-29.0, -30.0, -31.0],
                             "log_px": [-28.0, -29.0, -30.0]}}
    for key, value in changes.items():
        target = arrays if key in arrays else summary
        if value is None:
            del target[key]
        else:
            target[key] = value
    np.savez(folder / POSTERIOR_DRAWS_NAME, **arrays)
    text = changes.get("text") or json.dumps(summary, allow_nan=True)
    (folder / "comparison.json").write_text(text)
    return folder


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE_RESULTS = {
    "nan draws": {"nuts": np.full((3, 40, 2), np.nan)},
    "inf per-point": {"per_point": {"log_px": [float("inf"), -1.0, -2.0]}},
    "string draws": {"nuts": np.full((3, 40, 2), "a")},
    "string per-point": {"per_point": {"log_px": ["</script>", -1.0, -2.0]}},
    "short per-point": {"per_point": {"log_px": [-1.0]}},
    "loc without scale": {"qstar_scale": None},
    "top-level list": {"text": "[1, 2, 3]"},
    "deeply nested": {"text": '{"per_point": ' + _nested(100_000) + "}"},
    "string converged": {"converged": "no"},
    "negative index": {"point_index": np.array([-1, 0, 1])},
    "overflowing number": {"text": '{"point_index": [0, 1, 2], "per_point": {"log_px": [1e400, 1, 2]}}'},
}


@pytest.mark.parametrize("changes", HOSTILE_RESULTS.values(), ids=HOSTILE_RESULTS)
def test_6_hostile_compare_results_are_one_config_error(tmp_path, changes):
    folder = _compare_folder(tmp_path / "cmp", **changes)
    with pytest.raises(ConfigError) as raised:
        load_compare_results(folder)
    assert "\n" not in str(raised.value) and str(folder) in str(raised.value)


def test_6_hostile_compare_results_exit_2_in_explore(capsys, tmp_path, trained):
    folder = _compare_folder(tmp_path / "cmp", **HOSTILE_RESULTS["string per-point"])
    run_error(capsys, ["explore", "--checkpoint", str(trained), "--out", str(tmp_path / "x.html"),
                       "--compare", str(folder)])


def test_6_many_draws_are_thinned_on_load(tmp_path):
    results = load_compare_results(_compare_folder(tmp_path / "cmp", draws=5 * EXPLORER_DRAWS))
    assert results.nuts.shape == (3, EXPLORER_DRAWS, 2)


def test_6_a_good_folder_still_loads(tmp_path):
    results = load_compare_results(_compare_folder(tmp_path / "cmp"))
    assert results.converged is True and results.per_point["log_px"][0] == -28.0


# ----- 7, 8. checkpoints of the Python API -----------------------------------------------------------


def _edited(trained: Path, folder: Path, edit) -> Path:
    checkpoint = load_checkpoint(trained)
    checkpoint.pop("sha256")
    edit(checkpoint)
    folder.mkdir()
    save_checkpoint(folder / "checkpoint.pt", checkpoint)
    return folder


def test_7_explore_works_on_a_checkpoint_with_partial_metadata(tmp_path, trained):
    def partial(checkpoint):
        del checkpoint["metadata"]["data_root"], checkpoint["metadata"]["data_seed"]

    run = _edited(trained, tmp_path / "partial", partial)
    assert main(["explore", "--checkpoint", str(run), "--out", str(tmp_path / "x.html"),
                 "--num-points", "20"]) == 0


@pytest.mark.parametrize("seed", [2**63, -1, "0", 1.5])
def test_8_a_data_seed_out_of_range_is_refused_when_saving(tmp_path, trained, seed):
    def large(checkpoint):
        checkpoint["metadata"]["data_seed"] = seed

    with pytest.raises(CheckpointError, match="data_seed"):
        _edited(trained, tmp_path / "seed", large)


def test_8_a_data_seed_out_of_range_written_by_hand_is_one_line_in_evaluate(capsys, tmp_path,
                                                                          trained):
    checkpoint = load_checkpoint(trained)
    checkpoint["metadata"]["data_seed"] = 2**63
    checkpoint["sha256"] = content_digest(checkpoint)
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    err = run_error(capsys, ["evaluate", "--checkpoint", str(tmp_path), "--iwae-samples", "2",
                             "--elbo-samples", "2"])
    assert "data_seed" in err


# ----- 9. too many particles ------------------------------------------------------------------------


@pytest.mark.parametrize("particles", [10**18, 10**9])
def test_9_too_many_particles_names_num_particles(capsys, tmp_path, particles):
    err = run_error(capsys, ["train", *TINY, "--out", str(tmp_path / "o"), "--objective", "iwae",
                             "--num-particles", str(particles)])
    assert "--num-particles" in err


# ----- 10, 11. the user's model class -----------------------------------------------------------------


USER_MODULES = {
    "init_fails": "from ppl_vae import VAE\nclass Model(VAE):\n"
                  "    def __init__(self, *a, **k):\n        raise ValueError('no init today')\n",
    "prior_fails": "from ppl_vae import VAE\nclass Model(VAE):\n"
                   "    def prior(self, *a, **k):\n        raise ValueError('no prior today')\n",
    "syntax_fails": "from ppl_vae import VAE\nclass Model(VAE)\n    pass\n",
    "import_fails": "raise ValueError('no import today')\n",
}


@pytest.fixture
def user_modules(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "user_code"
    folder.mkdir()
    for name, text in USER_MODULES.items():
        (folder / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(folder))
    return folder


@pytest.mark.parametrize("module", USER_MODULES)
def test_10_errors_of_the_users_class_are_one_line_naming_it(capsys, tmp_path, user_modules,
                                                              module, monkeypatch):
    monkeypatch.delenv("PPL_VAE_DEBUG", raising=False)
    argv = ["train", *TINY, "--epochs", "1", "--out", str(tmp_path / "o"),
            "--model", f"{module}:Model"]
    err = run_error(capsys, argv)
    assert f"{module}:Model" in err or f"{module}" in err
    assert "PPL_VAE_DEBUG=1" in err
    monkeypatch.setenv("PPL_VAE_DEBUG", "1")
    with pytest.raises((ValueError, SyntaxError)):
        main([*argv[:-4], "--out", str(tmp_path / "o2"), "--model", f"{module}:Model"])


def test_11_resume_without_model_on_a_users_class_is_refused(capsys, tmp_path):
    run = tmp_path / "run"
    common = ["train", *TINY, "--epochs", "1", "--out", str(run)]
    assert main([*common, "--model", "user_programs:StudentTVAE"]) == 0
    err = run_error(capsys, [*common[:-2], "--epochs", "2", "--out", str(run), "--resume"])
    assert "--model user_programs:StudentTVAE" in err
    assert load_checkpoint(run)["model_class"] == "user_programs:StudentTVAE"


def test_11_evaluate_with_another_model_class_than_the_checkpoints_is_refused(capsys, trained):
    err = run_error(capsys, ["evaluate", "--checkpoint", str(trained), "--model", "TwoLayerVAE",
                             "--iwae-samples", "2", "--elbo-samples", "2"])
    assert "TwoLayerVAE" in err and "VAE" in err


# ----- 12. an unknown MPLBACKEND ---------------------------------------------------------------------


def test_12_an_unknown_mplbackend_breaks_no_command(tmp_path, trained):
    evaluated = _console(["evaluate", "--checkpoint", str(trained), "--iwae-samples", "2",
                          "--elbo-samples", "2", "--json"], MPLBACKEND="no-such-backend")
    assert evaluated.returncode == 0 and "warning" not in evaluated.stderr, evaluated.stderr
    sampled = _console(["sample", "--checkpoint", str(trained), "--out", str(tmp_path / "s.png"),
                        "--num-samples", "4"], MPLBACKEND="no-such-backend")
    assert sampled.returncode == 0, sampled.stderr
    assert sampled.stderr.count("warning") == 1 and "Agg" in sampled.stderr
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


# ----- 13. user programs: device and dtype ------------------------------------------------------------


def _program():
    import pyro
    import pyro.distributions as dist

    def model(x):
        shift = pyro.param("shift", torch.zeros(x.shape[1]))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", dist.Normal(shift + z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.zeros(2))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))

    return model, guide


@pytest.mark.parametrize("x", [torch.empty(6, 4, device="meta"), torch.rand(6, 4).double()],
                         ids=["meta", "float64"])
def test_13_train_on_a_user_program_names_bad_data_in_one_line(x):
    model, guide = _program()
    with pytest.raises(DataError) as raised:
        train(model, x, SVIConfig(epochs=1, batch_size=3), guide=guide, progress=False)
    assert "\n" not in str(raised.value)


# ----- 14. divergence keeps the caller's weights --------------------------------------------------


def test_14_a_diverged_train_restores_the_last_finite_parameters():
    torch.manual_seed(0)
    model = VAE(4, 2, hidden_dims=(8,))
    pretrained = {name: value.clone() for name, value in model.state_dict().items()}
    x = torch.rand(64, 4).round()
    with pytest.raises(TrainingDivergedError, match="restored"):
        train(model, x, SVIConfig(epochs=3, batch_size=16, learning_rate=1e38), progress=False)
    for name, value in model.state_dict().items():
        assert torch.equal(value, pretrained[name]), name


def test_14_restoring_happens_in_place(tmp_path):
    torch.manual_seed(0)
    model = VAE(4, 2, hidden_dims=(8,))
    parameters = [id(p) for p in model.parameters()]
    with pytest.raises(TrainingDivergedError):
        train(model, torch.rand(64, 4).round(), SVIConfig(epochs=2, batch_size=16,
                                                          learning_rate=1e38), progress=False)
    assert [id(p) for p in model.parameters()] == parameters
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


# ----- the structure: hold() itself ----------------------------------------------------------------


def test_a_link_where_a_manifest_file_stands_is_not_removed_nor_followed(tmp_path, victims):
    run = tmp_path / "run"
    _manifest(run, {"summary.json": "train"})
    (run / "summary.json").symlink_to(tmp_path / "victim")
    with pytest.raises(ConfigError, match="symbolic link"):
        with hold(run, "train", overwrite=True):
            pass
    assert _intact(victims) and (run / "summary.json").is_symlink()


# ----- the UX list -------------------------------------------------------------------------------


def test_ux_a_file_outside_out_that_cannot_be_written_is_named_instead_of_out(capsys, tmp_path,
                                                                              trained, monkeypatch):
    import ppl_vae.cli as cli

    def read_only_home(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/home/someone/.cache/arviz")

    monkeypatch.setattr(cli, "compare_posteriors", read_only_home)
    out = tmp_path / "cmp"
    err = run_error(capsys, ["compare", "--checkpoint", str(trained), "--out", str(out),
                             *QUICK_COMPARE])
    assert "could not write /home/someone/.cache/arviz" in err and "HOME" in err
    assert f"could not write {out} " not in err


def test_ux_evaluate_with_ten_samples_or_fewer_says_k_needs_more(capsys, trained):
    assert main(["evaluate", "--checkpoint", str(trained), "--iwae-samples", "5",
                 "--elbo-samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "k̂ needs more than 10 samples" in out and "k̂ > 0.00" not in out


def test_ux_resume_with_another_seed_names_the_split(capsys, tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(run)]) == 0
    err = run_error(capsys, ["train", *TINY, "--out", str(run), "--resume", "--seed", "9"])
    assert "seed 0" in err and "--seed 0" in err and "content changed" not in err


def test_ux_explore_accepts_html_in_capitals(tmp_path, trained):
    assert main(["explore", "--checkpoint", str(trained), "--out", str(tmp_path / "x.HTML"),
                 "--num-points", "20"]) == 0


def test_ux_a_compare_failing_in_its_plots_leaves_both_files_explore_reads(capsys, tmp_path,
                                                                           trained, monkeypatch):
    import ppl_vae.cli as cli

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "plot_posterior_comparison", full_disk)
    out = tmp_path / "cmp"
    run_error(capsys, ["compare", "--checkpoint", str(trained), "--out", str(out), *QUICK_COMPARE])
    assert load_compare_results(out).point_index.tolist() == [0, 1]


def test_ux_a_checkpoint_without_its_checksum_says_it_is_unverified(capsys, tmp_path, trained):
    checkpoint = load_checkpoint(trained)
    del checkpoint["sha256"]
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    assert main(["evaluate", "--checkpoint", str(tmp_path), "--iwae-samples", "2",
                 "--elbo-samples", "2", "--json"]) == 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no sha256 checksum" in err


def test_13_iwae_on_meta_data_of_a_user_program_is_one_line():
    model, guide = _program()
    with pytest.raises(DataError, match="meta device") as raised:
        iwae(model, torch.empty(6, 4, device="meta"), 10, guide=guide)
    assert "\n" not in str(raised.value)
