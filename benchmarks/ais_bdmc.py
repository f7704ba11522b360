"""Which log p(x) to report: ELBO, IWAE and AIS on the demo VAE, and the BDMC curve.

Usage::

    python benchmarks/ais_bdmc.py [--checkpoint runs/demo] [--iwae-samples 5000]
                                  [--bdmc-points 100] [--temperatures 30 100 300 1000]
                                  [--device auto] [--out runs/bench/ais.json]

On the 500 binarized ``mnist5k`` test digits of a trained model (``make demo``):

* the ELBO (K = 100), the IWAE bound (K = ``--iwae-samples``) and AIS with the
  library's default schedule, each with its Monte Carlo error, the share of
  points whose error bar is trusted, and the wall time; per digit, how far
  IWAE falls below AIS;
* bidirectional Monte Carlo on ``--bdmc-points`` digits simulated from the
  model at each number of temperatures: the mean and largest gap between the
  upper and the lower bound, and the time per simulated digit.

Run it on an idle machine: it is a measurement, not a test. The JSON holds
every number the docs quote (``docs/log_px.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ppl_vae import load_checkpoint, load_dataset, resolve_device
from ppl_vae.data import evaluation_data
from ppl_vae.inference import elbo, iwae
from ppl_vae.inference.ais import AISConfig, ais, bdmc
from ppl_vae.models import build_model


def _model_and_points(checkpoint: str, device: torch.device) -> tuple[torch.nn.Module, torch.Tensor]:
    saved = load_checkpoint(checkpoint)
    model = build_model(saved["model_class"], saved["model_config"])
    model.load_state_dict(saved["model_state"])
    x = evaluation_data(load_dataset("mnist5k").test_x, "dynamic", 0)
    return model.eval().to(device), x.to(device)


def _timed(function, device: torch.device):
    start = time.perf_counter()
    value = function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return value, time.perf_counter() - start


def _summary(estimate, seconds: float) -> dict:
    finite = torch.isfinite(estimate.stderr)
    return {"mean": estimate.mean, "stderr": estimate.mean_stderr,
            "delta_stderr": (float(estimate.delta_stderr.pow(2).sum().sqrt() / len(estimate.stderr))
                             if estimate.delta_stderr is not None else estimate.mean_stderr),
            "trusted_share": float(finite.double().mean()), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/demo")
    parser.add_argument("--iwae-samples", type=int, default=5000)
    parser.add_argument("--bdmc-points", type=int, default=100)
    parser.add_argument("--temperatures", type=int, nargs="+", default=[30, 100, 300, 1000])
    parser.add_argument("--skip-estimates", action="store_true", help="only the BDMC curve")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    model, x = _model_and_points(args.checkpoint, device)
    config = AISConfig()
    report = {"hardware": {"cpu": platform.processor() or platform.machine(),
                           "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "device": str(device)},
              "checkpoint": args.checkpoint, "num_points": len(x), "ais_config": asdict(config),
              "bdmc_points": args.bdmc_points}
    if not args.skip_estimates:
        torch.manual_seed(0)
        elbo_estimate, elbo_seconds = _timed(lambda: elbo(model, x, 100), device)
        iwae_estimate, iwae_seconds = _timed(lambda: iwae(model, x, args.iwae_samples), device)
        ais_estimate, ais_seconds = _timed(lambda: ais(model, x, config=config), device)
        below = ais_estimate.per_point - iwae_estimate.per_point
        report["estimates"] = {
            "elbo": _summary(elbo_estimate, elbo_seconds) | {"samples": 100},
            "iwae": _summary(iwae_estimate, iwae_seconds) | {"samples": args.iwae_samples},
            "ais": _summary(ais_estimate, ais_seconds) | {"temperatures": config.num_temperatures,
                                                         "chains": config.num_chains},
            "iwae_below_ais": {"mean": float(below.mean()), "median": float(below.median()),
                               "max": float(below.max()), "min": float(below.min())},
        }
        for name, values in report["estimates"].items():
            print(name, json.dumps(values))
    curve = []
    templates = x[:args.bdmc_points]
    for temperatures in args.temperatures:
        setting = replace(config, num_temperatures=temperatures)
        result, seconds = _timed(lambda: bdmc(model, templates, config=setting), device)
        row = {"temperatures": temperatures, "mean_gap": result.mean_gap,
               "max_gap": float(result.gap.max()), "lower": result.lower.mean,
               "upper": result.upper.mean, "seconds": seconds,
               "seconds_per_point": seconds / len(templates)}
        curve.append(row)
        print("bdmc", json.dumps(row))
    report["bdmc"] = curve
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
