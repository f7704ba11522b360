"""The compiled JAX peers of benchmarks/peers: the port computes ppl_vae's model, the driver runs.

CI does not install the ``bench`` extra; there only the missing-package test runs.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

#: Two independent IWAE estimates of the same bound differ by less than this many
#: standard errors of their difference (a false alarm once in ~150,000 runs).
MC_Z = 4.5


def _hide(monkeypatch, package: str) -> None:
    """Make ``import package`` fail as if it were not installed (a None entry in sys.modules)."""
    for name in [name for name in sys.modules if name.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)


def test_paired_repeats_give_the_median_of_their_ratios():
    """Repeats that share the machine's state are compared pair by pair, not median to median."""
    import peers_vs_ppl_vae as bench

    row = bench._row("w", "s", 3.0, "peer", 2.0, higher_is_better=False,
                     paired=([1.0, 10.0, 3.0], [2.0, 10.0, 1.0]))
    assert row["ratio"] == 1.0  # ratios 0.5, 1, 3; the medians' ratio would be 1.5
    assert bench._row("w", "s", 3.0, "peer", 2.0, higher_is_better=False)["ratio"] == 1.5
    with pytest.raises(ValueError):
        bench._row("w", "s", 3.0, "peer", 2.0, higher_is_better=False, paired=([1.0], [1.0, 2.0]))


def test_missing_peer_package_gives_one_line(monkeypatch):
    from peers import INSTALL_HINT, missing_package

    _hide(monkeypatch, "numpyro")
    line = missing_package(("os", "numpyro", "json"))
    assert line == f"numpyro not installed: {INSTALL_HINT}"
    assert "\n" not in line
    assert missing_package(("os", "json")) is None


@pytest.fixture(scope="module")
def small_problem():
    """An untrained 784-32-4 VAE and 40 binarized test digits."""
    pytest.importorskip("jax")
    from peers.problems import Problem, evaluation_digits, load_vae

    return Problem(load_vae(None, latent_dim=4, hidden=32, seed=3), evaluation_digits(None, 40))


def test_jax_port_log_joint_equals_ppl_vae(small_problem):
    from peers import jax_vae

    params = jax_vae.port(small_problem.model)
    z = torch.randn(3, len(small_problem.x), 4, generator=torch.Generator().manual_seed(1))
    for check in (jax_vae.check_port(small_problem.model, params, small_problem.x, z),
                  jax_vae.check_port(small_problem.model, params, small_problem.x)):
        assert check.to_float64 <= jax_vae.LOG_JOINT_RTOL
        # ppl_vae's float32 value rounds on its own: at most the two roundings apart
        assert check.to_float32 <= 2 * jax_vae.LOG_JOINT_RTOL


def test_jax_port_check_catches_a_wrong_port(small_problem):
    from peers import jax_vae

    params = jax_vae.port(small_problem.model)
    weight, bias = params["decoder"][-1]
    params["decoder"][-1] = (weight, bias + 1e-3)
    with pytest.raises(AssertionError, match="does not compute the model"):
        jax_vae.check_port(small_problem.model, params, small_problem.x)


def test_jax_encoder_equals_ppl_vae(small_problem):
    import numpy as np
    from peers import jax_vae

    params = jax_vae.port(small_problem.model)
    loc, scale = jax_vae.encode(params, jax_vae.as_jax(small_problem.x))
    with torch.no_grad():
        expected_loc, expected_scale = small_problem.model.encode(small_problem.x)
    np.testing.assert_allclose(np.asarray(loc), expected_loc.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(scale), expected_scale.numpy(), rtol=1e-5, atol=1e-6)


def test_jax_iwae_mean_agrees_with_ppl_vae(small_problem):
    import jax
    import numpy as np
    from peers import jax_iwae, jax_vae

    from ppl_vae import iwae

    num_samples = 500
    params = jax_vae.port(small_problem.model)
    got = np.asarray(jax_iwae.iwae(params, jax_vae.as_jax(small_problem.x), num_samples,
                                   jax.random.key(0), latent_dim=4), dtype=np.float64)
    torch.manual_seed(0)
    expected = iwae(small_problem.model, small_problem.x, num_samples)
    assert got.shape == (len(small_problem.x),)
    difference, stderr = jax_iwae.mean_difference(got, expected.per_point.numpy())
    assert abs(difference) <= MC_Z * stderr
    # the error is that of K samples per point: no larger than the points' own delta-method errors
    assert stderr <= 3 * math.sqrt(2 * float((expected.delta_stderr.double() ** 2).sum())) / len(got)


def test_jax_iwae_chunks_follow_ppl_vae_rule():
    pytest.importorskip("jax")
    from peers.jax_iwae import chunk_plan

    # 2^21 decoder outputs per pass on a CPU: 500 digits x 5 samples x 784 pixels
    assert chunk_plan(500, 784, 20, 5000) == (500, 5)
    assert chunk_plan(3000, 784, 20, 1000) == (2674, 1)


def test_driver_skips_a_missing_peer_and_still_runs_ppl_vae(monkeypatch, capsys, tmp_path):
    from peers_vs_ppl_vae import main

    _hide(monkeypatch, "numpyro")
    out = tmp_path / "peers.json"
    assert main(["--quick", "--only", "svi", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    # numpyro, or jax where the bench extra is not installed at all (CI)
    skipped = [line for line in printed.out.splitlines() if "not installed" in line]
    assert skipped in (["numpyro not installed: pip install -e '.[bench]'"],
                       ["jax not installed: pip install -e '.[bench]'"])
    assert "Traceback" not in printed.out + printed.err
    result = json.loads(out.read_text())
    assert result["table"] == []
    assert result["svi"][0]["ppl_vae_ms_per_step"] > 0
    assert "numpyro_epoch_ms_per_step" not in result["svi"][0]
    # the machine's speed before and after, to tell a run that straddles two speeds
    before, after = result["settings"]["matrix_product_gflops_before_after"]
    assert before > 0 and after > 0 and f"{before:.0f} GFLOP/s before the run" in printed.out


def test_driver_names_a_missing_checkpoint(capsys, tmp_path):
    from peers_vs_ppl_vae import main

    assert main(["--only", "nuts", "--checkpoint-z2", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "make runs/z2/checkpoint.pt" in err


def test_quick_driver_runs_end_to_end(capsys, tmp_path):
    for package in ("jax", "numpyro", "blackjax", "optax"):
        pytest.importorskip(package)
    from peers_vs_ppl_vae import main

    out = tmp_path / "peers.json"
    assert main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    peers = [row["peer"] for row in result["table"]]
    assert peers == ["NumPyro step jit", "NumPyro epoch jit", "BlackJAX vmapped NUTS",
                     "BlackJAX vmapped NUTS", "jax.jit chunked IWAE"]
    assert all(row["ratio"] > 0 and math.isfinite(row["ratio"]) for row in result["table"])
    assert result["iwae"]["means_agree"]
    nuts = result["nuts"]
    for sampler in ("ppl_vae", "blackjax"):
        assert nuts[sampler]["min_bulk_ess"] > 0
        assert nuts[sampler]["mean_longest_lane_steps_per_draw"] >= nuts[sampler]["mean_leapfrog_steps_per_draw"]
    assert "JAX port checked" in capsys.readouterr().out


def test_nuts_starts_are_the_ones_ppl_vae_uses(monkeypatch):
    """The peers' chain starts and initial inverse mass equal what sample_posterior passes batched_nuts."""
    from peers.problems import evaluation_digits, load_vae, nuts_starts

    import ppl_vae.inference.mcmc.api as mcmc

    model, x = load_vae(None, latent_dim=2, hidden=16, seed=5), evaluation_digits(None, 3)
    config = mcmc.NUTSConfig(num_samples=5, warmup_steps=5, num_chains=3, seed=7)
    seen = {}

    def capture(potential, init, num_samples, warmup_steps, **kwargs):
        seen["init"], seen["inverse_mass"] = init, kwargs["inverse_mass"]
        raise StopIteration

    monkeypatch.setattr(mcmc, "batched_nuts", capture)
    with pytest.raises(StopIteration):
        mcmc.sample_posterior(model, x, config)
    init, inverse_mass = nuts_starts(model, x, config)
    assert init.shape == (3, 3, 2) and inverse_mass.shape == (3, 3, 2, 2)
    # ppl_vae's rows are chain-major: chain c's points are rows c * num_points ...
    assert torch.equal(init.reshape(-1, 2), seen["init"])
    assert torch.equal(torch.diag_embed(seen["inverse_mass"]), inverse_mass.reshape(-1, 2, 2))
    assert not torch.equal(init[0], init[1])  # each chain its own seed


def test_numpyro_objective_is_ppl_vae_elbo(small_problem):
    """NumPyro's loss at a ppl_vae model's weights estimates minus the sum of ppl_vae's ELBOs."""
    pytest.importorskip("numpyro")
    import jax
    import numpy as np
    from peers import jax_vae, numpyro_svi

    from ppl_vae import elbo

    model, x = small_problem.model, small_problem.x
    svi = numpyro_svi.make_svi(784, 4, 32, num_data=len(x), init=jax_vae.port(model))
    batch = jax_vae.as_jax(x)
    params = svi.get_params(svi.init(jax.random.key(0), batch))
    loss = jax.jit(lambda key: svi.loss.loss(key, params, svi.model, svi.guide, batch))
    losses = np.array([float(loss(key)) for key in jax.random.split(jax.random.key(1), 200)])
    torch.manual_seed(0)
    expected = elbo(model, x, num_samples=200)
    expected_sum = -float(expected.per_point.double().sum())
    expected_stderr = math.sqrt(float((expected.stderr.double() ** 2).sum()))
    stderr = math.sqrt(losses.var(ddof=1) / len(losses) + expected_stderr**2)
    assert abs(losses.mean() - expected_sum) <= MC_Z * stderr
