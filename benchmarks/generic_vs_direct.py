"""The generic path (read from the Pyro program) against the direct transcription, and a user's functions.

Usage::

    python benchmarks/generic_vs_direct.py [--checkpoint runs/demo] [--nuts-checkpoint runs/z2]
        [--device auto] [--out generic.json] [--quick]

For the library's VAE the same three pieces of work run three ways, interleaved:

* ``direct``: the transcriptions used for VAE and pPCA (``direct_elbo_loss``,
  the direct log-weights, ``prior(x).log_prob(z) + decode(z).log_prob(x)``);
* ``generic``: the same model through its programs (Pyro's differentiable
  ELBO for a step; :func:`~ppl_vae.inference.program.program_log_terms` per
  IWAE chunk; the conditioned program per NUTS leapfrog step), forced by
  passing ``engine="pyro"`` or the model's own guide explicitly;
* ``functions``: the same networks written as two plain Pyro functions by a
  user (no transcription exists for them).

Work: one SVI step (784-400-20, batch 128, 4,500 mnist5k digits), the IWAE
bound at K (5,000) on the 500 test digits, and batched NUTS on the first 100
test digits of a latent-2 model (4 chains x (200 + 200) draws). Times are
medians of ``--repeats``; the figure of merit for NUTS is seconds, with the
same seed, starting points and number of draws for all three. On a GPU every
timed piece ends in a device sync.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch

from ppl_vae import VAE, load_checkpoint, load_dataset, resolve_device
from ppl_vae.data import evaluation_data
from ppl_vae.inference import NUTSConfig, iwae, sample_posterior
from ppl_vae.inference.objectives import make_loss
from ppl_vae.models import PyroProgram, build_model


def _load(checkpoint: str | None, latent_dim: int) -> VAE:
    if checkpoint is None:
        torch.manual_seed(0)
        return VAE(784, latent_dim, hidden_dims=(400,))
    saved = load_checkpoint(checkpoint)
    model = build_model(saved["model_class"], saved["model_config"])
    model.load_state_dict(saved["model_state"])
    return model


def as_functions(vae: VAE) -> tuple[Callable, Callable]:
    """The VAE's networks as the two functions a Pyro user writes."""

    def model(x):
        pyro.module("user_decoder", vae.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(vae.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=vae.decoder(z), validate_args=False).to_event(1), obs=x)

    def guide(x):
        pyro.module("user_encoder", vae.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = vae.encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return model, guide


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _time(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def svi_step_ms(vae: VAE, x: torch.Tensor, steps: int, repeats: int) -> dict[str, float]:
    model_fn, guide_fn = as_functions(vae)
    program = PyroProgram(model_fn, guide_fn, x[:2])
    subjects = {"direct": (vae, make_loss(vae, "meanfield", 1, "direct", x=x[:2])),
                "generic": (vae, make_loss(vae, "meanfield", 1, "pyro", x=x[:2])),
                "functions": (program, make_loss(program, "meanfield", 1, "auto", x=x[:2]))}
    optimizers = {name: torch.optim.Adam(module.parameters(), lr=1e-3)
                  for name, (module, _) in subjects.items()}
    times: dict[str, list[float]] = {name: [] for name in subjects}
    generator = torch.Generator().manual_seed(0)
    with pyro.validation_enabled(False):
        for _ in range(repeats):
            for name, (module, loss_fn) in subjects.items():  # interleaved
                start = time.perf_counter()
                for _ in range(steps):
                    batch = torch.bernoulli(x[torch.randint(len(x), (128,), generator=generator)])
                    loss = loss_fn(module, batch, num_data=len(x), beta=1.0)
                    optimizers[name].zero_grad(set_to_none=True)
                    loss.backward()
                    optimizers[name].step()
                _sync()
                times[name].append(1000 * (time.perf_counter() - start) / steps)
    return {name: statistics.median(values) for name, values in times.items()}


def iwae_seconds(vae: VAE, x: torch.Tensor, num_samples: int, repeats: int) -> dict[str, float]:
    model_fn, guide_fn = as_functions(vae)
    work = {"direct": lambda: iwae(vae, x, num_samples),
            "generic": lambda: iwae(vae, x, num_samples, guide=vae.guide),
            "functions": lambda: iwae(model_fn, x, num_samples, guide=guide_fn)}
    return {name: _time(run, repeats) for name, run in work.items()}


def nuts_seconds(vae: VAE, x: torch.Tensor, config: NUTSConfig, repeats: int) -> dict[str, float]:
    model_fn, guide_fn = as_functions(vae)
    work = {"direct": lambda: sample_posterior(vae, x, config),
            "generic": lambda: sample_posterior(vae, x, config, guide=vae.guide),
            "functions": lambda: sample_posterior(model_fn, x, config, guide=guide_fn)}
    return {name: _time(run, repeats) for name, run in work.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="latent-20 VAE (default: untrained)")
    parser.add_argument("--nuts-checkpoint", default=None, help="latent-2 VAE (default: untrained)")
    parser.add_argument("--num-samples", type=int, default=5000, help="IWAE samples K per point")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_dataset("mnist5k").to(device)
    test = evaluation_data(data.test_x, "dynamic", 0)
    vae = _load(args.checkpoint, 20).to(device).eval()
    vae2 = _load(args.nuts_checkpoint, 2).to(device).eval()
    quick = args.quick
    nuts = NUTSConfig(num_samples=20 if quick else 200, warmup_steps=20 if quick else 200, seed=0)
    rows = {
        "svi_step_ms": svi_step_ms(vae, data.train_x, 5 if quick else 100, 1 if quick else args.repeats),
        "iwae_s": iwae_seconds(vae, test[:20] if quick else test, 50 if quick else args.num_samples,
                               1 if quick else args.repeats),
        "nuts_s": nuts_seconds(vae2, test[:5] if quick else test[:100], nuts, 1),
    }
    print(f"device {device}, {torch.get_num_threads()} threads; ratio = time / direct")
    print(f"{'work':>12} {'direct':>10} {'generic':>10} {'ratio':>6} {'functions':>10} {'ratio':>6}")
    for work, row in rows.items():
        print(f"{work:>12} {row['direct']:>10.3f} {row['generic']:>10.3f} "
              f"{row['generic'] / row['direct']:>6.2f} {row['functions']:>10.3f} "
              f"{row['functions'] / row['direct']:>6.2f}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(rows, handle, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
