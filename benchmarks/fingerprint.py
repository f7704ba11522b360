"""Digests of the numbers ppl_vae computes, for before/after checks of a change that must alter none.

Usage::

    python benchmarks/fingerprint.py [--epochs 200] [--out fingerprint.json]
    # the same on another checkout, then compare the two files:
    PYTHONPATH=/path/to/other/checkout python benchmarks/fingerprint.py --out other.json

On the CPU with a fixed seed it trains the demo VAE (784-400-20 on mnist5k,
dynamic binarization) and a latent-2 VAE, then records SHA-256 digests of the
raw bytes of: the training history (train and test ELBO per epoch), every
trained parameter, the IWAE and ELBO per test digit (K = 100), batched NUTS
draws of 5 test digits under the latent-2 model, and 16 generated images.
Equal digests mean bit-identical numbers; the mean values are printed too,
so a difference can be sized.
"""

from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np
import pyro
import torch

from ppl_vae import VAE, SVIConfig, load_dataset, train
from ppl_vae.data import evaluation_data
from ppl_vae.inference import NUTSConfig, elbo, iwae, sample_posterior


def _digest(values) -> str:
    if isinstance(values, torch.Tensor):
        data = values.detach().cpu().contiguous().numpy().tobytes()
    else:
        data = np.asarray(values, dtype=np.float64).tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def _parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([value.detach().flatten() for value in model.state_dict().values()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    data = load_dataset("mnist5k")
    test_x = evaluation_data(data.test_x, "dynamic", 0)
    report: dict[str, dict[str, object]] = {}

    pyro.set_rng_seed(0)
    vae = VAE(data.data_dim, 20)
    history = train(vae, data.train_x, SVIConfig(epochs=args.epochs, binarize="dynamic"),
                    test_x=data.test_x, progress=False).history
    curve = [[row["train_elbo"], row["test_elbo"]] for row in history]
    report["history"] = {"digest": _digest(curve), "last_test_elbo": curve[-1][1]}
    report["parameters"] = {"digest": _digest(_parameters(vae))}
    pyro.set_rng_seed(1)
    bound, lower = iwae(vae, test_x, 100).per_point, elbo(vae, test_x, 100).per_point
    report["iwae"] = {"digest": _digest(bound), "mean": float(bound.mean())}
    report["elbo"] = {"digest": _digest(lower), "mean": float(lower.mean())}
    pyro.set_rng_seed(2)
    report["samples"] = {"digest": _digest(vae.sample(16))}

    pyro.set_rng_seed(0)
    small = VAE(data.data_dim, 2)
    train(small, data.train_x, SVIConfig(epochs=max(1, args.epochs // 10), binarize="dynamic"),
          progress=False)
    config = NUTSConfig(num_samples=200, warmup_steps=200, adapt_threads=False)  # draws depend on threads
    draws = sample_posterior(small, test_x[:5], config).samples
    report["nuts"] = {"digest": _digest(draws), "mean": float(draws.mean())}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
