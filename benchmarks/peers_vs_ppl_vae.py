"""ppl_vae against the compiled JAX peers, side by side in one run: SVI, NUTS and IWAE.

Usage::

    python benchmarks/peers_vs_ppl_vae.py [--checkpoint runs/demo] [--checkpoint-z2 runs/z2]
                                          [--only svi nuts iwae] [--repeats 5] [--device auto]
                                          [--nuts-draws 1000 3000] [--out peers.json]
    python benchmarks/peers_vs_ppl_vae.py --quick        # tiny sizes, untrained models, seconds

Needs the ``bench`` extra (``pip install -e '.[bench]'``); a peer whose package
is missing is skipped with one line and ppl_vae's side still runs.

* SVI (784-400-L VAE, mnist5k training digits, Bernoulli likelihood,
  closed-form KL, Adam 1e-3, dynamic binarization, a reshuffle per epoch):
  :func:`ppl_vae.train` against NumPyro's ``jax.jit(svi.update)`` (``step``)
  and a whole epoch in one ``jit`` + ``lax.fori_loop`` (``epoch``), for
  (latent, batch) = (20, 128), (20, 256), (2, 128); ms per step, median of
  interleaved repeats, the first epoch of every run a warm-up; NumPyro's
  compile time reported separately (:mod:`peers.numpyro_svi`).
* NUTS (the latent-2 checkpoint, 100 test digits x 4 chains x (1,000 warm-up
  + 3,000 draws), dense mass): ppl_vae's batched NUTS against BlackJAX NUTS +
  window adaptation vmapped over the 400 lanes in one ``jit``, the same
  binarized digits and the same starting points (:mod:`peers.blackjax_nuts`);
  smallest bulk ESS per second of wall time.
* IWAE (K = 5,000, the 500 test digits, the latent-20 checkpoint): ppl_vae's
  streaming :func:`ppl_vae.iwae` against a ``jax.jit`` IWAE chunking K under
  the same memory bound (:mod:`peers.jax_iwae`); seconds, and the two means'
  agreement in Monte Carlo standard errors.

Before anything is timed the JAX port of each model is checked against
ppl_vae's log joint (relative 1e-6, :func:`peers.jax_vae.check_port`).
With ``--device cuda`` ppl_vae runs on the GPU, and JAX on its default
backend (the GPU, where jax has its CUDA plugin; set
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` so that it leaves memory to torch).
The table gives ``ppl_vae / peer`` for each figure: for times above 1 means
ppl_vae is slower, for ESS per second above 1 means ppl_vae is ahead. Where
both sides repeat (SVI, IWAE) the ratio is the median of the repeats' ratios,
each repeat timing the two back to back.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import PEER_PACKAGES, missing_package  # noqa: E402
from peers.problems import evaluation_digits, load_vae, nuts_starts  # noqa: E402
from svi_throughput import paired_ratio, sync_device  # noqa: E402

from ppl_vae import iwae, load_dataset, resolve_device  # noqa: E402
from ppl_vae.errors import PplVaeError  # noqa: E402
from ppl_vae.inference.mcmc import NUTSConfig, sample_posterior  # noqa: E402

#: Two independent IWAE estimates of the same bound agree when their means differ by
#: less than this many standard errors of the difference (a false alarm once in ~150,000).
MC_Z = 4.5

FULL = {"svi_configs": [(20, 128), (20, 256), (2, 128)], "svi_images": None, "svi_epochs": 3,
        "nuts_points": 100, "num_chains": 4, "warmup_steps": 1000, "num_samples": 3000,
        "iwae_points": 500, "iwae_samples": 5000, "hidden": 400}
QUICK = {"svi_configs": [(2, 128)], "svi_images": 512, "svi_epochs": 2,
         "nuts_points": 3, "num_chains": 4, "warmup_steps": 100, "num_samples": 100,
         "iwae_points": 50, "iwae_samples": 100, "hidden": 64}


def _skip(peer: str) -> bool:
    line = missing_package(PEER_PACKAGES[peer])
    if line:
        print(line, flush=True)
    return line is not None


def _row(work: str, unit: str, ppl_vae: float, peer: str, value: float, higher_is_better: bool,
         paired: tuple[list[float], list[float]] | None = None) -> dict:
    """One line of the table; with ``paired`` repeats the ratio is the median of their ratios."""
    ratio = paired_ratio(*paired) if paired else ppl_vae / value
    return {"work": work, "unit": unit, "ppl_vae": ppl_vae, "peer": peer, "peer_value": value,
            "ratio": ratio, "higher_is_better": higher_is_better}


def bench_svi(settings: dict, repeats: int, device: torch.device) -> tuple[list[dict], list[dict]]:
    """ms per SVI step of ppl_vae's ``train`` and NumPyro's two jits, repeats interleaved per configuration."""
    from svi_throughput import run_ppl_vae

    x = load_dataset("mnist5k").train_x
    if settings["svi_images"]:
        x = x[:settings["svi_images"]]
    x_torch = x.to(device)
    peer = not _skip("numpyro_svi")
    if peer:
        from peers import numpyro_svi
        from peers.jax_vae import as_jax
        x_jax = as_jax(x)
    details, table = [], []
    for latent_dim, batch_size in settings["svi_configs"]:
        samples: dict[str, list] = {"ppl_vae": [], "step": [], "epoch": []}
        for repeat in range(repeats):
            torch.manual_seed(repeat)
            samples["ppl_vae"].append(1e3 * run_ppl_vae(x_torch, latent_dim, batch_size))
            for variant in ("step", "epoch") if peer else ():
                samples[variant].append(numpyro_svi.run(x_jax, latent_dim, batch_size, variant,
                                                        num_epochs=settings["svi_epochs"], seed=repeat))
        ppl_ms = statistics.median(samples["ppl_vae"])
        row = {"device": str(device), "latent_dim": latent_dim, "batch_size": batch_size, "images": len(x),
               "ppl_vae_ms_per_step": ppl_ms, "ppl_vae_repeats_ms": samples["ppl_vae"]}
        for variant in ("step", "epoch") if peer else ():
            runs = samples[variant]
            row[f"numpyro_{variant}_ms_per_step"] = statistics.median(r.ms_per_step for r in runs)
            row[f"numpyro_{variant}_compile_s"] = statistics.median(r.compile_s for r in runs)
            row[f"numpyro_{variant}_repeats_ms"] = [r.ms_per_step for r in runs]
            table.append(_row(f"SVI step, 784-400-{latent_dim}, batch {batch_size}", "ms", ppl_ms,
                              f"NumPyro {variant} jit", row[f"numpyro_{variant}_ms_per_step"],
                              higher_is_better=False,
                              paired=(samples["ppl_vae"], row[f"numpyro_{variant}_repeats_ms"])))
        details.append(row)
        print(json.dumps(row), flush=True)
    return details, table


def _check_port(model: torch.nn.Module, x: torch.Tensor):
    """The model's JAX pytree, after checking its log joint against ppl_vae's (raises if it differs)."""
    from peers import jax_vae

    params = jax_vae.port(model)
    check = jax_vae.check_port(model, params, x)
    print(f"JAX port checked: log joint relative difference {check.to_float64:.1e} to ppl_vae's in "
          f"float64 (allowed {jax_vae.LOG_JOINT_RTOL:.0e}), {check.to_float32:.1e} to its float32 value",
          flush=True)
    return params


def bench_nuts(settings: dict, checkpoint: str | None, repeats: int,
               device: torch.device) -> tuple[dict, list[dict]]:
    """ppl_vae's batched NUTS and BlackJAX's vmapped NUTS on the same posteriors and starts (fastest run kept)."""
    from peers.blackjax_nuts import summary

    model = load_vae(checkpoint, latent_dim=2, hidden=settings["hidden"])
    x = evaluation_digits(checkpoint, settings["nuts_points"])
    config = NUTSConfig(num_samples=settings["num_samples"], warmup_steps=settings["warmup_steps"],
                        num_chains=settings["num_chains"], scheme="batched", dense_mass=True, seed=0)
    peer = not _skip("blackjax_nuts")
    if peer:
        from peers import blackjax_nuts
        params = _check_port(model, x)
        init, inverse_mass = nuts_starts(model, x, config)
    runs: dict[str, list[dict]] = {"ppl_vae": [], "blackjax": []}
    model_on_device, x_on_device = copy.deepcopy(model).to(device), x.to(device)
    for _ in range(repeats):
        result = sample_posterior(model_on_device, x_on_device, config)
        runs["ppl_vae"].append(summary(result.samples, result.sample_stats["num_steps"], result.wall_time))
        if peer:
            run = blackjax_nuts.run(params, x, init, inverse_mass, config.num_samples, config.warmup_steps,
                                    seed=config.seed, target_accept_prob=config.target_accept_prob,
                                    max_tree_depth=config.max_tree_depth)
            runs["blackjax"].append({**summary(run.samples, run.num_steps, run.wall_time_s),
                                     "compile_s": run.compile_s,
                                     "divergences": int(run.diverging.sum())})
    details = {name: min(values, key=lambda r: r["wall_time_s"]) if values else None
               for name, values in runs.items()}
    details.update({"device": str(device), "points": len(x), "chains": config.num_chains, "warmup_steps": config.warmup_steps,
                    "num_samples": config.num_samples, "all_runs": runs})
    print(json.dumps({k: v for k, v in details.items() if k != "all_runs"}), flush=True)
    table = []
    if peer:
        ours, theirs = details["ppl_vae"], details["blackjax"]
        work = f"NUTS, {len(x)} digits x {config.num_chains} chains x ({config.warmup_steps} + {config.num_samples})"
        table.append(_row(work + ": wall time", "s", ours["wall_time_s"], "BlackJAX vmapped NUTS",
                          theirs["wall_time_s"], higher_is_better=False))
        table.append(_row(work + ": min bulk ESS / s", "1/s", ours["ess_per_s"], "BlackJAX vmapped NUTS",
                          theirs["ess_per_s"], higher_is_better=True))
    return details, table


def bench_iwae(settings: dict, checkpoint: str | None, repeats: int,
               device: torch.device) -> tuple[dict, list[dict]]:
    """Seconds of ppl_vae's streaming IWAE and the jitted JAX one (compiled first), and their means' agreement."""
    model = load_vae(checkpoint, latent_dim=20, hidden=settings["hidden"])
    x = evaluation_digits(checkpoint, settings["iwae_points"])
    num_samples = settings["iwae_samples"]
    peer = not _skip("jax_iwae")
    if peer:
        import jax
        import numpy as np
        from peers.jax_iwae import compiled_iwae, mean_difference
        from peers.jax_vae import as_jax
        params = _check_port(model, x)
        run_jax, compile_s = compiled_iwae(params, as_jax(x), num_samples, model.latent_dim)
    times: dict[str, list[float]] = {"ppl_vae": [], "jax": []}
    estimate, jax_values = None, None
    model_on_device, x_on_device = copy.deepcopy(model).to(device), x.to(device)
    for repeat in range(repeats):
        torch.manual_seed(repeat)
        started = time.perf_counter()
        estimate = iwae(model_on_device, x_on_device, num_samples)
        times["ppl_vae"].append(time.perf_counter() - started)
        if peer:
            started = time.perf_counter()
            jax_values = np.asarray(run_jax(jax.random.key(repeat)), dtype=np.float64)
            times["jax"].append(time.perf_counter() - started)
    details = {"device": str(device), "points": len(x), "num_samples": num_samples,
               "ppl_vae_s": statistics.median(times["ppl_vae"]), "ppl_vae_mean_iwae": estimate.mean,
               "repeats_s": times}
    table = []
    if peer:
        difference, stderr = mean_difference(jax_values, estimate.per_point.cpu().numpy())
        details.update({"jax_s": statistics.median(times["jax"]), "jax_compile_s": compile_s,
                        "jax_mean_iwae": float(jax_values.mean()), "difference_stderr": stderr,
                        "difference_in_stderr": difference / stderr,
                        "means_agree": abs(difference) <= MC_Z * stderr})
        table.append(_row(f"IWAE, K = {num_samples}, {len(x)} test digits, latent 20", "s",
                          details["ppl_vae_s"], "jax.jit chunked IWAE", details["jax_s"],
                          higher_is_better=False, paired=(times["ppl_vae"], times["jax"])))
    print(json.dumps({k: v for k, v in details.items() if k != "repeats_s"}), flush=True)
    return details, table


def _print_table(table: list[dict]) -> None:
    labels = [f"{row['work']} ({row['unit']}, {'higher' if row['higher_is_better'] else 'lower'} is better)"
              for row in table]
    width = max([len(label) for label in labels] + [4])
    print(f"\n{'work':<{width}} {'ppl_vae':>9} {'peer':>9} {'ppl_vae/peer':>12}  peer")
    for label, row in zip(labels, table):
        print(f"{label:<{width}} {row['ppl_vae']:>9.4g} {row['peer_value']:>9.4g} {row['ratio']:>12.2f}  "
              f"{row['peer']}")


def machine_speed(device: torch.device) -> float:
    """GFLOP/s of torch's 128 x 784 x 400 matrix product (the first layer's) here and now.

    Printed before and after the run: on a shared virtual machine the same
    product ran at 132-140 GFLOP/s in one minute and 181-183 in another, so a
    change between the two readings says the run's figures straddle two
    speeds of the machine.
    """
    a = torch.randn(128, 784, device=device)
    b = torch.randn(784, 400, device=device)
    for _ in range(20):
        a @ b
    sync_device(device)
    started, count = time.perf_counter(), 500
    for _ in range(count):
        a @ b
    sync_device(device)
    return 2 * 128 * 784 * 400 * count / (time.perf_counter() - started) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and untrained models (seconds): checks that everything runs")
    parser.add_argument("--checkpoint", default="runs/demo", help="the latent-20 model (SVI ignores it)")
    parser.add_argument("--checkpoint-z2", default="runs/z2", help="the latent-2 model for NUTS")
    parser.add_argument("--only", nargs="+", choices=["svi", "nuts", "iwae"], default=["svi", "nuts", "iwae"])
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved repeats (default: 5 for SVI, 3 for IWAE, 1 for NUTS; 1 with --quick)")
    parser.add_argument("--device", default="auto", help="where ppl_vae runs: auto (CUDA when available), cpu, cuda")
    parser.add_argument("--nuts-draws", type=int, nargs=2, default=None, metavar=("WARMUP", "SAMPLES"),
                        help="NUTS warm-up steps and draws per chain (default 1000 3000; 100 100 with --quick)")
    parser.add_argument("--out", default=None, help="write everything measured as JSON here")
    args = parser.parse_args(argv)

    settings = dict(QUICK if args.quick else FULL)
    if args.nuts_draws:
        settings["warmup_steps"], settings["num_samples"] = args.nuts_draws
    try:
        device = resolve_device(args.device)
    except PplVaeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    checkpoints = {"iwae": None if args.quick else args.checkpoint,
                   "nuts": None if args.quick else args.checkpoint_z2}
    for part, make in (("iwae", "make demo"), ("nuts", "make runs/z2/checkpoint.pt")):
        path = checkpoints[part]
        if part in args.only and path is not None and not Path(path).exists():
            print(f"no checkpoint at {path} for the {part.upper()} benchmark: run `{make}` first, "
                  f"pass --checkpoint/--checkpoint-z2, or leave it out with --only", file=sys.stderr)
            return 2

    def repeats(default: int) -> int:
        return args.repeats or (1 if args.quick else default)

    speed_before = machine_speed(device)
    print(f"device {device}; torch {torch.__version__}, {torch.get_num_threads()} threads; {os.cpu_count()} cores; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; matrix product {speed_before:.0f} GFLOP/s",
          flush=True)
    results: dict = {"settings": {**settings, "quick": args.quick,
                                  "checkpoints": checkpoints}, "table": []}
    try:
        if "svi" in args.only:
            results["svi"], table = bench_svi(settings, repeats(5), device)
            results["table"] += table
        if "nuts" in args.only:
            results["nuts"], table = bench_nuts(settings, checkpoints["nuts"], repeats(1), device)
            results["table"] += table
        if "iwae" in args.only:
            results["iwae"], table = bench_iwae(settings, checkpoints["iwae"], repeats(3), device)
            results["table"] += table
    except PplVaeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _print_table(results["table"])
    speeds = (speed_before, machine_speed(device))
    results["settings"]["matrix_product_gflops_before_after"] = speeds
    print(f"matrix product (128 x 784 x 400): {speeds[0]:.0f} GFLOP/s before the run, {speeds[1]:.0f} after")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
