"""Training by stochastic variational inference: one loop that reads top to bottom.

The objective is the ELBO of ``model.model`` and ``model.guide``: Pyro's
differentiable loss, or for Gaussian-latent models its direct transcription
(same draws, value and gradient; :mod:`ppl_vae.inference.objectives`). The
parameters are the model's own ``torch`` parameters, optimized by
``torch.optim.Adam``. Every epoch the loop appends one record to the history
(train ELBO per data point, test ELBO per data point, wall time) and, at
checkpoint epochs, writes the model, optimizer and RNG state atomically, so
``resume=True`` continues bit for bit where it stopped, also from a
checkpoint written on SIGINT or SIGTERM in the middle of an epoch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from ppl_vae.checkpoint import (
    CHECKPOINT_NAME,
    atomic_write_text,
    check_same_config,
    load_checkpoint,
    save_checkpoint,
)
from ppl_vae.data import binarize, check_binarize_mode
from ppl_vae.errors import (
    CheckpointError,
    ConfigError,
    TrainingDivergedError,
    TrainingInterrupted,
)
from ppl_vae.inference.distributed import (
    barrier,
    current_world,
    data_parallel_loss,
    mean_over_processes,
)
from ppl_vae.inference.likelihood import check_data, elbo_terms
from ppl_vae.inference.objectives import (
    ELBO_ESTIMATORS,
    ENGINES,
    OBJECTIVES,
    has_direct_elbo,
    make_loss,
)
from ppl_vae.inference.run_checks import (
    check_resume,
    data_fingerprint,
    load_training_state,
    warn_if_exploding,
)
from ppl_vae.models import model_class_name
from ppl_vae.models.base import (
    ProbabilisticModel,
    check_batch,
    check_device,
    check_values,
)
from ppl_vae.models.program import PyroProgram
from ppl_vae.rng import keeps_global_rng
from ppl_vae.run_folder import holding_out_dir
from ppl_vae.validation import check_int, check_number, check_positive_int

METRICS_NAME = "metrics.jsonl"
# Separates the seeds of epochs (data order) and of resumed runs (noise) in distributed training.
_RESUME_SEED_STRIDE = 100_003


@dataclass(frozen=True)
class SVIConfig:
    """Settings of :func:`train`.

    Attributes
    ----------
    epochs : int
        Passes over the training set.
    batch_size : int
        Minibatch size; the ``"data"`` plate rescales each batch to the full set.
    learning_rate : float
        Adam step size.
    elbo : {"meanfield", "trace"}
        ``meanfield``: Pyro's ``TraceMeanField_ELBO`` (closed-form KL);
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


@dataclass
class TrainResult:
    """What :func:`train` returns.

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


def evaluation_data(x: torch.Tensor, mode: str, seed: int) -> torch.Tensor:
    """The fixed evaluation copy of ``x``: one seeded binary draw unless ``mode == "none"``.

    Training with ``static`` or ``dynamic`` binarization is evaluated on this
    copy, so every epoch and ``ppl-vae evaluate`` see the same binary test set.
    """
    if check_binarize_mode(mode) == "none":
        return x
    generator = torch.Generator(device=x.device).manual_seed(seed + 1)
    return binarize(x, generator=generator)


def kl_weight(config: SVIConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The KL weight at a step: ``beta``, ramped up linearly over the warm-up epochs."""
    if config.kl_warmup_epochs == 0:
        return config.beta
    progress = (epoch * steps_per_epoch + step + 1) / (config.kl_warmup_epochs * steps_per_epoch)
    return config.beta * min(1.0, progress)


def _check_inputs(model: ProbabilisticModel | PyroProgram, x: torch.Tensor, name: str,
                  binarize_mode: str) -> None:
    if isinstance(model, PyroProgram):
        check_data(model, x, name)
        check_device(x, model, name)
        if binarize_mode != "none":
            check_values(x, "bernoulli")
        return
    check_batch(x, model.data_dim, name)
    check_device(x, model, name)
    check_values(x, "bernoulli" if binarize_mode != "none" else model.likelihood)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _write_metrics(out_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(out_dir / METRICS_NAME, "".join(json.dumps(r) + "\n" for r in history))


def _checkpoint_bytes(model: ProbabilisticModel) -> int:
    """About how large a checkpoint is: the parameters and Adam's two moments, plus 1 MiB."""
    return 3 * sum(p.numel() * p.element_size() for p in model.parameters()) + 2**20


def _prepare_out_dir(out_dir: Path, model: ProbabilisticModel, resume: bool, overwrite: bool) -> None:
    """Check, before any training, that checkpoints can be written to ``out_dir``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(
            f"cannot write to {out_dir} ({error.strerror}); choose a writable --out folder"
        ) from None
    # The new checkpoint is written beside the old one before it replaces it.
    needed = 2 * _checkpoint_bytes(model)
    free = shutil.disk_usage(out_dir).free
    if free < needed:
        raise ConfigError(
            f"only {free / 2**20:.1f} MiB free in {out_dir}, and checkpoints of this model need "
            f"about {needed / 2**20:.1f} MiB; free some space or choose another --out folder"
        )
    exists = (out_dir / CHECKPOINT_NAME).exists()
    if exists and not (resume or overwrite):
        raise ConfigError(
            f"{out_dir} already holds a checkpoint; pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out folder"
        )
    if resume and not exists:
        raise ConfigError(f"nothing to resume: {out_dir} holds no {CHECKPOINT_NAME}")


@contextlib.contextmanager
def _deferred_signals() -> Iterator[list[int]]:
    """Turn SIGINT and SIGTERM into a flag the loop checks after each step.

    A second signal stops at once (``KeyboardInterrupt``). Outside the main
    thread signals cannot be caught, and the flag stays empty.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signal_number: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signal_number)

    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def _parameters_finite(model: ProbabilisticModel) -> bool:
    """One host sync: NaN or inf in any parameter makes the sum of their sums non-finite."""
    return bool(torch.isfinite(torch.stack([p.detach().sum() for p in model.parameters()]).sum()))


@holding_out_dir("train", (CHECKPOINT_NAME, METRICS_NAME))
@keeps_global_rng
def train(
    model: ProbabilisticModel | PyroProgram | Any,
    train_x: torch.Tensor,
    config: SVIConfig = SVIConfig(),
    *,
    guide: Any = None,
    test_x: torch.Tensor | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """Fit a model's generative and inference networks by maximizing the ELBO (or the IWAE bound).

    Parameters
    ----------
    model : ProbabilisticModel, PyroProgram or callable
        Any ppl_vae model (or subclass), trained in place on the device of its
        parameters; or a Pyro program ``model(x)`` with its ``guide``, whose
        parameters (``pyro.module`` / ``pyro.param``) are found by tracing.
    train_x : Tensor, shape (num_train, data_dim)
        Training data on the model's device (move it there once, beforehand).
    config : SVIConfig
        Optimization settings.
    guide : callable, optional
        The guide, when ``model`` is a plain function.
    test_x : Tensor, shape (num_test, data_dim), optional
        Held-out data for the per-epoch test ELBO.
    out_dir : path-like, optional
        Folder for ``checkpoint.pt`` and ``metrics.jsonl``.
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` (``config.epochs`` may be larger
        than before; every other setting must match).
    overwrite : bool
        Replace an existing checkpoint in ``out_dir`` instead of refusing.
    progress : bool, optional
        Show a progress bar; by default only when stderr is a terminal.
    metadata : dict, optional
        Plain values stored in the checkpoint (e.g. how to reload the data).

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainingDivergedError
        If the loss becomes NaN or infinite; the last good checkpoint is kept.
    """
    if not isinstance(model, (ProbabilisticModel, PyroProgram)):
        if guide is None:
            raise ConfigError("train(model_function, x) needs the guide: train(model, x, guide=guide)")
        model = PyroProgram(model, guide, train_x[:2])
    elif guide is not None:
        raise ConfigError("guide= is for plain functions; a model object trains its own guide")
    _check_inputs(model, train_x, "train_x", config.binarize)
    if test_x is not None:
        _check_inputs(model, test_x, "test_x", config.binarize)
        test_eval = evaluation_data(test_x, config.binarize, config.seed)
    world = current_world()
    out_path = Path(out_dir) if out_dir is not None else None
    if out_path is not None:
        if world.is_main:
            _prepare_out_dir(out_path, model, resume, overwrite)
        barrier(world)
    elif resume:
        raise ConfigError("resume=True needs the out_dir that holds the checkpoint")
    fingerprint = data_fingerprint(train_x, test_x) if out_path is not None else None
    if progress is None:
        progress = sys.stderr.isatty()

    pyro.set_rng_seed(config.seed + world.rank)
    model.sync_param_store()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = make_loss(model, config.elbo, config.num_particles, config.engine, config.objective,
                        train_x[:2])
    num_train = train_x.shape[0]
    if world.size > 1:
        loss_fn = data_parallel_loss(model, loss_fn, num_train, config.batch_size, world,
                                     even_split_needed=not has_direct_elbo(model, train_x))
    steps_per_epoch = math.ceil(num_train / config.batch_size)
    result = TrainResult()
    start_epoch, elapsed, partial = 0, 0.0, None
    if resume:
        checkpoint = load_checkpoint(out_path / CHECKPOINT_NAME, map_location=model.device)
        check_resume(checkpoint, config.epochs, fingerprint, metadata, out_path / CHECKPOINT_NAME,
                     model.device)
        check_same_config(model.config(), checkpoint["model_config"], "model configuration")
        # Settings added in later versions take their defaults in older checkpoints.
        saved = {**asdict(SVIConfig()), **checkpoint["svi_config"], "epochs": config.epochs}
        check_same_config(asdict(config), saved, "training configuration")
        load_training_state(model, optimizer, checkpoint, out_path / CHECKPOINT_NAME)
        start_epoch = checkpoint["epoch"]
        if world.size == 1:
            _set_rng_state(checkpoint["rng_state"])
        else:  # fresh, distinct noise per process (the checkpoint holds rank 0's stream only)
            pyro.set_rng_seed(config.seed + world.rank + _RESUME_SEED_STRIDE * start_epoch)
        result.history = list(checkpoint["history"])
        elapsed = checkpoint.get("elapsed", result.history[-1]["wall_time"] if result.history else 0.0)
        partial = checkpoint.get("partial_epoch")
        result.checkpoint_path = out_path / CHECKPOINT_NAME
        result.checkpoint_epoch = start_epoch

    train_data = train_x
    if config.binarize == "static":
        generator = torch.Generator(device=train_x.device).manual_seed(config.seed)
        train_data = binarize(train_x, generator=generator)

    def save(epoch: int, partial_epoch: dict[str, Any] | None = None) -> None:
        path = out_path / CHECKPOINT_NAME
        checkpoint = {
            "model_class": model_class_name(type(model)),
            "model_config": model.config(),
            "model_state": model.state_dict(),
            "optimizer_state": optimizer.state_dict(),
            "svi_config": asdict(config),
            "epoch": epoch,
            "history": result.history,
            "rng_state": _rng_state(),
            "elapsed": time.perf_counter() - started,
            "metadata": metadata or {},
            "data_fingerprint": fingerprint,
            "num_threads": torch.get_num_threads(),
        }
        if partial_epoch is not None:
            checkpoint["partial_epoch"] = partial_epoch
        try:
            save_checkpoint(path, checkpoint)
            _write_metrics(out_path, result.history)
        except OSError as error:
            kept = (f"the checkpoint of epoch {result.checkpoint_epoch} is intact"
                    if result.checkpoint_path is not None else "no checkpoint had been written")
            raise CheckpointError(
                f"could not write {path} ({error.strerror or error}); {kept}. Free disk space "
                "or fix the folder's permissions, then continue with --resume."
            ) from None
        result.checkpoint_path = path
        result.checkpoint_epoch = epoch

    def stop(signal_number: int, epoch: int, step: int, partial_epoch: dict[str, Any] | None) -> None:
        where = f"epoch {epoch + 1}, step {step}" if partial_epoch else f"the end of epoch {epoch}"
        name = signal.Signals(signal_number).name
        if out_path is None:
            message = (f"training stopped by {name} at {where}; nothing was saved (no out_dir). "
                       "The model holds the parameters reached so far.")
        else:
            if partial_epoch is not None and not _parameters_finite(model):
                _diverged(epoch, step - 1, config, result)
            save(epoch, partial_epoch)
            message = (f"training stopped by {name} at {where}; checkpoint saved to "
                       f"{result.checkpoint_path}. Continue with the same command plus --resume "
                       "(from Python: train(..., out_dir=..., resume=True)).")
        raise TrainingInterrupted(message, signal_number)

    bar = tqdm(range(start_epoch, config.epochs), desc="SVI", unit="epoch", disable=not progress,
               initial=start_epoch, total=config.epochs, dynamic_ncols=True)
    started = time.perf_counter() - elapsed
    model.train()
    # Under torchrun the launcher handles signals for all processes.
    signals = _deferred_signals() if world.size == 1 else contextlib.nullcontext([])
    with pyro.validation_enabled(False), signals as received:
        for epoch in bar:
            # A checkpoint taken inside an epoch replays the epoch's shuffle and binarization.
            epoch_rng = partial["epoch_rng_state"] if partial else _rng_state()
            if partial:
                _set_rng_state(epoch_rng)
            # train_x was checked once above; binarize() would re-check it every epoch.
            epoch_data = torch.bernoulli(train_x) if config.binarize == "dynamic" else train_data
            if world.size == 1:
                order = torch.randperm(num_train, device=train_x.device)
            else:  # one order for every process, so that their shards partition each batch
                shuffle = torch.Generator().manual_seed(config.seed * _RESUME_SEED_STRIDE + epoch)
                order = torch.randperm(num_train, generator=shuffle).to(train_x.device)
            batches = order.split(config.batch_size)
            first_step, loss_sum = 0, train_x.new_zeros(())
            if partial:
                _set_rng_state(partial["rng_state"])
                first_step, loss_sum = partial["step"], partial["loss_sum"].to(train_x.device)
                partial = None
            for step in range(first_step, steps_per_epoch):
                beta = kl_weight(config, epoch, step, steps_per_epoch)
                loss = loss_fn(model, epoch_data[batches[step]], num_data=num_train, beta=beta)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
                optimizer.step()
                loss_sum = loss_sum + loss.detach()
                if (step + 1) % config.log_every == 0 or step + 1 == steps_per_epoch:
                    running = mean_over_processes(loss_sum, world).item() / (step + 1)
                    if not (math.isfinite(running) and _parameters_finite(model)):
                        _diverged(epoch, step, config, result)
                    bar.set_postfix(elbo=f"{-running / num_train:.2f}", refresh=False)
                if received and step + 1 < steps_per_epoch:
                    stop(received[0], epoch, step + 1, {
                        "step": step + 1, "loss_sum": loss_sum.detach().cpu(),
                        "epoch_rng_state": epoch_rng, "rng_state": _rng_state(),
                    })
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_elbo": -running / num_train,
                "beta": beta,
            }
            if test_x is not None and world.is_main:
                model.eval()
                terms = elbo_terms(model, test_eval, config.eval_num_samples)
                model.train()
                reconstruction, kl = terms["reconstruction"].mean, terms["kl"].mean
                test_elbo = reconstruction - kl
                if not math.isfinite(test_elbo):
                    _diverged(epoch, step, config, result)
                record |= {"test_elbo": test_elbo, "test_reconstruction": reconstruction,
                           "test_kl": kl}
                bar.set_postfix(elbo=f"{record['train_elbo']:.2f}", test=f"{test_elbo:.2f}")
            record["wall_time"] = time.perf_counter() - started
            result.history.append(record)
            warn_if_exploding(result.history, model)
            last = epoch + 1 == config.epochs
            if (out_path is not None and world.is_main
                    and ((epoch + 1) % config.checkpoint_every == 0 or last)):
                save(epoch + 1)
            if received and not last:
                stop(received[0], epoch + 1, 0, None)
    bar.close()
    return result


def _diverged(epoch: int, step: int, config: SVIConfig, result: TrainResult) -> None:
    kept = (
        f"the last good checkpoint ({result.checkpoint_path}, epoch "
        f"{result.checkpoint_epoch}) is kept"
        if result.checkpoint_path is not None
        else "no checkpoint had been written yet"
    )
    raise TrainingDivergedError(
        f"training diverged: the loss became NaN or infinite in epoch {epoch + 1} by step "
        f"{step + 1}; {kept}. Try a smaller learning rate (now {config.learning_rate:g}), "
        "gradient clipping (--clip-norm 10), or check that the data's range suits the likelihood."
    )
