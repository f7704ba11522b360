"""Training: the SVI loop, what a checkpoint holds, run folders, data-parallel runs.

* :mod:`~ppl_vae.training.loop`: :func:`train`, one loop that reads top to bottom;
* :mod:`~ppl_vae.training.config`: :class:`SVIConfig`, :class:`TrainResult`;
* :mod:`~ppl_vae.training.state`: what a checkpoint holds and how a run resumes;
* :mod:`~ppl_vae.training.checks`: same data on resume, loud explosions;
* :mod:`~ppl_vae.training.run_folder`: ``train``'s folder (held with :mod:`ppl_vae.storage`), its metrics;
* :mod:`~ppl_vae.training.signals`: SIGINT / SIGTERM finish the step and save;
* :mod:`~ppl_vae.training.distributed`: DistributedDataParallel under ``torchrun``.
"""

from ppl_vae.data import evaluation_data
from ppl_vae.training.config import SVIConfig, TrainResult, kl_weight
from ppl_vae.training.loop import train
from ppl_vae.training.run_folder import METRICS_NAME

__all__ = ["METRICS_NAME", "SVIConfig", "TrainResult", "evaluation_data", "kl_weight", "train"]
