"""Data-parallel SVI: two gloo processes on the CPU, launched by torchrun as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppl_vae import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([*TORCHRUN, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_two_processes_keep_identical_parameters_and_the_single_process_loss(tmp_path):
    report_path = tmp_path / "report.json"
    run = _run([str(ROOT / "tests" / "helpers" / "distributed_worker.py"), str(report_path)], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["world_size"] == 2
    for rows in (8, 7):
        parallel, single = report[f"loss_{rows}_rows"]
        assert parallel == pytest.approx(single, rel=1e-12), rows
    assert report["parameters_equal"]  # DDP broadcast rank 0's weights, then kept them in step


def test_torchrun_cli_training_writes_one_checkpoint_from_rank_zero(tmp_path):
    out = tmp_path / "run"
    run = _run(["-m", "ppl_vae.cli", "train", "--data", "digits", "--epochs", "2",
                "--latent-dim", "2", "--hidden-dims", "16", "--batch-size", "64",
                "--out", str(out)], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("2 processes") == 1  # rank 0 speaks, rank 1 stays quiet
    checkpoint = load_checkpoint(out)
    assert checkpoint["epoch"] == 2 and len(checkpoint["history"]) == 2
    assert sorted(p.name for p in out.iterdir()) == [".ppl_vae_manifest.json", "checkpoint.pt",
                                                     "metrics.jsonl", "samples.png", "summary.json"]


def test_torchrun_evaluate_shares_ais_out_and_matches_one_process(trained, tmp_path, capsys):
    from ppl_vae.cli import main

    argv = ["evaluate", "--checkpoint", str(trained), "--elbo-samples", "2", "--iwae-samples", "4",
            "--ais", "--ais-temperatures", "3", "--ais-chains", "4", "--json"]
    # 179 test digits in chunks of 128: rank 0 anneals chunk 0, rank 1 chunk 1.
    run = _run(["-m", "ppl_vae.cli", *argv], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    shared = json.loads(run.stdout)
    assert shared["processes"] == 2
    assert main(argv) == 0
    alone = json.loads(capsys.readouterr().out)
    assert shared["ais"]["per_point"] == alone["ais"]["per_point"]
