"""Data-parallel SVI with PyTorch's own engine: one process per device, gradients all-reduced.

Launch any training through ``torchrun``; :func:`~ppl_vae.training.train` notices the process
group and

* splits every global minibatch of ``batch_size`` rows into one shard per
  process (the same shuffled order on every process, drawn from a generator
  seeded by ``seed`` and the epoch, so the shards partition the batch);
* scales each process's ELBO so that DistributedDataParallel's average of
  the gradients is the gradient of the single-process loss on the global batch;
* draws each process's latent noise from ``seed + rank``;
* lets only rank 0 evaluate, log and write checkpoints and metrics.

Backends: NCCL when the process owns a CUDA device, gloo on CPUs.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ppl_vae.errors import ConfigError


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes (``size`` 1: not distributed)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_world() -> World:
    """The process group's rank and size, or a world of one when none is initialized."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched_by_torchrun() -> bool:
    """Whether the environment of ``torchrun`` (``WORLD_SIZE`` > 1) is present."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group ``torchrun`` set up; return this process's device.

    Parameters
    ----------
    device : torch.device
        The device asked for; a CUDA request is narrowed to ``cuda:LOCAL_RANK``.

    Returns
    -------
    torch.device
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return device


def shutdown() -> None:
    """Leave the process group cleanly: wait for every process, then destroy the group."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # DDP reducers hold the group; free them before it goes
        dist.barrier()
        dist.destroy_process_group()


def shard(batch: torch.Tensor, world: World) -> torch.Tensor:
    """This process's contiguous share of the rows of a global batch (a view, no copy).

    Raises
    ------
    ConfigError
        If the batch has fewer rows than there are processes.
    """
    if len(batch) < world.size:
        raise ConfigError(
            f"a minibatch of {len(batch)} rows cannot be split over {world.size} processes; "
            "raise batch_size or use fewer processes"
        )
    return batch.tensor_split(world.size)[world.rank]


class ELBOModule(nn.Module):
    """The negative ELBO as a module, so DistributedDataParallel can wrap it.

    Parameters
    ----------
    model : ProbabilisticModel
        Its parameters are this module's parameters.
    loss : callable
        ``loss(model, x, num_data=..., beta=...)``, e.g. from
        :func:`ppl_vae.inference.objectives.make_loss`.
    """

    def __init__(self, model: nn.Module, loss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, x: torch.Tensor, num_data: float, beta: float) -> torch.Tensor:
        return self.loss(self.model, x, num_data=num_data, beta=beta)


def wrap(model: nn.Module, loss) -> nn.Module:
    """``ELBOModule(model, loss)`` under DistributedDataParallel (parameters synced from rank 0)."""
    device = next(model.parameters()).device
    module = ELBOModule(model, loss)
    if device.type == "cuda":
        return nn.parallel.DistributedDataParallel(module, device_ids=[device])
    return nn.parallel.DistributedDataParallel(module)


def mean_over_processes(value: torch.Tensor, world: World) -> torch.Tensor:
    """The average of ``value`` over all processes (itself in a world of one)."""
    if world.size == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / world.size


def gather_objects(value: Any, world: World) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order; ``[value]`` in a world of one."""
    if world.size == 1:
        return [value]
    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(world: World) -> None:
    """Wait for every process (no-op in a world of one)."""
    if world.size > 1:
        dist.barrier()


def data_parallel_loss(model: nn.Module, loss, num_data: int, batch_size: int, world: World,
                       even_split_needed: bool = False):
    """The loss of this process's shard of each global batch, under DistributedDataParallel.

    Each process scores its shard with ``num_data`` scaled by
    ``world.size * shard / batch``; DDP averages the processes' gradients, and
    that average is the gradient of the single-process loss on the whole batch
    (and the average of the returned losses is that loss).

    Parameters
    ----------
    model : ProbabilisticModel
    loss : callable
        ``loss(model, x, num_data=..., beta=...)`` of one process.
    num_data : int
        Size of the training set.
    batch_size : int
        Rows of a global batch.
    world : World
    even_split_needed : bool
        Refuse sizes whose shards would be unequal (Pyro's plate needs an
        integer ``num_data``; the direct ELBO accepts any scale).

    Returns
    -------
    callable
        ``loss(model, x_global_batch, num_data=..., beta=...)``.
    """
    if even_split_needed and (batch_size % world.size or num_data % batch_size % world.size):
        raise ConfigError(
            f"with engine='pyro' the batches must split evenly over {world.size} processes "
            f"(batch_size {batch_size}, last batch {num_data % batch_size}); choose a batch size "
            "that is a multiple of the process count and divides the data"
        )
    parallel = wrap(model, loss)

    def sharded_loss(model: nn.Module, x: torch.Tensor, num_data: int, beta: float) -> torch.Tensor:
        part = shard(x, world)
        scaled = num_data * world.size * len(part) / len(x)
        return parallel(part, num_data=int(scaled) if scaled.is_integer() else scaled, beta=beta)

    return sharded_loss
