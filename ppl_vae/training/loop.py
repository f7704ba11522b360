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
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import pyro
import torch
from tqdm.auto import tqdm

from ppl_vae.checkpoint import CHECKPOINT_NAME, save_checkpoint
from ppl_vae.data import bernoulli_draw, binarize, evaluation_data
from ppl_vae.errors import (
    CheckpointError,
    ConfigError,
    TrainingDivergedError,
    TrainingInterrupted,
)
from ppl_vae.inference.compiled import Program, compile_program
from ppl_vae.inference.importance import check_data, elbo_terms
from ppl_vae.models.base import (
    ProbabilisticModel,
    check_batch,
    check_device,
    check_values,
)
from ppl_vae.models.likelihoods import BernoulliLikelihood, likelihood_of
from ppl_vae.models.program import PyroProgram
from ppl_vae.rng import keeps_global_rng
from ppl_vae.threads import FreeCoreThreads
from ppl_vae.training.checks import data_fingerprint, warn_if_exploding
from ppl_vae.training.config import SVIConfig, TrainResult, kl_weight
from ppl_vae.training.distributed import (
    World,
    barrier,
    current_world,
    data_parallel_loss,
    mean_over_processes,
)
from ppl_vae.training.graphed_step import GraphedStep, graph_blocker
from ppl_vae.training.run_folder import (
    METRICS_NAME,
    holding_out_dir,
    prepare_out_dir,
    write_metrics,
)
from ppl_vae.training.signals import deferred_signals
from ppl_vae.training.state import (
    RESUME_SEED_STRIDE,
    EpochProgress,
    RunState,
    checkpoint_contents,
    resume_run,
    rng_state,
    set_rng_state,
)


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
    cuda_graph: bool = True,
    adapt_threads: bool = True,
) -> TrainResult:
    """Fit a model's generative and inference networks by maximizing the ELBO (or the IWAE bound).

    Parameters
    ----------
    model : ProbabilisticModel, PyroProgram, callable or Program
        Any ppl_vae model (or subclass), trained in place on the device of its
        parameters; or a Pyro program ``model(x)`` with its ``guide``, whose
        parameters (``pyro.module`` / ``pyro.param``) are found by tracing; or
        either compiled (:func:`~ppl_vae.inference.compile_program`). It is
        compiled once, for the loss and every epoch's test ELBO.
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
    cuda_graph : bool
        On a GPU, record the training step once as a CUDA graph and replay it
        (:mod:`ppl_vae.training.graphed_step`): the same numbers up to float
        rounding, without a kernel launch from Python per operation. Used
        where it applies (direct loss, constant KL weight, one process);
        False runs every step eagerly.
    adapt_threads : bool
        Keep torch's CPU thread count at the cores other processes leave free
        (:mod:`ppl_vae.threads`; restored afterwards), so that on a machine
        shared with a busy process the two do not fight over cores
        (``benchmarks/contention.py`` measures it). Sums over another number
        of threads may round differently in the last bits; False leaves
        torch's setting alone.

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainingDivergedError
        If the loss becomes NaN or infinite; the last good checkpoint is kept.

    Examples
    --------
    >>> from ppl_vae import VAE, SVIConfig, load_dataset, train
    >>> data = load_dataset("digits")
    >>> vae = VAE(data_dim=64, latent_dim=2, hidden_dims=(32,))
    >>> result = train(vae, data.train_x, SVIConfig(epochs=2, batch_size=256), progress=False)
    >>> len(result.history)                    # one record per epoch
    2
    """
    compiled = model if isinstance(model, Program) else None
    model = _trainable(model, guide, train_x)
    _check_inputs(model, train_x, "train_x", config.binarize)
    test_eval = None
    if test_x is not None:
        _check_inputs(model, test_x, "test_x", config.binarize)
        test_eval = evaluation_data(test_x, config.binarize, config.seed)
    world = current_world()
    out_path = _output_folder(out_dir, model, resume, overwrite, world)
    fingerprint = data_fingerprint(train_x, test_x) if out_path is not None else None

    pyro.set_rng_seed(config.seed + world.rank)
    model.sync_param_store()
    optimizer = adam(model.parameters(), config.learning_rate)
    if compiled is None or compiled.source is not model:  # read once: the loss and every test ELBO
        compiled = compile_program(model, train_x[:2], check=False)
    loss_fn = compiled.elbo_loss(config.elbo, config.num_particles, config.engine, config.objective)
    direct_loss = config.engine != "pyro" and compiled.direct
    if world.size > 1:
        loss_fn = data_parallel_loss(model, loss_fn, train_x.shape[0], config.batch_size, world,
                                     even_split_needed=not direct_loss)
    run = _TrainingRun(model, optimizer, loss_fn, config, world, out_path, fingerprint, metadata,
                       num_data=train_x.shape[0], program=compiled)
    state = RunState()
    if resume:
        state = resume_run(out_path / CHECKPOINT_NAME, model, optimizer, config, fingerprint,
                           metadata, world)
        run.result.history = state.history
        run.result.checkpoint_path = out_path / CHECKPOINT_NAME
        run.result.checkpoint_epoch = state.start_epoch
    if cuda_graph and graph_blocker(list(model.parameters()), optimizer, train_x,
                                    direct_loss=direct_loss, constant_beta=config.kl_warmup_epochs == 0,
                                    processes=world.size) is None:
        run.graphed = GraphedStep(partial(run.step, beta=config.beta), optimizer,
                                  (config.batch_size, *train_x.shape[1:]), train_x)
    train_data = train_x
    if config.binarize == "static":
        generator = torch.Generator(device=train_x.device).manual_seed(config.seed)
        train_data = binarize(train_x, generator=generator)

    run.bar = tqdm(range(state.start_epoch, config.epochs), desc="SVI", unit="epoch",
                   disable=not (sys.stderr.isatty() if progress is None else progress),
                   initial=state.start_epoch, total=config.epochs, dynamic_ncols=True)
    run.started = time.perf_counter() - state.elapsed
    model.train()
    # Under torchrun the launcher handles signals for all processes.
    signals = deferred_signals() if world.size == 1 else contextlib.nullcontext([])
    interrupted_epoch = state.progress
    with pyro.validation_enabled(False), signals as received, \
            FreeCoreThreads(adapt_threads) as run.threads:
        for epoch in run.bar:
            running, beta, step = run.epoch(epoch, train_x, train_data, interrupted_epoch, received)
            interrupted_epoch = None
            record: dict[str, Any] = {"epoch": epoch + 1, "train_elbo": -running / train_x.shape[0],
                                      "beta": beta}
            if test_eval is not None and world.is_main:
                record |= run.evaluate(test_eval, epoch, step)
                run.bar.set_postfix(elbo=f"{record['train_elbo']:.2f}", test=f"{record['test_elbo']:.2f}")
            record["wall_time"] = time.perf_counter() - run.started
            run.result.history.append(record)
            warn_if_exploding(run.result.history, model)
            last = epoch + 1 == config.epochs
            if (out_path is not None and world.is_main
                    and ((epoch + 1) % config.checkpoint_every == 0 or last)):
                run.save(epoch + 1)
            if received and not last:
                run.stop(received[0], epoch + 1, 0, None)
    run.bar.close()
    return run.result


#: Devices with torch's fused Adam kernel.
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def adam(parameters: Iterable[torch.nn.Parameter], learning_rate: float) -> torch.optim.Adam:
    """``torch.optim.Adam``, fused (one kernel over all parameters per step) where the device has it.

    The update is Adam's, equal to the default (foreach) implementation up to
    float rounding, and it replaces that update's many small per-parameter
    operators, a large share of a small model's step on a CPU, with one
    kernel (``benchmarks/step_profile.py`` measures both).
    """
    parameters = list(parameters)
    fused = all(p.device.type in FUSED_ADAM_DEVICES and p.is_floating_point() for p in parameters)
    return torch.optim.Adam(parameters, lr=learning_rate, fused=fused or None)


@dataclass
class _TrainingRun:
    """The objects one call of :func:`train` works with, and its steps, saves and stops."""

    model: ProbabilisticModel | PyroProgram
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[..., torch.Tensor]
    config: SVIConfig
    world: World
    out_path: Path | None
    fingerprint: dict[str, str | None] | None
    metadata: dict[str, Any] | None
    num_data: int = 0
    graphed: GraphedStep | None = None
    threads: FreeCoreThreads = field(default_factory=lambda: FreeCoreThreads(enabled=False))
    result: TrainResult = field(default_factory=TrainResult)
    bar: Any = None
    started: float = 0.0
    last_finite: _Snapshot | None = None
    program: Program | None = None

    def epoch(self, epoch: int, train_x: torch.Tensor, train_data: torch.Tensor,
              interrupted: EpochProgress | None, received: list[int]) -> tuple[float, float, int]:
        """One pass over the shuffled batches (the rest of one, after an interrupted epoch).

        Returns
        -------
        running : float
            The epoch's mean loss per step (negative ELBO of the data set).
        beta : float
            The KL weight at the last step.
        step : int
            The last step's index.
        """
        config, num_train = self.config, train_x.shape[0]
        self.last_finite = _Snapshot.take(self.model, self.optimizer, epoch)
        # An interrupted epoch replays its shuffle and binarization from the epoch's random state.
        epoch_rng = interrupted.epoch_rng_state if interrupted else rng_state()
        if interrupted:
            set_rng_state(epoch_rng)
        # train_x was checked once above; binarize() would re-check it every epoch.
        epoch_data = bernoulli_draw(train_x) if config.binarize == "dynamic" else train_data
        if self.world.size == 1:
            order = torch.randperm(num_train, device=train_x.device)
        else:  # one order for every process, so that their shards partition each batch
            shuffle = torch.Generator().manual_seed(config.seed * RESUME_SEED_STRIDE + epoch)
            order = torch.randperm(num_train, generator=shuffle).to(train_x.device)
        batches = order.split(config.batch_size)
        first_step, loss_sum = 0, train_x.new_zeros(())
        if interrupted:
            set_rng_state(interrupted.rng_state)
            first_step, loss_sum = interrupted.step, interrupted.loss_sum.to(train_x.device)
        for step in range(first_step, len(batches)):
            self.threads.poll()
            beta = kl_weight(config, epoch, step, len(batches))
            if self.graphed is not None:
                loss = self.graphed(epoch_data, batches[step])
            else:
                # index_select: the rows data[index] gives, in a quarter of its time on the CPU
                loss = self.step(epoch_data.index_select(0, batches[step]), beta)
            loss_sum = loss_sum + loss
            if (step + 1) % config.log_every == 0 or step + 1 == len(batches):
                running = mean_over_processes(loss_sum, self.world).item() / (step + 1)
                if not (math.isfinite(running) and _parameters_finite(self.model)):
                    self.diverged(epoch, step)
                self.bar.set_postfix(elbo=f"{-running / num_train:.2f}", refresh=False)
            if received and step + 1 < len(batches):
                self.stop(received[0], epoch, step + 1,
                          EpochProgress(step + 1, loss_sum, epoch_rng, rng_state()))
        return running, beta, step

    def step(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        """One optimizer step on the batch ``x``; returns its loss, detached, shape ()."""
        loss = self.loss_fn(self.model, x, num_data=self.num_data, beta=beta)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.optimizer.step()
        return loss.detach()

    def evaluate(self, test_eval: torch.Tensor, epoch: int, step: int) -> dict[str, float]:
        """The test ELBO and its two terms, per data point."""
        self.model.eval()
        terms = elbo_terms(self.program or self.model, test_eval, self.config.eval_num_samples)
        self.model.train()
        reconstruction, kl = terms["reconstruction"].mean, terms["kl"].mean
        test_elbo = reconstruction - kl
        if not math.isfinite(test_elbo):
            self.diverged(epoch, step)
        return {"test_elbo": test_elbo, "test_reconstruction": reconstruction, "test_kl": kl}

    def save(self, epoch: int, progress: EpochProgress | None = None) -> None:
        """Write the checkpoint and metrics atomically; one CheckpointError line if the disk refuses."""
        path = self.out_path / CHECKPOINT_NAME
        contents = checkpoint_contents(self.model, self.optimizer, self.config, epoch,
                                       self.result.history, self.started, self.metadata,
                                       self.fingerprint, progress, self.threads.callers_threads)
        try:
            save_checkpoint(path, contents)
            write_metrics(self.out_path, self.result.history)
        except OSError as error:
            kept = (f"the checkpoint of epoch {self.result.checkpoint_epoch} is intact"
                    if self.result.checkpoint_path is not None else "no checkpoint had been written")
            raise CheckpointError(
                f"could not write {path} ({error.strerror or error}); {kept}. Free disk space "
                "or fix the folder's permissions, then continue with --resume."
            ) from None
        self.result.checkpoint_path = path
        self.result.checkpoint_epoch = epoch

    def stop(self, signal_number: int, epoch: int, step: int,
             progress: EpochProgress | None) -> NoReturn:
        """Save (with the epoch's progress, if inside one) and raise TrainingInterrupted."""
        where = f"epoch {epoch + 1}, step {step}" if progress else f"the end of epoch {epoch}"
        name = signal.Signals(signal_number).name
        if self.out_path is None:
            message = (f"training stopped by {name} at {where}; nothing was saved (no out_dir). "
                       "The model holds the parameters reached so far.")
        else:
            if progress is not None and not _parameters_finite(self.model):
                self.diverged(epoch, step - 1)
            self.save(epoch, progress)
            message = (f"training stopped by {name} at {where}; checkpoint saved to "
                       f"{self.result.checkpoint_path}. Continue with the same command plus --resume "
                       "(from Python: train(..., out_dir=..., resume=True)).")
        raise TrainingInterrupted(message, signal_number)

    def diverged(self, epoch: int, step: int) -> NoReturn:
        """Put the last finite parameters and optimizer state back, then raise TrainingDivergedError."""
        restored = None
        if self.last_finite is not None:
            self.last_finite.restore(self.model, self.optimizer)
            restored = self.last_finite.epoch
        _diverged(epoch, step, self.config, self.result, restored)


@dataclass(frozen=True)
class _Snapshot:
    """Copies of a model's parameters and its optimizer's state, as they were at the start of an epoch."""

    epoch: int
    parameters: list[torch.Tensor]
    optimizer_state: dict[torch.Tensor, dict[str, Any]]

    @classmethod
    def take(cls, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> _Snapshot:
        with torch.no_grad():
            return cls(epoch, [p.detach().clone() for p in model.parameters()],
                       {p: {k: v.clone() if isinstance(v, torch.Tensor) else v
                            for k, v in state.items()}
                        for p, state in optimizer.state.items()})

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Copy the values back in place: the caller's parameter objects stay the same objects."""
        with torch.no_grad():
            for parameter, saved in zip(model.parameters(), self.parameters):
                parameter.copy_(saved)
        optimizer.state.clear()
        optimizer.state.update(self.optimizer_state)


def _trainable(model: Any, guide: Any, train_x: torch.Tensor) -> ProbabilisticModel | PyroProgram:
    """A model object as it is; two plain functions (or a Program of them) as one :class:`PyroProgram`."""
    if isinstance(model, Program):
        if guide is not None:
            raise ConfigError("guide= is for plain functions; a compiled Program holds its guide")
        objects = isinstance(model.source, (ProbabilisticModel, PyroProgram))
        model, guide = model.source, None if objects else model.guide_program
    if not isinstance(model, (ProbabilisticModel, PyroProgram)):
        if guide is None:
            raise ConfigError("train(model_function, x) needs the guide: train(model, x, guide=guide)")
        return PyroProgram(model, guide, train_x[:2])
    if guide is not None:
        raise ConfigError("guide= is for plain functions; a model object trains its own guide")
    return model


def _output_folder(out_dir: str | os.PathLike | None, model: torch.nn.Module, resume: bool,
                   overwrite: bool, world: World) -> Path | None:
    """``out_dir`` as a Path, checked writable (by the main process) before any training."""
    if out_dir is None:
        if resume:
            raise ConfigError("resume=True needs the out_dir that holds the checkpoint")
        return None
    out_path = Path(out_dir)
    if world.is_main:
        prepare_out_dir(out_path, model, resume, overwrite)
    barrier(world)
    return out_path


def _check_inputs(model: ProbabilisticModel | PyroProgram, x: torch.Tensor, name: str,
                  binarize_mode: str) -> None:
    if isinstance(model, PyroProgram):
        check_device(x, model, name)  # first: a meta tensor has no values to check
        check_data(model, x, name)
        if binarize_mode != "none":
            check_values(x, BernoulliLikelihood())  # binarizing draws Bernoulli pixels
        return
    check_batch(x, model.data_dim, name)
    check_device(x, model, name)
    check_values(x, BernoulliLikelihood() if binarize_mode != "none" else likelihood_of(model))


def _parameters_finite(model: ProbabilisticModel) -> bool:
    """One host sync: NaN or inf in any parameter makes the sum of their sums non-finite."""
    return bool(torch.isfinite(torch.stack([p.detach().sum() for p in model.parameters()]).sum()))


def _diverged(epoch: int, step: int, config: SVIConfig, result: TrainResult,
              restored: int | None) -> None:
    kept = (
        f"the last good checkpoint ({result.checkpoint_path}, epoch "
        f"{result.checkpoint_epoch}) is kept"
        if result.checkpoint_path is not None
        else "no checkpoint had been written yet"
    )
    if restored is not None:
        kept += (f"; the model's parameters are restored to their last finite values, those at "
                 f"the start of epoch {restored + 1}")
    raise TrainingDivergedError(
        f"training diverged: the loss became NaN or infinite in epoch {epoch + 1} by step "
        f"{step + 1}; {kept}. Try a smaller learning rate (now {config.learning_rate:g}), "
        "gradient clipping (--clip-norm 10), or check that the data's range suits the likelihood."
    )
