"""Model quality at equal CPU time: the standard VAE, the IWAE objective, two latent sites.

Usage::

    python benchmarks/model_quality.py [--budget-epochs 200] [--iwae-samples 5000] [--out q.json]
    python benchmarks/model_quality.py --configs iwae50 --epochs 200   # one recipe, fixed epochs
    python benchmarks/model_quality.py --quick                          # a smoke run: seconds

Every configuration trains on the 4,500 ``mnist5k`` training digits (Adam
1e-3, batch 128, dynamic binarization, seed 0) and is scored on the fixed
binarized copy of the 500 test digits with the ELBO (K = 100) and the IWAE
bound on log p(x) (K = ``--iwae-samples``):

* ``standard``: the default VAE, 784-400-20, closed-form KL (``make demo``);
* ``iwae5``, ``iwae50``: the same VAE trained with the importance-weighted
  bound, K = 5 and 50 (``SVIConfig(objective="iwae", num_particles=K)``,
  ``ppl-vae train --objective iwae --num-particles K``);
* ``two_site``: :class:`~ppl_vae.models.vae.TwoLayerVAE`, two stochastic
  layers per digit, z1 (10) -> z2 (20) -> x, guided by q(z2 | x) q(z1 | z2), as
  Burda et al. (2016) (``ppl-vae train --model TwoLayerVAE``); trained by the
  ELBO with Monte Carlo KL (``two_site``) or the importance-weighted bound
  with K = 5 (``two_site_iwae5``).

Equal CPU time: the standard VAE trains for ``--budget-epochs``; every other
configuration first runs a few calibration epochs, and then trains for as
many epochs as fit in the standard run's measured training time at their
median speed. ``--epochs`` instead gives every configuration the same
number of epochs. Run it on an otherwise idle machine: the budget is wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass

import pyro
import torch

from ppl_vae import VAE, SVIConfig, TwoLayerVAE, load_dataset, train
from ppl_vae.data import evaluation_data
from ppl_vae.inference import elbo, iwae

LATENT = 20
HIDDEN = 400
ELBO_SAMPLES = 100


@dataclass(frozen=True)
class Configuration:
    name: str
    objective: str = "elbo"
    num_particles: int = 1
    two_site: bool = False


CONFIGURATIONS = {
    "standard": Configuration("standard"),
    "iwae5": Configuration("iwae5", "iwae", 5),
    "iwae50": Configuration("iwae50", "iwae", 50),
    "two_site": Configuration("two_site", two_site=True),
    "two_site_iwae5": Configuration("two_site_iwae5", "iwae", 5, two_site=True),
}


def _train(configuration: Configuration, data, epochs: int) -> tuple[torch.nn.Module, list]:
    """Train one configuration; return its model and history."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    settings = dict(epochs=epochs, binarize="dynamic", seed=0, objective=configuration.objective,
                    num_particles=configuration.num_particles)
    model = (TwoLayerVAE(data.data_dim, LATENT, hidden_dims=(HIDDEN,)) if configuration.two_site
             else VAE(data.data_dim, LATENT, hidden_dims=(HIDDEN,)))
    return model, train(model, data.train_x, SVIConfig(**settings), progress=False).history


#: Epochs of the calibration run; the first pays the warm-up and is not counted.
CALIBRATION_EPOCHS = 5


def _seconds_per_epoch(configuration: Configuration, data) -> float:
    """The median time of epochs 2 to :data:`CALIBRATION_EPOCHS` of a calibration run."""
    times = [row["wall_time"] for row in _train(configuration, data, CALIBRATION_EPOCHS)[1]]
    return statistics.median(later - earlier for earlier, later in zip(times, times[1:]))


def _score(model: torch.nn.Module, test_x: torch.Tensor, iwae_samples: int) -> dict:
    pyro.set_rng_seed(1)
    with torch.no_grad():
        lower = elbo(model, test_x, ELBO_SAMPLES)
        bound = iwae(model, test_x, iwae_samples)
    return {"test_elbo": lower.mean, "test_elbo_stderr": lower.mean_stderr,
            "test_iwae": bound.mean, "test_iwae_stderr": bound.mean_stderr,
            "iwae_flagged_share": bound.flagged_share}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGURATIONS), choices=list(CONFIGURATIONS))
    parser.add_argument("--budget-epochs", type=int, default=200,
                        help="epochs of the standard VAE; its training time is everyone's budget")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train every configuration this many epochs instead of at equal time")
    parser.add_argument("--iwae-samples", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="digits, 2 epochs, K = 50: a smoke run")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    data = load_dataset("digits" if args.quick else "mnist5k")
    test_x = evaluation_data(data.test_x, "dynamic", 0)
    iwae_samples = 50 if args.quick else args.iwae_samples
    budget_epochs = 2 if args.quick else args.budget_epochs

    budget_seconds = None
    rows = []
    names = sorted(args.configs, key=lambda name: name != "standard")  # the budget comes first
    for name in names:
        configuration = CONFIGURATIONS[name]
        if args.epochs is not None or args.quick:
            epochs = 2 if args.quick else args.epochs
        elif name == "standard":
            epochs = budget_epochs
        else:
            if budget_seconds is None:
                budget_seconds = _train(CONFIGURATIONS["standard"], data, budget_epochs)[1][-1]["wall_time"]
            epochs = max(1, round(budget_seconds / _seconds_per_epoch(configuration, data)))
        started = time.perf_counter()
        model, history = _train(configuration, data, epochs)
        train_seconds = history[-1]["wall_time"]
        if name == "standard":
            budget_seconds = train_seconds
        scores = _score(model, test_x, iwae_samples)
        row = {"config": name, "epochs": epochs, "train_seconds": train_seconds,
               "score_seconds": time.perf_counter() - started - train_seconds, **scores}
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{'config':<10}{'epochs':>8}{'train s':>9}{'test ELBO':>18}{f'IWAE K={iwae_samples}':>20}")
    for row in rows:
        print(f"{row['config']:<10}{row['epochs']:>8}{row['train_seconds']:>9.0f}"
              f"{row['test_elbo']:>10.2f} ± {row['test_elbo_stderr']:.2f}"
              f"{row['test_iwae']:>12.2f} ± {row['test_iwae_stderr']:.2f}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"threads": torch.get_num_threads(), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
