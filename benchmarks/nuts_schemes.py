"""Effective samples per second of NUTS on many latent posteriors: batched chains vs Pyro's NUTS.

Usage::

    python benchmarks/nuts_schemes.py --checkpoint runs/z2 --baseline-points 5 [--out nuts.json]

All schemes sample p(z | x) for the same 100 test points with the same chains,
warm-up and draws (4 chains x (1000 + 3000) by default, enough for every
point of the latent-2 model to pass the bar below):

* ``batched``: ppl_vae's batched NUTS, every chain of every point its own NUTS
  with its own dense mass matrix (``--diagonal-mass`` for a diagonal one), one
  batched gradient per leapfrog step, torch's threads;
* ``joint``: one Pyro NUTS run over all points at once (chains in parallel
  processes, Pyro's default diagonal mass matrix);
* ``per_point``: one default Pyro NUTS run per point, the baseline (chains in
  parallel processes, one per core, as Pyro's ``MCMC`` would run them).

The figure of merit is the smallest bulk ESS over all points and coordinates
divided by the wall time, reported with the largest R-hat; a run counts as
converged when R-hat < 1.01 and bulk ESS >= 400 for every point and
coordinate. The per-point baseline takes about 27 s per point here; with
``--baseline-points K`` it samples only K of the points (the first K - 1 and
the one where the batched run had its smallest ESS, so the hardest point is
in) and its wall time is scaled to all points, which can only flatter it:
its smallest ESS is taken over fewer points.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pyro
import torch

from ppl_vae.checkpoint import load_checkpoint
from ppl_vae.data import evaluation_data, load_dataset
from ppl_vae.devices import resolve_device
from ppl_vae.evaluation.diagnostics import check_convergence
from ppl_vae.inference.mcmc import NUTSConfig, sample_posterior
from ppl_vae.models import build_model

#: The issue's bar for "converged": every point and coordinate.
R_HAT_BELOW, MIN_BULK_ESS = 1.01, 400


def _measure(model: torch.nn.Module, x: torch.Tensor, points: list[int], scheme: str,
             args: argparse.Namespace) -> tuple[dict, np.ndarray]:
    pyro.set_rng_seed(0)
    config = NUTSConfig(num_samples=args.num_samples, warmup_steps=args.warmup_steps,
                        num_chains=args.num_chains, scheme=scheme, parallel=True, seed=0,
                        dense_mass=scheme == "batched" and not args.diagonal_mass)
    result = sample_posterior(model, x[points], config, point_index=points)
    report = check_convergence(result.to_inference_data())
    ess = np.asarray(report.ess_bulk)
    r_hat = np.asarray(report.r_hat)
    scale = args.num_points / len(points)
    row = {
        "scheme": scheme, "points_sampled": len(points), "wall_time_s": result.wall_time,
        "wall_time_all_points_s": result.wall_time * scale,
        "min_bulk_ess": float(ess.min()), "max_r_hat": float(r_hat.max()),
        "converged": bool(r_hat.max() < R_HAT_BELOW and ess.min() >= MIN_BULK_ESS),
        "points_not_converged": [points[i] for i in np.nonzero(((r_hat >= R_HAT_BELOW)
                                                                 | (ess < MIN_BULK_ESS)).any(-1))[0]],
        "ess_per_s": float(ess.min()) / (result.wall_time * scale),
        "mean_leapfrog_steps_per_draw": float(result.sample_stats["num_steps"].float().mean()),
        "divergences": int(result.sample_stats["diverging"].sum()),
    }
    print(json.dumps(row), flush=True)
    return row, ess.min(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--num-points", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=3000)
    parser.add_argument("--warmup-steps", type=int, default=1000)
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--schemes", nargs="+", default=["batched", "joint", "per_point"],
                        choices=["batched", "joint", "per_point"])
    parser.add_argument("--baseline-points", type=int, default=None,
                        help="sample only this many points with the per-point scheme (see above)")
    parser.add_argument("--diagonal-mass", action="store_true",
                        help="batched scheme with a diagonal mass matrix, like the Pyro runs")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    checkpoint = load_checkpoint(args.checkpoint)
    model = build_model(checkpoint["model_class"], checkpoint["model_config"])
    model.load_state_dict(checkpoint["model_state"])
    device = resolve_device(args.device)
    model = model.to(device)
    meta = checkpoint["metadata"]
    data = load_dataset(meta["data"], root=meta["data_root"], seed=meta["data_seed"])
    x = evaluation_data(data.test_x, checkpoint["svi_config"]["binarize"], meta["data_seed"])
    x = x[:args.num_points].to(device)
    all_points = list(range(len(x)))

    rows, hardest = [], None
    for scheme in ["batched", "joint", "per_point"]:
        if scheme not in args.schemes:
            continue
        points = all_points
        if scheme == "per_point" and args.baseline_points and args.baseline_points < len(x):
            chosen = all_points[:args.baseline_points - 1]
            extra = hardest if hardest is not None and hardest not in chosen else args.baseline_points - 1
            points = [*chosen, extra]
        row, ess_by_point = _measure(model, x, points, scheme, args)
        if scheme == "batched":
            hardest = int(np.argmin(ess_by_point))
        rows.append(row)

    by_scheme = {row["scheme"]: row for row in rows}
    print(f"\n{len(x)} points, {args.num_chains} chains x ({args.warmup_steps} warm-up + "
          f"{args.num_samples} draws), device {device}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"{'scheme':<10} {'wall s':>8} {'min ESS':>8} {'max R-hat':>9} {'ESS/s':>8} {'steps/draw':>10} "
          f"{'converged':>9}")
    for row in rows:
        print(f"{row['scheme']:<10} {row['wall_time_all_points_s']:>8.1f} {row['min_bulk_ess']:>8.0f} "
              f"{row['max_r_hat']:>9.4f} {row['ess_per_s']:>8.2f} {row['mean_leapfrog_steps_per_draw']:>10.2f} "
              f"{row['converged']!s:>9}")
    if "batched" in by_scheme:
        for other in ("joint", "per_point"):
            if other in by_scheme:
                ratio = by_scheme["batched"]["ess_per_s"] / by_scheme[other]["ess_per_s"]
                print(f"batched / {other} ESS per second: {ratio:.1f}x")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"settings": vars(args), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
