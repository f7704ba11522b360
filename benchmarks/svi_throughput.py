"""SVI training throughput: ppl_vae's loop against a hand-written PyTorch VAE and plain Pyro.

Usage::

    python benchmarks/svi_throughput.py [--device cpu] [--repeats 5] [--out svi.json]

Three implementations train the same 784-400-latent VAE (softplus, Bernoulli
likelihood, closed-form Gaussian KL, Adam 1e-3, dynamic binarization, one
reshuffle per epoch) on the 4,500 mnist5k training digits:

* ``ppl_vae``: :func:`ppl_vae.train` itself, timed from its history (on a
  GPU its step is replayed from a CUDA graph; ``ppl_vae_eager`` is the same
  run with ``cuda_graph=False``, every kernel launched from Python);
* ``pytorch``: a hand-written loop with the same networks and objective, the
  limit (no Pyro, no trace, one host sync per epoch);
* ``ppl_vae_pyro_engine``: the same loop with ``engine="pyro"``, which runs
  the Pyro programs through Pyro's ``differentiable_loss`` every step (the
  loop as it was before the direct engine);
* ``pyro``: plain ``pyro.infer.SVI`` with ``Trace_ELBO`` and ``pyro.optim.Adam``,
  written the way Pyro's own VAE example is, the peer (``svi.step`` returns a
  float, so it syncs every step).

Repeats are interleaved (a, b, c, a, b, c, ...), so a change of machine load
hits all three alike; each cell is the median over repeats of the time per
step, and each ratio the median over repeats of the two sides' ratio in that
repeat (:func:`paired_ratio`). The first epoch of every run is a warm-up and
is not timed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from functools import partial

import pyro
import pyro.distributions as dist
import pyro.optim
import torch
from pyro.infer import SVI, Trace_ELBO
from torch import nn
from torch.nn import functional as F

from ppl_vae import VAE, SVIConfig, load_dataset, resolve_device, train

NUM_EPOCHS = 3  # the first is warm-up


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median over repeats of ``numerator[i] / denominator[i]``.

    Each repeat times every side back to back, so a pair shares the machine's
    state of the moment (a shared VM's speed drifts by tens of per cent
    between minutes); the ratio of the two medians would mix states.
    """
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def sync_device(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Softplus())
    return nn.Sequential(*layers)


class HandWrittenVAE(nn.Module):
    """The same networks as :class:`ppl_vae.VAE`, with the ELBO written out by hand."""

    def __init__(self, data_dim: int, latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = _mlp([data_dim, hidden, 2 * latent_dim])
        self.decoder = _mlp([latent_dim, hidden, data_dim])

    def loss(self, x: torch.Tensor, num_data: int) -> torch.Tensor:
        loc, raw_scale = self.encoder(x).split(self.latent_dim, dim=-1)
        scale = F.softplus(raw_scale) + 1e-5
        z = loc + scale * torch.randn_like(loc)
        reconstruction = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum")
        kl = (0.5 * (loc.pow(2) + scale.pow(2)) - scale.log() - 0.5).sum()
        return -(reconstruction - kl) * (num_data / x.shape[0])


def run_pytorch(x: torch.Tensor, latent_dim: int, batch_size: int) -> float:
    model = HandWrittenVAE(x.shape[1], latent_dim, 400).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    num_data = x.shape[0]
    times = []
    for _ in range(NUM_EPOCHS):
        sync_device(x.device)
        start = time.perf_counter()
        epoch_data = torch.bernoulli(x)
        total = x.new_zeros(())
        for index in torch.randperm(num_data, device=x.device).split(batch_size):
            loss = model.loss(epoch_data[index], num_data)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total = total + loss.detach()
        total.item()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) / math.ceil(num_data / batch_size)


def run_pyro(x: torch.Tensor, latent_dim: int, batch_size: int) -> float:
    """Pyro's VAE example, reduced to the loop: model/guide functions, SVI, pyro.optim.Adam."""
    pyro.clear_param_store()
    encoder = _mlp([x.shape[1], 400, 2 * latent_dim]).to(x.device)
    decoder = _mlp([latent_dim, 400, x.shape[1]]).to(x.device)
    num_data = x.shape[0]

    def model(batch: torch.Tensor) -> None:
        pyro.module("decoder", decoder)
        with pyro.plate("data", num_data, subsample_size=batch.shape[0]):
            z_loc = batch.new_zeros(batch.shape[0], latent_dim)
            z = pyro.sample("z", dist.Normal(z_loc, torch.ones_like(z_loc)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z), validate_args=False).to_event(1),
                        obs=batch)

    def guide(batch: torch.Tensor) -> None:
        pyro.module("encoder", encoder)
        with pyro.plate("data", num_data, subsample_size=batch.shape[0]):
            loc, raw_scale = encoder(batch).split(latent_dim, dim=-1)
            pyro.sample("z", dist.Normal(loc, F.softplus(raw_scale) + 1e-5).to_event(1))

    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), loss=Trace_ELBO())
    times = []
    with pyro.validation_enabled(False):
        for _ in range(NUM_EPOCHS):
            sync_device(x.device)
            start = time.perf_counter()
            epoch_data = torch.bernoulli(x)
            for index in torch.randperm(num_data, device=x.device).split(batch_size):
                svi.step(epoch_data[index])
            sync_device(x.device)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) / math.ceil(num_data / batch_size)


def run_ppl_vae(x: torch.Tensor, latent_dim: int, batch_size: int, engine: str = "auto",
                cuda_graph: bool = True) -> float:
    model = VAE(x.shape[1], latent_dim, hidden_dims=(400,)).to(x.device)
    config = SVIConfig(epochs=NUM_EPOCHS, batch_size=batch_size, binarize="dynamic", engine=engine)
    history = train(model, x, config, progress=False, cuda_graph=cuda_graph).history
    epoch_times = [b["wall_time"] - a["wall_time"] for a, b in zip(history, history[1:])]
    return statistics.median(epoch_times) / math.ceil(x.shape[0] / batch_size)


IMPLEMENTATIONS: dict[str, Callable[[torch.Tensor, int, int], float]] = {
    "pytorch": run_pytorch, "pyro": run_pyro, "ppl_vae": run_ppl_vae,
    "ppl_vae_pyro_engine": partial(run_ppl_vae, engine="pyro"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--latent-dims", type=int, nargs="+", default=[2, 20, 50])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    implementations = dict(IMPLEMENTATIONS)
    if device.type == "cuda":
        implementations["ppl_vae_eager"] = partial(run_ppl_vae, cuda_graph=False)
    x = load_dataset("mnist5k").train_x.to(device)
    rows = []
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{len(x)} images; median of {args.repeats} interleaved repeats, ms per step")
    print(f"{'latent':>6} {'batch':>5} {'pytorch':>8} {'pyro':>8} {'ppl_vae':>8} {'ppl[pyro]':>9} "
          f"{'pyro/pt':>8} {'ppl/pt':>8} {'ppl[pyro]/pt':>12} {'ppl img/s':>10}")
    for latent_dim in args.latent_dims:
        for batch_size in args.batch_sizes:
            samples: dict[str, list[float]] = {name: [] for name in implementations}
            for repeat in range(args.repeats):
                for name, run in implementations.items():
                    torch.manual_seed(repeat)
                    samples[name].append(run(x, latent_dim, batch_size))
            step = {name: statistics.median(values) for name, values in samples.items()}
            row = {
                "device": str(device), "latent_dim": latent_dim, "batch_size": batch_size,
                "ms_per_step": {name: 1e3 * value for name, value in step.items()},
                "images_per_s": {name: batch_size / value for name, value in step.items()},
                "pyro_over_pytorch": paired_ratio(samples["pyro"], samples["pytorch"]),
                "ppl_vae_over_pytorch": paired_ratio(samples["ppl_vae"], samples["pytorch"]),
                "ppl_vae_pyro_engine_over_pytorch": paired_ratio(samples["ppl_vae_pyro_engine"],
                                                                 samples["pytorch"]),
                "repeats_ms": {name: [1e3 * v for v in values] for name, values in samples.items()},
            }
            rows.append(row)
            ms = row["ms_per_step"]
            print(f"{latent_dim:>6} {batch_size:>5} {ms['pytorch']:>8.2f} {ms['pyro']:>8.2f} "
                  f"{ms['ppl_vae']:>8.2f} {ms['ppl_vae_pyro_engine']:>9.2f} "
                  f"{row['pyro_over_pytorch']:>8.3f} {row['ppl_vae_over_pytorch']:>8.3f} "
                  f"{row['ppl_vae_pyro_engine_over_pytorch']:>12.3f} "
                  f"{row['images_per_s']['ppl_vae']:>10.0f}"
                  + (f"  eager {ms['ppl_vae_eager']:.2f} ms, graph speed-up "
                     f"{paired_ratio(samples['ppl_vae_eager'], samples['ppl_vae']):.2f}x"
                     if "ppl_vae_eager" in ms else ""),
                  flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(rows, handle, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
