"""Where the time of one training step goes, and the default against the fused Adam.

Usage::

    python benchmarks/step_profile.py [--profile]

The direct ELBO step of the 784-400-20 VAE (batch 128, the 4,500 mnist5k
digits binarized once) with ``torch.optim.Adam`` in its default (foreach)
form and fused, 5 interleaved repeats of 200 steps after 50 warm-up steps;
the median milliseconds per step of each. ``--profile`` adds torch.profiler's
table of operators for 100 steps with the fused Adam (what ``train`` uses).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from ppl_vae import VAE, load_dataset
from ppl_vae.inference.objectives import direct_elbo_loss

BATCH = 128


def _model_and_optimizer(fused: bool | None) -> tuple[VAE, torch.optim.Optimizer]:
    torch.manual_seed(0)
    vae = VAE(784, 20)
    return vae, torch.optim.Adam(vae.parameters(), lr=1e-3, fused=fused)


def _steps(vae: VAE, optimizer: torch.optim.Optimizer, x: torch.Tensor, count: int) -> None:
    order = torch.randperm(len(x))
    usable = len(x) - len(x) % BATCH
    for step in range(count):
        start = (step * BATCH) % usable
        loss = direct_elbo_loss(vae, x[order[start:start + BATCH]], num_data=len(x))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    x = torch.bernoulli(load_dataset("mnist5k").train_x)
    runs = {"default Adam": _model_and_optimizer(None), "fused Adam": _model_and_optimizer(True)}
    for vae, optimizer in runs.values():
        _steps(vae, optimizer, x, 50)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(5):
        for name, (vae, optimizer) in runs.items():
            started = time.perf_counter()
            _steps(vae, optimizer, x, 200)
            times[name].append((time.perf_counter() - started) / 200 * 1e3)
    for name, values in times.items():
        print(f"{name}: {statistics.median(values):.2f} ms per step "
              f"(repeats {', '.join(f'{v:.2f}' for v in values)})")
    if args.profile:
        vae, optimizer = runs["fused Adam"]
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            _steps(vae, optimizer, x, 100)
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
