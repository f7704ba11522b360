"""``ppl-vae evaluate`` reports Pareto k̂ and ESS, flags points, and writes valid JSON for every K."""

from __future__ import annotations

import json
import math

import pytest

from ppl_vae.cli import main


def _strict_json(text: str) -> dict:
    def refuse(constant: str):
        raise AssertionError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("iwae_samples", [1, 5, 200])
def test_evaluate_json_is_valid_and_carries_k_and_ess(trained, capsys, iwae_samples):
    assert main(["evaluate", "--checkpoint", str(trained), "--elbo-samples", str(min(iwae_samples, 20)),
                 "--iwae-samples", str(iwae_samples), "--json"]) == 0
    report = _strict_json(capsys.readouterr().out)
    count = report["num_points"]
    per_point = report["per_point"]
    assert {len(values) for values in per_point.values()} == {count}
    assert report["num_flagged"] == len(report["flagged_points"])
    assert report["flagged_share"] == pytest.approx(report["num_flagged"] / count)
    flagged = set(report["flagged_points"])
    for i, (k, stderr) in enumerate(zip(per_point["pareto_k"], per_point["iwae_stderr"])):
        # a flagged point's error bar is unknown (null); an unflagged one's is a number
        assert (stderr is None) == (i in flagged), (i, k, stderr)
    if iwae_samples < 21:  # under 5 tail draws: k̂ cannot be fitted, so nothing is vouched for
        assert report["num_flagged"] == count and report["iwae_stderr"] is None
    else:
        assert 1 <= report["ess"]["min"] <= report["ess"]["median"] <= iwae_samples
        assert all(k is None or k <= report["pareto_k_threshold"] for i, k in enumerate(per_point["pareto_k"])
                   if i not in flagged)
        assert math.isfinite(report["iwae_delta_stderr"])


def test_evaluate_table_prints_the_flagged_share(trained, capsys):
    assert main(["evaluate", "--checkpoint", str(trained), "--elbo-samples", "5",
                 "--iwae-samples", "50"]) == 0
    out = capsys.readouterr().out
    assert "Pareto k̂ median" in out and "ESS median" in out
    assert ("cannot be trusted" in out and "flagged points:" in out) or "the error bars hold" in out
