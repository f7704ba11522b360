"""Log-likelihood evaluation: ppl_vae's chunked IWAE against a straightforward per-point loop.

Usage::

    python benchmarks/iwae_evaluation.py [--checkpoint runs/demo] [--num-samples 5000] [--device auto]
                                         [--out iwae.json]

Both compute the importance-weighted bound log (1/K) sum_k p(x, z_k) / q(z_k | x)
with K samples per point for the 500 binarized mnist5k test digits:

* ``ppl_vae``: :func:`ppl_vae.inference.iwae`, which scores many points and
  samples per pass (at most 2^24 decoder outputs) and folds the pieces into
  running float64 sums;
* ``per_point``: for each point, all K samples in one vectorized pass, then
  ``logsumexp`` (what one writes first; memory grows with K).

Each method runs in a fresh subprocess so that its peak resident memory
(``ru_maxrss``) is its own; the figure includes the ~0.4 GiB that importing
torch and Pyro costs; on a GPU the peak of allocated GPU memory is reported
too. Timings are medians of ``--repeats`` runs, each ending in a device sync.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import torch

from ppl_vae import VAE, load_checkpoint, load_dataset, resolve_device
from ppl_vae.data import evaluation_data
from ppl_vae.inference import iwae
from ppl_vae.models import build_model


def _model_and_points(checkpoint: str | None) -> tuple[torch.nn.Module, torch.Tensor]:
    data = load_dataset("mnist5k")
    x = evaluation_data(data.test_x, "dynamic", 0)
    if checkpoint is None:
        torch.manual_seed(0)
        return VAE(784, 20, hidden_dims=(400,)).eval(), x
    saved = load_checkpoint(checkpoint)
    model = build_model(saved["model_class"], saved["model_config"])
    model.load_state_dict(saved["model_state"])
    return model.eval(), x


@torch.no_grad()
def per_point_iwae(model: VAE, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    values = []
    for point in x:
        point = point.unsqueeze(0)
        posterior = model.guide_distribution(point)
        z = posterior.rsample((num_samples,))
        log_weights = (model.decode(z).log_prob(point) + model.prior(point).log_prob(z)
                       - posterior.log_prob(z))
        values.append(torch.logsumexp(log_weights, 0) - math.log(num_samples))
    return torch.cat(values)


def _child(method: str, checkpoint: str | None, num_samples: int, repeats: int,
           device: torch.device) -> None:
    model, x = _model_and_points(checkpoint)
    model, x = model.to(device), x.to(device)
    times, value = [], None
    for repeat in range(repeats):
        torch.manual_seed(repeat)
        start = time.perf_counter()
        if method == "ppl_vae":
            value = iwae(model, x, num_samples).per_point
        else:
            value = per_point_iwae(model, x, num_samples)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    print(json.dumps({
        "method": method, "seconds": statistics.median(times), "num_points": len(x),
        "mean_iwae": float(value.mean()),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": str(device),
        "peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a trained model (default: untrained)")
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.checkpoint, args.num_samples, args.repeats, resolve_device(args.device))
        return

    rows = {}
    for method in ("ppl_vae", "per_point"):
        command = [sys.executable, __file__, "--child", method, "--num-samples",
                   str(args.num_samples), "--repeats", str(args.repeats), "--device", args.device]
        if args.checkpoint:
            command += ["--checkpoint", args.checkpoint]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows[method] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"IWAE, K = {args.num_samples}, {rows['ppl_vae']['num_points']} test digits, "
          f"device {rows['ppl_vae']['device']}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'method':>10} {'seconds':>8} {'points/s':>9} {'peak RSS MiB':>13} {'mean IWAE':>10}")
    for method, row in rows.items():
        print(f"{method:>10} {row['seconds']:>8.2f} {row['num_points'] / row['seconds']:>9.1f} "
              f"{row['peak_rss_mib']:>13.0f} {row['mean_iwae']:>10.2f}")
    speedup = rows["per_point"]["seconds"] / rows["ppl_vae"]["seconds"]
    print(f"ppl_vae is {speedup:.2f}x the per-point loop's speed")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"rows": rows, "speedup": speedup, "num_samples": args.num_samples}, handle,
                      indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
