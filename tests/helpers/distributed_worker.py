"""Run by ``torchrun --nproc_per_node=2`` from tests/training/test_distributed.py; rank 0 writes a JSON report.

Usage: python -m torch.distributed.run --standalone --nproc_per_node=2 distributed_worker.py OUT.json
"""

from __future__ import annotations

import json
import sys

import pyro
import torch
import torch.distributed as dist

from ppl_vae import VAE, LinearGaussian, SVIConfig, load_dataset, train
from ppl_vae.inference.objectives import direct_elbo_loss, make_loss
from ppl_vae.training.distributed import (
    current_world,
    data_parallel_loss,
    init_distributed,
    mean_over_processes,
    shutdown,
)


def losses_on_one_global_batch(rows: int) -> tuple[float, float]:
    """Data-parallel and single-process loss of pPCA with its exact posterior as the guide.

    With q(z | x) = p(z | x) every importance weight equals p(x), so the Monte
    Carlo ELBO has no noise and the two numbers must agree to rounding.
    """
    torch.manual_seed(0)
    data = load_dataset("linear-gaussian", seed=0, num_points=60, data_dim=5, latent_dim=2)
    x = data.train_x.double()
    model = LinearGaussian.fit_maximum_likelihood(x, 2)
    model.set_guide_to_posterior()
    batch = x[:rows]
    world = current_world()
    parallel = data_parallel_loss(model, make_loss(model, "trace", 1), len(x), rows, world)
    pyro.set_rng_seed(world.rank)
    value = mean_over_processes(parallel(model, batch, num_data=len(x), beta=1.0), world)
    single = direct_elbo_loss(model, batch, num_data=len(x), estimator="trace")
    return float(value), float(single.detach())


def parameters_after_training() -> tuple[bool, float]:
    data = load_dataset("digits", seed=0)
    torch.manual_seed(0 + 17 * current_world().rank)  # different initial weights on purpose
    model = VAE(data.data_dim, 2, hidden_dims=(16,))
    result = train(model, data.train_x, SVIConfig(epochs=2, batch_size=64, binarize="dynamic"),
                   progress=False)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(current_world().size)]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], other) for other in gathered[1:]), result.history[-1]["train_elbo"]


def main() -> None:
    init_distributed(torch.device("cpu"))
    report = {"world_size": current_world().size}
    for rows in (8, 7):  # even and uneven shards
        report[f"loss_{rows}_rows"] = losses_on_one_global_batch(rows)
    report["parameters_equal"], report["train_elbo"] = parameters_after_training()
    if current_world().is_main:
        with open(sys.argv[1], "w") as handle:
            json.dump(report, handle)
    shutdown()


if __name__ == "__main__":
    main()
