"""Evaluation over a whole data set runs in bounded memory, checked under a real memory cap."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from ppl_vae import load_dataset

ROOT = Path(__file__).resolve().parents[2]

# Importing torch and Pyro reserves about 0.85 GiB of address space; the cap leaves
# ~0.65 GiB for the work, while one unchunked pass at the K below would need
# 179 test points x 20,000 samples x 64 pixels x 4 bytes = 0.9 GiB for each of the
# decoder's output tensors (logits, log-probabilities), several of them at once.
ADDRESS_SPACE_CAP = int(1.5 * 2**30)
IWAE_SAMPLES = 20_000


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))


def _cli(*args: str, cap: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ppl_vae.cli", *args], env=env, text=True,
                          capture_output=True, timeout=600, preexec_fn=_cap_memory if cap else None)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is enforced this way on Linux")
def test_evaluate_on_the_whole_test_set_with_a_large_k_fits_under_a_memory_cap(tmp_path):
    out = tmp_path / "run"
    trained = _cli("train", "--data", "digits", "--epochs", "2", "--latent-dim", "2",
                   "--hidden-dims", "32", "--out", str(out), "--quiet")
    assert trained.returncode == 0, trained.stderr
    capped = _cli("evaluate", "--checkpoint", str(out), "--elbo-samples", "100", "--iwae-samples",
                  str(IWAE_SAMPLES), "--json", cap=True)
    assert capped.returncode == 0, capped.stderr[-2000:]
    report = json.loads(capped.stdout)
    assert report["num_points"] == len(load_dataset("digits").test_x) and report["iwae_samples"] == IWAE_SAMPLES
    assert report["elbo"] <= report["iwae"] < 0


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is enforced this way on Linux")
def test_the_cap_is_real_an_allocation_past_it_fails():
    """Guards the test above against a cap that silently does nothing."""
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; torch.empty(2 * 2**30, dtype=torch.uint8).fill_(1)"],
        preexec_fn=_cap_memory, capture_output=True, text=True, timeout=120)
    assert probe.returncode != 0


def test_running_out_of_memory_is_one_line_on_the_command_line(tmp_path, monkeypatch, capsys):
    from ppl_vae import cli

    def exhausted(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 458240000 bytes.")

    monkeypatch.setitem(cli.COMMANDS, "evaluate", exhausted)
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path)]) == cli.EXIT_ERROR
    assert capsys.readouterr().err.count("\n") == 1
