"""What a training run is told (:class:`SVIConfig`) and what it returns (:class:`TrainResult`).

The config is a frozen dataclass of plain values: it is stored in every
checkpoint and compared field by field on resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppl_vae.data import check_binarize_mode
from ppl_vae.errors import ConfigError
from ppl_vae.inference.objectives import ELBO_ESTIMATORS, ENGINES, OBJECTIVES
from ppl_vae.validation import check_int, check_number, check_positive_int


@dataclass(frozen=True)
class SVIConfig:
    """Settings of :func:`~ppl_vae.training.train`.

    Attributes
    ----------
    epochs : int
        Passes over the training set.
    batch_size : int
        Minibatch size; the ``"data"`` plate rescales each batch to the full set.
    learning_rate : float
        Adam step size.
    elbo : {"meanfield", "trace"}
        ``meanfield``: Pyro's ``TraceMeanField_ELBO`` (closed-form KL; for a
        guide that draws the latent sites in another order than the model,
        e.g. :class:`~ppl_vae.models.vae.TwoLayerVAE`'s q(z2 | x) q(z1 | z2),
        where that KL would be biased, ``Trace_ELBO``);
        ``trace``: ``Trace_ELBO`` (Monte Carlo KL).
    num_particles : int
        Samples of z per data point in each ELBO estimate.
    beta : float
        Weight of the KL term (1 is the ELBO; other values give a beta-VAE).
    kl_warmup_epochs : int
        Epochs over which the KL weight rises linearly from 0 to ``beta``.
    clip_norm : float or None
        Clip the gradient's global norm to this value.
    binarize : {"none", "static", "dynamic"}
        ``dynamic`` draws fresh binary images every epoch; ``static`` draws once.
    seed : int
        Seed of every random choice (shuffling, binarization, z samples).
    checkpoint_every : int
        Write a checkpoint every this many epochs (and after the last one).
    log_every : int
        Steps between reads of the loss on the host (progress bar, NaN check).
    eval_num_samples : int
        Samples per test point for the per-epoch test ELBO.
    engine : {"auto", "direct", "pyro"}
        How the loss is computed. ``pyro``: Pyro's ``differentiable_loss`` of
        ``model.model`` and ``model.guide``. ``direct``: the same objective
        written out for Gaussian-latent models (same random draws, value and
        gradient; see :mod:`ppl_vae.inference.objectives`), without the
        per-step cost of Pyro's effect handlers. ``auto``: ``direct`` where
        the model allows it.
    objective : {"elbo", "iwae"}
        ``elbo``: the evidence lower bound. ``iwae``: the importance-weighted
        bound of Burda et al. (2016) with K = ``num_particles`` samples per
        point, tighter than the ELBO for K > 1 (equal at K = 1).

    Examples
    --------
    >>> from ppl_vae import SVIConfig
    >>> config = SVIConfig(epochs=50, objective="iwae", num_particles=5)
    >>> config.epochs, config.batch_size
    (50, 128)
    """

    epochs: int = 200
    batch_size: int = 128
    learning_rate: float = 1e-3
    elbo: str = "meanfield"
    num_particles: int = 1
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    clip_norm: float | None = None
    binarize: str = "none"
    seed: int = 0
    checkpoint_every: int = 10
    log_every: int = 50
    eval_num_samples: int = 1
    engine: str = "auto"
    objective: str = "elbo"

    def __post_init__(self) -> None:
        # Checked values are stored as plain int / float: a numpy scalar would not load
        # from a checkpoint with weights_only=True.
        def store(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("epochs", "batch_size", "num_particles", "checkpoint_every", "log_every",
                     "eval_num_samples"):
            store(name, check_positive_int(getattr(self, name), name))
        store("learning_rate", check_number(self.learning_rate, "learning_rate"))
        if self.elbo not in ELBO_ESTIMATORS:
            raise ConfigError(f"unknown elbo {self.elbo!r}; choose one of {', '.join(ELBO_ESTIMATORS)}")
        store("beta", check_number(self.beta, "beta", positive=False))
        store("kl_warmup_epochs", check_int(self.kl_warmup_epochs, "kl_warmup_epochs", 0))
        store("seed", check_int(self.seed, "seed", 0))
        if self.clip_norm is not None:
            store("clip_norm", check_number(self.clip_norm, "clip_norm"))
        check_binarize_mode(self.binarize)
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}; choose one of "
                              f"{', '.join(OBJECTIVES)}")


def kl_weight(config: SVIConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The KL weight at a step: ``beta``, ramped up linearly over the warm-up epochs."""
    if config.kl_warmup_epochs == 0:
        return config.beta
    progress = (epoch * steps_per_epoch + step + 1) / (config.kl_warmup_epochs * steps_per_epoch)
    return config.beta * min(1.0, progress)


@dataclass
class TrainResult:
    """What :func:`~ppl_vae.training.train` returns.

    Attributes
    ----------
    history : list of dict
        One record per epoch: ``epoch``, ``train_elbo`` (per data point, nats,
        with the KL weighted by ``beta``), ``beta``, and with test data
        ``test_elbo`` with its two terms ``test_reconstruction`` (E_q log p(x|z))
        and ``test_kl`` (KL(q(z|x) || p(z))), and ``wall_time`` (seconds since
        the start, summed over resumed runs).
    checkpoint_path : Path or None
        The last checkpoint written, when an output folder was given.
    checkpoint_epoch : int
        The epoch that checkpoint holds.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint_path: Path | None = None
    checkpoint_epoch: int = 0

    @property
    def final_test_elbo(self) -> float | None:
        return self.history[-1]["test_elbo"] if self.history else None
