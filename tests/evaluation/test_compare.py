"""The comparison of VI against NUTS: rows, gaps, flags, and the CLI end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ppl_vae.cli import main
from ppl_vae.errors import ConfigError
from ppl_vae.evaluation.compare import (
    DEFENSIVE,
    CompareConfig,
    choose_log_px,
    compare_posteriors,
    energy_distance,
)
from ppl_vae.inference.importance import Estimate
from ppl_vae.inference.mcmc import NUTSConfig

GAP_Z = 4.0  # gaps may dip below zero by this many standard errors (Monte Carlo noise)
TINY_NUTS = NUTSConfig(num_samples=200, warmup_steps=150, num_chains=2, parallel=False)


def test_comparison_rows_and_gaps(digits_vae):
    vae, x = digits_vae
    x = x[:6]
    config = CompareConfig(elbo_samples=500, iwae_samples=500, nuts=TINY_NUTS, fit_max_steps=300)
    result = compare_posteriors(vae, x, config)
    names = [row.name for row in result.rows]
    assert names == ["nuts", "encoder", "local_gaussian", "flow"]
    rows = {row.name: row for row in result.rows}
    for name in ("encoder", "local_gaussian", "flow"):
        assert rows[name].elbo < rows[name].iwae + GAP_Z * rows[name].iwae_stderr
        assert rows[name].mean_error_sd >= 0 and rows[name].sd_ratio > 0
    for gap in result.gaps.values():
        assert gap["mean"] > -GAP_Z * gap["sem_across_points"] - 1e-3
    assert rows["local_gaussian"].elbo >= rows["encoder"].elbo - 0.05
    json.loads(result.to_json())
    table = result.table()
    assert "amortization gap" in table and "approximation gap" in table


def test_unconverged_nuts_is_flagged(digits_vae):
    vae, x = digits_vae
    x = x[:6]
    short = NUTSConfig(num_samples=20, warmup_steps=10, num_chains=2, parallel=False)
    config = CompareConfig(elbo_samples=50, iwae_samples=50, nuts=short, methods=("encoder",))
    result = compare_posteriors(vae, x, config)
    assert not result.converged
    assert "WARNING: NUTS did not converge" in result.table()
    assert json.loads(result.to_json())["converged"] is False


def test_gaussian_guide_has_no_approximation_gap_on_ppca(diagonal_ppca):
    model, x = diagonal_ppca
    config = CompareConfig(elbo_samples=2000, iwae_samples=2000, nuts=TINY_NUTS,
                           methods=("encoder", "local_gaussian"), fit_max_steps=3000)
    result = compare_posteriors(model, x, config)
    assert abs(result.gaps["approximation"]["mean"]) < 0.01


def test_energy_distance_separates_distributions():
    torch.manual_seed(0)
    a, b = torch.randn(500, 3, 2), torch.randn(500, 3, 2)
    shifted = b + torch.tensor([1.0, 0.0])
    same, different = energy_distance(a, b), energy_distance(a, shifted)
    assert bool((same.abs() < 0.03).all()) and bool((different > 0.2).all())


def test_bad_method_lists():
    with pytest.raises(ConfigError, match="encoder"):
        CompareConfig(methods=("flow",))
    with pytest.raises(ConfigError, match="local_gaussian"):
        CompareConfig(methods=("encoder", "flow"))


def test_cli_compare_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", "digits", "--latent-dim", "2", "--hidden-dims", "32",
                 "--epochs", "3", "--batch-size", "128", "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "compare"
    assert main(["compare", "--checkpoint", str(run), "--num-points", "3", "--out", str(out),
                 "--num-samples", "60", "--warmup-steps", "40", "--num-chains", "2",
                 "--elbo-samples", "50", "--iwae-samples", "50", "--fit-max-steps", "200"]) == 0
    printed = capsys.readouterr()
    assert "local_gaussian" in printed.out and "WARNING" in printed.err  # 60 draws: flagged
    for name in ("comparison.json", "comparison.txt", "posteriors.png", "trace.png", "pair.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "comparison.json").read_text())
    assert len(report["point_index"]) == 3 and report["converged"] is False


@pytest.mark.slow
def test_full_size_comparison_on_mnist5k(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", "mnist5k", "--latent-dim", "2", "--epochs", "50",
                 "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "compare"
    assert main(["compare", "--checkpoint", str(run), "--num-points", "20", "--out", str(out)]) == 0
    report = json.loads((out / "comparison.json").read_text())
    assert report["converged"], report["convergence"]
    for gap in report["gaps"].values():
        assert gap["mean"] > -GAP_Z * gap["sem_across_points"]


def test_defensive_mixture_stands_in_where_no_proposal_is_trustworthy(diagonal_ppca):
    """An encoder 10x too narrow gives k̂ > 0.7 on every point; the defensive mixture's
    bounded weights then give log p(x) within GAP_Z of its errors of the exact value."""
    model, x = diagonal_ppca
    model.set_guide_to_posterior()
    with torch.no_grad():
        model.encoder.raw_scale_tril.diagonal().sub_(math.log(10.0))
    nuts = NUTSConfig(num_samples=50, warmup_steps=50, num_chains=2, parallel=False)  # not what is tested
    config = CompareConfig(elbo_samples=100, iwae_samples=3000, nuts=nuts, methods=("encoder",))
    result = compare_posteriors(model, x, config)
    per_point = result.per_point
    assert all(k > 0.7 for k in per_point["encoder_pareto_k"])
    assert per_point["log_px_method"] == [DEFENSIVE] * len(x) and result.flagged_points == []
    exact = model.log_marginal(x).detach()
    error = (torch.tensor(per_point["log_px"], dtype=torch.float64) - exact).abs()
    assert bool((error < GAP_Z * torch.tensor(per_point["log_px_stderr"], dtype=torch.float64)).all())
    assert max(per_point["log_px_pareto_k"]) <= 0.7  # bounded weights, though pre-asymptotically heavy
    report = json.loads(result.to_json())
    assert report["log_px_sources"] == {DEFENSIVE: len(x)} and report["rows"][1]["flagged_share"] == 1.0
    assert "flagged points (no proposal with k̂ <= 0.7" in result.table()


def _estimate(values, stderr, k, delta=None):
    values, stderr = torch.tensor(values), torch.tensor(stderr)
    return Estimate(values, stderr, 5000, torch.tensor(k, dtype=torch.float64), torch.ones_like(values),
                    stderr if delta is None else torch.tensor(delta))


def test_an_estimate_far_below_another_is_not_trusted():
    """Point 0: q* (k̂ 0.3) sits 1 nat below the defensive mixture's flagged estimate, far beyond
    their errors: q* missed a mode, and no estimate is left, so the point is flagged. Point 1:
    they agree, and q*'s smaller error wins. Point 2: q* is flagged, the mixture stands in."""
    inf = math.inf
    candidates = {
        "local_gaussian": _estimate([-10.0, -20.0, -30.0], [0.01, 0.01, inf], [0.3, 0.3, 0.9],
                                    delta=[0.01, 0.01, 0.01]),
        DEFENSIVE: _estimate([-9.0, -20.05, -30.2], [inf, 0.05, 0.05], [1.2, 0.2, 0.2],
                             delta=[0.1, 0.05, 0.05]),
    }
    chosen = choose_log_px(candidates)
    assert chosen["method"] == [DEFENSIVE, "local_gaussian", DEFENSIVE]
    assert chosen["flagged"].tolist() == [True, False, False]
    assert chosen["stderr"][0] == inf and chosen["log_px"].tolist() == pytest.approx([-9.0, -20.0, -30.2])
