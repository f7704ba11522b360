"""What a training checkpoint holds, and how a run continues from one bit for bit.

A checkpoint written at the end of an epoch holds the model and optimizer
state, the config, the history, the wall time so far and the random state.
One written inside an epoch (on SIGINT or SIGTERM) also holds an
:class:`EpochProgress`: the step reached, the loss summed so far, and the
random state at the start of the epoch (to replay its shuffle and
binarization) and at the step (to continue its noise).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch

from ppl_vae.checkpoint import check_same_config, load_checkpoint
from ppl_vae.models import model_class_name
from ppl_vae.rng import set_torch_rng_state as set_rng_state
from ppl_vae.rng import torch_rng_state as rng_state
from ppl_vae.training.checks import check_resume, load_training_state
from ppl_vae.training.config import SVIConfig
from ppl_vae.training.distributed import World

#: Separates the seeds of epochs (data order) and of resumed runs (noise) in distributed training.
RESUME_SEED_STRIDE = 100_003


@dataclass
class EpochProgress:
    """How far an interrupted epoch got (the checkpoint's ``partial_epoch``).

    Attributes
    ----------
    step : int
        Steps of the epoch already taken.
    loss_sum : Tensor, shape ()
        Their summed loss.
    epoch_rng_state : dict
        The random state at the start of the epoch.
    rng_state : dict
        The random state after ``step`` steps.
    """

    step: int
    loss_sum: torch.Tensor
    epoch_rng_state: dict[str, Any]
    rng_state: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "loss_sum": self.loss_sum.detach().cpu(),
                "epoch_rng_state": self.epoch_rng_state, "rng_state": self.rng_state}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> EpochProgress:
        return cls(saved["step"], saved["loss_sum"], saved["epoch_rng_state"], saved["rng_state"])


@dataclass
class RunState:
    """Where a run starts: epoch 0, or where its checkpoint left it.

    Attributes
    ----------
    start_epoch : int
    history : list of dict
    elapsed : float
        Seconds of training before this call.
    progress : EpochProgress or None
        The interrupted epoch ``start_epoch + 1``, if the checkpoint was taken inside it.
    """

    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    progress: EpochProgress | None = None


def checkpoint_contents(model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: SVIConfig,
                        epoch: int, history: list[dict[str, Any]], started: float,
                        metadata: dict[str, Any] | None, fingerprint: dict[str, str | None] | None,
                        progress: EpochProgress | None, num_threads: int | None = None) -> dict[str, Any]:
    """Everything a checkpoint holds after ``epoch`` epochs (and ``progress`` into the next).

    ``num_threads`` is the CPU thread count the run was given (torch's current
    one by default), which a resume compares with its own; not the count a
    shared machine made :mod:`ppl_vae.threads` fall back to for a while.
    """
    checkpoint = {
        "model_class": model_class_name(type(model)),
        "model_config": model.config(),
        "model_state": model.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "svi_config": asdict(config),
        "epoch": epoch,
        "history": history,
        "rng_state": rng_state(),
        "elapsed": time.perf_counter() - started,
        "metadata": metadata or {},
        "data_fingerprint": fingerprint,
        "num_threads": torch.get_num_threads() if num_threads is None else num_threads,
    }
    if progress is not None:
        checkpoint["partial_epoch"] = progress.to_dict()
    return checkpoint


def resume_run(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               config: SVIConfig, fingerprint: dict[str, str | None] | None,
               metadata: dict[str, Any] | None, world: World) -> RunState:
    """Load ``path`` into the model and optimizer after checking it continues this run.

    The random state is restored too (a distributed run reseeds each process
    instead: the checkpoint holds rank 0's stream only).

    Raises
    ------
    CheckpointError, ConfigError
        If the checkpoint is unreadable, or its data, model or settings differ.
    """
    checkpoint = load_checkpoint(path, map_location=model.device)
    check_resume(checkpoint, config.epochs, fingerprint, metadata, path, model.device)
    check_same_config(model.config(), checkpoint["model_config"], "model configuration")
    # Settings added in later versions take their defaults in older checkpoints.
    saved = {**asdict(SVIConfig()), **checkpoint["svi_config"], "epochs": config.epochs}
    check_same_config(asdict(config), saved, "training configuration")
    load_training_state(model, optimizer, checkpoint, path)
    start_epoch = checkpoint["epoch"]
    if world.size == 1:
        set_rng_state(checkpoint["rng_state"])
    else:
        pyro.set_rng_seed(config.seed + world.rank + RESUME_SEED_STRIDE * start_epoch)
    history = list(checkpoint["history"])
    elapsed = checkpoint.get("elapsed", history[-1]["wall_time"] if history else 0.0)
    partial = checkpoint.get("partial_epoch")
    return RunState(start_epoch, history, elapsed,
                    EpochProgress.from_dict(partial) if partial else None)
