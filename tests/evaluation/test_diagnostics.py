"""Diagnostics: InferenceData layout, convergence verdicts on chains of known quality, plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ppl_vae.errors import DataError
from ppl_vae.evaluation.diagnostics import (
    MIN_ESS_PER_CHAIN,
    R_HAT_MAX,
    check_convergence,
    plot_pair,
    plot_trace,
    to_inference_data,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHAINS, DRAWS, POINTS, LATENTS = 4, 500, 3, 2


def iid_draws(seed: int = 0, shape: tuple[int, ...] = (CHAINS, DRAWS, POINTS, LATENTS)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def ar1_draws(rho: float, seed: int = 0) -> np.ndarray:
    """Stationary AR(1) chains with unit marginal variance, shape (chain, draw, point, latent)."""
    noise = iid_draws(seed) * np.sqrt(1 - rho**2)
    draws = np.empty_like(noise)
    draws[:, 0] = iid_draws(seed + 1)[:, 0]
    for t in range(1, DRAWS):
        draws[:, t] = rho * draws[:, t - 1] + noise[:, t]
    return draws


def stats(diverging: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    shape = (CHAINS, DRAWS, POINTS)
    if diverging is None:
        diverging = np.zeros(shape, dtype=bool)
    return {
        "diverging": torch.as_tensor(diverging),
        "tree_depth": torch.full(shape, 3, dtype=torch.long),
        "num_steps": torch.full(shape, 7, dtype=torch.long),
        "step_size": torch.full(shape, 0.3, dtype=torch.float64),
        "acceptance_rate": torch.full(shape, 0.8),
        "energy": torch.zeros(shape),
    }


def test_layout_dims_coords_and_stat_dtypes():
    idata = to_inference_data(torch.as_tensor(iid_draws()), stats(), point_index=[7, 2, 5])
    z = idata.posterior["z"]
    assert z.dims == ("chain", "draw", "point", "latent")
    assert z.shape == (CHAINS, DRAWS, POINTS, LATENTS)
    assert z.coords["point"].values.tolist() == [7, 2, 5]
    assert z.coords["latent"].values.tolist() == [0, 1]
    np.testing.assert_array_equal(z.values, iid_draws())
    for name in ("diverging", "tree_depth", "num_steps", "step_size", "acceptance_rate", "energy"):
        assert idata.sample_stats[name].dims == ("chain", "draw", "point"), name
    assert idata.sample_stats["diverging"].dtype == bool
    assert np.issubdtype(idata.sample_stats["tree_depth"].dtype, np.integer)
    assert np.issubdtype(idata.sample_stats["step_size"].dtype, np.floating)


def test_default_point_index_and_no_stats():
    idata = to_inference_data(iid_draws())
    assert idata.posterior["z"].coords["point"].values.tolist() == [0, 1, 2]
    assert "sample_stats" not in idata.groups()
    np.testing.assert_array_equal(check_convergence(idata).divergences, np.zeros(POINTS, dtype=int))


def test_iid_chains_pass():
    report = check_convergence(to_inference_data(iid_draws(), stats()))
    assert report.converged, report.reasons
    assert report.r_hat.shape == report.ess_bulk.shape == report.ess_tail.shape == (POINTS, LATENTS)
    assert (report.r_hat < R_HAT_MAX).all()
    assert (report.ess_bulk > MIN_ESS_PER_CHAIN * CHAINS).all()
    assert (report.num_chains, report.num_draws) == (CHAINS, DRAWS)
    assert report.reasons == []


def test_single_chain_still_gets_r_hat():
    report = check_convergence(to_inference_data(iid_draws(shape=(1, 1000, 2, 2))))
    assert np.isfinite(report.r_hat).all()
    assert report.converged, report.reasons


def test_single_chain_with_a_trend_is_flagged():
    draws = iid_draws(shape=(1, 1000, 1, 1))
    draws[0, 500:] += 3.0
    report = check_convergence(to_inference_data(draws))
    assert report.flagged.tolist() == [True]
    assert "R-hat" in report.reasons[0]


def test_shifted_chain_flags_only_that_point():
    draws = iid_draws()
    draws[0, :, 1, 0] += 2.0
    report = check_convergence(to_inference_data(draws, point_index=[10, 11, 12]))
    assert report.flagged.tolist() == [False, True, False]
    assert len(report.reasons) == 1
    assert report.reasons[0].startswith("point 11:")
    assert "R-hat" in report.reasons[0] and "(latent 0)" in report.reasons[0]
    assert not report.converged


def test_autocorrelated_chains_flagged_for_ess():
    report = check_convergence(to_inference_data(ar1_draws(rho=0.99)))
    assert report.flagged.all()
    assert (report.ess_bulk < MIN_ESS_PER_CHAIN * CHAINS).all()
    assert all("bulk ESS" in reason for reason in report.reasons)


def test_constant_draws_flagged_as_nan_r_hat():
    draws = iid_draws()
    draws[:, :, 2, 1] = 0.5
    report = check_convergence(to_inference_data(draws))
    assert report.flagged.tolist() == [False, False, True]
    assert "NaN" in report.reasons[0]
    assert "nan" in report.table().splitlines()[3]


def test_divergences_counted_per_point():
    diverging = np.zeros((CHAINS, DRAWS, POINTS), dtype=bool)
    diverging[0, 10, 0] = diverging[3, 400, 0] = diverging[1, 7, 2] = True
    report = check_convergence(to_inference_data(iid_draws(), stats(diverging)))
    np.testing.assert_array_equal(report.divergences, [2, 0, 1])
    assert report.flagged.tolist() == [True, False, True]
    assert "2 divergent transitions" in report.reasons[0]


@pytest.mark.parametrize("samples, sample_stats, point_index, match", [
    (np.zeros((4, 10, 2)), None, None, "chain, draw, point, latent"),
    (np.full((2, 10, 1, 1), np.nan), None, None, "NaN"),
    (np.full((2, 10, 1, 1), np.inf), None, None, "NaN or infinite"),
    (np.zeros((2, 3, 1, 1)), None, None, "4 draws"),
    (np.zeros((0, 10, 1, 1)), None, None, "1 chain"),
    (np.zeros((2, 10, 3, 1)), {"diverging": np.zeros((2, 10))}, None, "'diverging'.*\\(2, 10, 3\\)"),
    (np.zeros((2, 10, 3, 1)), {"tree_depth": np.full((2, 10, 3), 2.5)}, None, "tree_depth"),
    (np.zeros((2, 10, 3, 1)), None, [0, 1], "point_index"),
])
def test_bad_inputs_raise_data_error(samples, sample_stats, point_index, match):
    with pytest.raises(DataError, match=match):
        to_inference_data(samples, sample_stats, point_index)


def test_table_and_json():
    draws = iid_draws()
    draws[:, :, 0, 1] = 1.0
    report = check_convergence(to_inference_data(draws, stats(), point_index=[4, 8, 15]))
    rows = report.table().splitlines()
    assert len(rows) == 1 + POINTS
    assert [row.split()[0] for row in rows[1:]] == ["4", "8", "15"]
    assert rows[1].endswith("FLAGGED") and rows[2].endswith("ok")
    summary = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert summary["flagged_points"] == [4]
    assert [row["point"] for row in summary["points"]] == [4, 8, 15]
    assert summary["points"][0]["max_r_hat"] is None


def test_plots_written_as_png(tmp_path):
    idata = to_inference_data(iid_draws(shape=(2, 100, 6, 2)), point_index=range(10, 16))
    plot_trace(idata, tmp_path / "trace.png", max_points=2)
    plot_trace(idata, tmp_path / "trace_some.png", points=[15, 11, 15])  # a repeat is drawn once
    plot_pair(idata, tmp_path / "pair.png", point=13)
    for name in ("trace.png", "trace_some.png", "pair.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pair.png", "trace.png", "trace_some.png"]


def test_plot_rejects_unknown_point_and_latent(tmp_path):
    idata = to_inference_data(iid_draws(shape=(2, 50, 2, 2)))
    with pytest.raises(DataError, match="not in the posterior"):
        plot_trace(idata, tmp_path / "trace.png", points=[5])
    with pytest.raises(DataError, match="latents"):
        plot_pair(idata, tmp_path / "pair.png", point=0, latents=(0, 0))
    assert list(tmp_path.iterdir()) == []
