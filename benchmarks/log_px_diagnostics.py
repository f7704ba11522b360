"""log p̂(x) of ``compare_posteriors`` against exact log p(x), before and after the k̂ rules.

Usage::

    python benchmarks/log_px_diagnostics.py --checkpoint runs/z2 [--num-points 100] [--out out.json]
    python benchmarks/log_px_diagnostics.py --checkpoint runs/z2 --cost-only

For a model with a 2-D latent space (trained e.g. with ``ppl-vae train --data
mnist5k --latent-dim 2 --epochs 50 --out runs/z2``) and the first test digits:

* exact log p(x) by grid quadrature (``tests/helpers/quadrature.py``);
* one ``compare_posteriors`` run, from which both rules are read:
  *before*, log p̂(x) from the method with the smallest average delta-method
  error, that error reported; *after*, the per-point rule with k̂ and the
  defensive mixture (:mod:`ppl_vae.evaluation.compare`);
* the largest |z| = |log p̂(x) - log p(x)| / reported error of each rule
  (after: over unflagged points), the share of points whose weights have
  k̂ above the threshold per proposal, and how many points were flagged;
* the cost of the diagnostics: IWAE at K = 5,000 on the points with and
  without the k̂ buffer, timed interleaved (``--repeats`` each, median ratio),
  and the peak resident memory of each in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.quadrature import log_marginal_grid  # noqa: E402

from ppl_vae import load_checkpoint, load_dataset  # noqa: E402
from ppl_vae.data import evaluation_data
from ppl_vae.evaluation.compare import CompareConfig, compare_posteriors  # noqa: E402
from ppl_vae.inference import importance as likelihood
from ppl_vae.inference.mcmc import NUTSConfig  # noqa: E402
from ppl_vae.inference.streaming import RunningLogMeanExp  # noqa: E402
from ppl_vae.models import build_model  # noqa: E402


def _model_and_points(checkpoint: str, num_points: int):
    saved = load_checkpoint(checkpoint)
    model = build_model(saved["model_class"], saved["model_config"])
    model.load_state_dict(saved["model_state"])
    meta = saved["metadata"]
    data = load_dataset(meta["data"], root=meta["data_root"], seed=meta["data_seed"])
    x = evaluation_data(data.test_x, saved["svi_config"]["binarize"], meta["data_seed"])
    return model.eval(), x[:num_points]


class _NoDiagnostics(RunningLogMeanExp):
    """The accumulator as it was before: no top-M buffer, no k̂."""

    def __init__(self, num_samples: int | None = None) -> None:
        super().__init__(None)


def _iwae(model, x, num_samples: int, diagnostics: bool) -> float:
    original = likelihood.RunningLogMeanExp
    likelihood.RunningLogMeanExp = original if diagnostics else _NoDiagnostics
    try:
        started = time.perf_counter()
        likelihood.iwae(model, x, num_samples)
        return time.perf_counter() - started
    finally:
        likelihood.RunningLogMeanExp = original


def cost(model, x, num_samples: int, repeats: int) -> dict:
    times = {True: [], False: []}
    for _ in range(repeats):
        for diagnostics in (False, True):  # interleaved, so contention hits both alike
            times[diagnostics].append(_iwae(model, x, num_samples, diagnostics))
    ratios = [a / b for a, b in zip(times[True], times[False])]
    return {"seconds_without": statistics.median(times[False]),
            "seconds_with": statistics.median(times[True]),
            "time_ratio_median": statistics.median(ratios)}


def peak_memory(args: argparse.Namespace, diagnostics: bool) -> float:
    """Peak RSS (MiB) of a fresh process running one IWAE, with or without the diagnostics."""
    code = (f"import sys; sys.argv=['x', '--checkpoint', {args.checkpoint!r}, '--num-points', "
            f"'{args.num_points}', '--iwae-samples', '{args.iwae_samples}', '--_one', "
            f"'{int(diagnostics)}']; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "import log_px_diagnostics as b; b.main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def accuracy(model, x, config: CompareConfig) -> dict:
    exact = log_marginal_grid(model, x).float()
    result = compare_posteriors(model, x, config)
    per_point = result.per_point
    methods = [row.name for row in result.rows[1:]]

    def column(key: str) -> torch.Tensor:
        return torch.tensor([float("nan") if v is None else v for v in per_point[key]])

    # Before: every point from the method with the smallest average delta-method error.
    before_method = min(methods, key=lambda n: float(column(f"{n}_iwae_delta_stderr").pow(2).mean()))
    z_before = (column(f"{before_method}_iwae") - exact) / column(f"{before_method}_iwae_delta_stderr")
    flagged = torch.tensor(per_point["log_px_flagged"])
    z_after = (column("log_px") - exact) / column("log_px_stderr")
    return {
        "num_points": len(x),
        "before": {"method": before_method, "max_abs_z": float(z_before.abs().max()),
                   "points_beyond_4": int((z_before.abs() > 4).sum())},
        "after": {"max_abs_z_unflagged": float(z_after[~flagged].abs().max()),
                  "points_beyond_4_unflagged": int((z_after[~flagged].abs() > 4).sum()),
                  "flagged": int(flagged.sum()), "flagged_points": result.flagged_points,
                  "sources": result.log_px_sources},
        "flagged_share_per_proposal": {row.name: row.flagged_share for row in result.rows[1:]},
        "pareto_k_max_per_proposal": {row.name: row.pareto_k_max for row in result.rows[1:]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--num-points", type=int, default=100)
    parser.add_argument("--iwae-samples", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nuts-samples", type=int, default=1000)
    parser.add_argument("--cost-only", action="store_true")
    parser.add_argument("--out")
    parser.add_argument("--_one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, x = _model_and_points(args.checkpoint, args.num_points)
    if args._one is not None:
        _iwae(model, x, args.iwae_samples, bool(args._one))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    report = {"cost": cost(model, x, args.iwae_samples, args.repeats),
              "peak_rss_mib": {"without": peak_memory(args, False), "with": peak_memory(args, True)}}
    print(json.dumps(report, indent=2), flush=True)
    if not args.cost_only:
        nuts = NUTSConfig(num_samples=args.nuts_samples, warmup_steps=args.nuts_samples, num_chains=2)
        config = CompareConfig(elbo_samples=1000, iwae_samples=args.iwae_samples, nuts=nuts)
        report["accuracy"] = accuracy(model, x, config)
        print(json.dumps(report["accuracy"], indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
