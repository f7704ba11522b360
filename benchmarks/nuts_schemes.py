"""Which NUTS scheme samples many latent posteriors fastest? Joint run vs one run per point.

Usage::

    python benchmarks/nuts_schemes.py --checkpoint runs/z2 --num-points 20 [--out bench.json]

Both schemes sample the same test points with the same settings; the figure
of merit is effective samples per second: the smallest bulk ESS over all
points and coordinates divided by the wall time, reported with the worst
R-hat so that only converged runs are compared.
"""

from __future__ import annotations

import argparse
import json

import pyro
import torch

from ppl_vae.checkpoint import load_checkpoint
from ppl_vae.data import load_dataset
from ppl_vae.inference.diagnostics import check_convergence
from ppl_vae.inference.mcmc import SCHEMES, NUTSConfig, sample_posterior
from ppl_vae.inference.svi import evaluation_data
from ppl_vae.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--num-points", type=int, default=20)
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--num-chains", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    checkpoint = load_checkpoint(args.checkpoint)
    model = build_model(checkpoint["model_class"], checkpoint["model_config"])
    model.load_state_dict(checkpoint["model_state"])
    meta = checkpoint["metadata"]
    data = load_dataset(meta["data"], root=meta["data_root"], seed=meta["data_seed"])
    x = evaluation_data(data.test_x, checkpoint["svi_config"]["binarize"], meta["data_seed"])
    x = x[:args.num_points]

    rows = []
    for scheme in SCHEMES:
        pyro.set_rng_seed(0)
        config = NUTSConfig(num_samples=args.num_samples, warmup_steps=args.warmup_steps,
                            num_chains=args.num_chains, scheme=scheme, parallel=False)
        result = sample_posterior(model, x, config)
        report = check_convergence(result.to_inference_data())
        min_ess = float(report.ess_bulk.min())
        rows.append({
            "scheme": scheme, "num_points": len(x), "wall_time_s": result.wall_time,
            "min_bulk_ess": min_ess, "ess_per_s": min_ess / result.wall_time,
            "max_r_hat": float(report.r_hat.max()), "converged": report.converged,
            "mean_leapfrog_steps": float(result.sample_stats["num_steps"].float().mean()),
        })
        print(json.dumps(rows[-1]))
    joint, per_point = rows
    print(f"joint / per-point ESS per second: {joint['ess_per_s'] / per_point['ess_per_s']:.1f}x "
          f"({len(x)} points, {args.num_chains} chains, {torch.get_num_threads()} threads)")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
