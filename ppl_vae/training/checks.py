"""Checks that keep one training run one run: same data on resume, honest resumes, loud explosions.

:func:`~ppl_vae.training.train` calls these at a few fixed places, so the
loop itself stays short:

* :func:`data_fingerprint` hashes the training and test data once (SHA-256 of
  each tensor's dtype, shape and bytes); the checkpoint stores it and
  :func:`check_resume` refuses a resume on other data, naming both sources.
* :func:`check_resume` also refuses ``epochs`` below the checkpoint's epoch and
  warns when the CPU thread count differs from the one that wrote the
  checkpoint (float sums are split differently across threads, so the run
  continues correctly but not bit-identically).
* :func:`warn_if_exploding` warns once when the test ELBO falls far below its
  best so far without becoming NaN (e.g. a learning rate of 1e3).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Any

import torch

from ppl_vae.checkpoint import RESUME_KEYS, require_keys
from ppl_vae.errors import CheckpointError, ConfigError
from ppl_vae.models.likelihoods import likelihood_of

#: Warn when the test ELBO drops below ``best - EXPLOSION_FACTOR * max(|best|, 1)``: a fall of
#: more than the whole size of the best ELBO is no noise of SGD (epoch-to-epoch changes of a
#: healthy run are a few per cent), while a diverging learning rate falls by orders of magnitude.
EXPLOSION_FACTOR = 1.0
#: A Bernoulli model that ignores z scores ``-D log 2`` per point; an ELBO ten times worse is
#: far beyond what random initial weights give (about 1-2 times it on the digits and MNIST).
TRIVIAL_FACTOR = 10.0


def tensor_digest(x: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (its content, wherever it lives)."""
    flat = x.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.sha256(f"{x.dtype}{tuple(x.shape)}".encode())
    if flat.numel():
        digest.update(flat.view(torch.uint8).numpy())  # the buffer itself, no copy
    return digest.hexdigest()


def data_fingerprint(train_x: torch.Tensor, test_x: torch.Tensor | None) -> dict[str, str | None]:
    """Content hashes of the training and test data, ``{"train": hex, "test": hex or None}``."""
    return {"train": tensor_digest(train_x),
            "test": tensor_digest(test_x) if test_x is not None else None}


def check_resume(checkpoint: dict[str, Any], epochs: int, fingerprint: dict[str, str | None],
                 metadata: dict[str, Any] | None, path: str | os.PathLike,
                 device: torch.device) -> None:
    """Refuse a resume that would not continue the same run; warn when it will not be bit-exact.

    Parameters
    ----------
    checkpoint : dict
        What :func:`~ppl_vae.checkpoint.load_checkpoint` returned.
    epochs : int
        The epochs the resumed run asks for.
    fingerprint : dict
        :func:`data_fingerprint` of this run's data.
    metadata : dict or None
        This run's metadata; its ``"data"`` names the data source in messages.
    path : path-like
        The checkpoint file, for the messages.
    device : torch.device
        Where training runs (the thread count matters on the CPU only).

    Raises
    ------
    CheckpointError
        If the checkpoint lacks what a resume needs, or was trained on other data.
    ConfigError
        If ``epochs`` is below the checkpoint's epoch.
    """
    require_keys(checkpoint, RESUME_KEYS, path, "--resume")
    if epochs < checkpoint["epoch"]:
        raise ConfigError(
            f"the checkpoint already holds {checkpoint['epoch']} epochs and --epochs {epochs} asks "
            f"for fewer; pass --epochs above {checkpoint['epoch']} to train further (sample and "
            "evaluate use the checkpoint as it is)"
        )
    saved = checkpoint.get("data_fingerprint")
    if saved is not None and saved != fingerprint:
        split = "training" if saved.get("train") != fingerprint["train"] else "test"
        then = checkpoint.get("metadata", {}).get("data", "unnamed data")
        now = (metadata or {}).get("data", "the data passed to train()")
        _check_same_split(checkpoint.get("metadata", {}), metadata or {}, then)
        changed = " (its content changed since)" if then == now else ""
        raise CheckpointError(
            f"the {split} data differ from those the checkpoint was trained on: checkpoint from "
            f"{then}{changed}, this run on {now}; resume with the same --data, or start a new run "
            "(another --out folder, or --overwrite)"
        )
    threads = checkpoint.get("num_threads")
    if device.type == "cpu" and threads is not None and threads != torch.get_num_threads():
        warnings.warn(
            f"the checkpoint was written with {threads} CPU threads and this run uses "
            f"{torch.get_num_threads()}: training continues correctly but not bit-identically to "
            f"an uninterrupted run; set OMP_NUM_THREADS={threads} for a bit-exact resume",
            RuntimeWarning, stacklevel=3)


def _check_same_split(saved: dict[str, Any], current: dict[str, Any], data: str) -> None:
    """Name the seed when the data differ because the same data set was split with another seed."""
    then, now = saved.get("data_seed"), current.get("data_seed")
    if saved.get("data") == current.get("data") and None not in (then, now) and then != now:
        raise CheckpointError(
            f"the checkpoint's run split {data} into training and test points with seed {then}, "
            f"and this run splits it with seed {now}; resume with --seed {then}, or start a new "
            "run (another --out folder, or --overwrite)")


#: Optimizer settings that choose a kernel, not the update (None, True or False): a checkpoint
#: written with another choice (e.g. before Adam was fused) resumes with the one it was written with.
KERNEL_CHOICES = ("fused", "foreach", "capturable")


def load_training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Load the weights and the optimizer state, turning any mismatch into a one-line error.

    The optimizer state must have the structure of ``optimizer``'s own: the
    same parameter groups with settings of the same types, and moment tensors
    of the parameters' shapes (torch would accept others and fail at the first
    step).
    """
    fresh, saved = optimizer.state_dict(), checkpoint["optimizer_state"]

    def refuse(reason: str) -> CheckpointError:
        return CheckpointError(
            f"the weights or optimizer state in {path} do not fit this model ({reason}); the file "
            "is damaged or was edited: start a new run with --overwrite")

    state = saved.get("state")
    if not (isinstance(state, dict) and all(
            isinstance(entry, dict) and all(isinstance(v, torch.Tensor) for v in entry.values())
            for entry in state.values())):
        raise refuse("the optimizer's state is not a mapping of parameters to tensors")
    groups = saved.get("param_groups")
    if not isinstance(groups, list) or len(groups) != len(fresh["param_groups"]):
        raise refuse("the optimizer's parameter groups differ")
    for group, expected in zip(groups, fresh["param_groups"]):
        if not isinstance(group, dict) or set(group) != set(expected):
            raise refuse("the optimizer's settings differ")
        for key, value in expected.items():
            if key == "params" or (key in KERNEL_CHOICES and {type(group[key]), type(value)}
                                   <= {bool, type(None)}):
                continue
            if type(group[key]) is not type(value):
                raise refuse(f"the optimizer's {key} is {group[key]!r}")
    try:
        model.load_state_dict(checkpoint["model_state"])
        optimizer.load_state_dict(saved)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else repr(error)
        raise refuse(reason) from None
    for parameter, state in optimizer.state.items():
        for key, value in state.items():
            if not isinstance(value, torch.Tensor) or (key != "step"
                                                       and value.shape != parameter.shape):
                raise refuse(f"the optimizer's {key} does not match a parameter of shape "
                             f"{tuple(parameter.shape)}")


def warn_if_exploding(history: list[dict[str, Any]], model: torch.nn.Module | None = None) -> None:
    """Warn when the last epoch's test ELBO first falls far below its best, or below a trivial model.

    Two signs of an optimization that blew up without producing NaN:

    * the test ELBO lies more than ``EXPLOSION_FACTOR * max(|best|, 1)`` below
      the best test ELBO of the epochs before;
    * with a Bernoulli likelihood, it lies below ``TRIVIAL_FACTOR`` times the
      ELBO of the trivial model that ignores z and gives every pixel
      probability 1/2 (``-data_dim * log 2`` per point): this catches a run
      that explodes in its first epoch, when there is no best yet.

    Warns once per fall: not again while the epochs stay that far down.
    """
    scores = [record.get("test_elbo") for record in history]
    trivial = None
    likelihood = likelihood_of(model)
    if likelihood is not None:
        trivial = likelihood.trivial_log_prob(model.data_dim)

    def problem(index: int) -> str | None:
        score = scores[index] if index >= 0 else None
        if score is None:
            return None
        earlier = [(s, i) for i, s in enumerate(scores[:index]) if s is not None]
        if earlier:
            best, at = max(earlier)
            if score < best - EXPLOSION_FACTOR * max(abs(best), 1.0):
                return f"far below its best {best:.4g} (epoch {history[at]['epoch']})"
        if trivial is not None and score < TRIVIAL_FACTOR * trivial:
            return (f"far below the {trivial:.4g} of a model that gives every pixel "
                    "probability 1/2")
        return None

    found = problem(len(scores) - 1)
    if found and not problem(len(scores) - 2):
        warnings.warn(
            f"the test ELBO fell to {scores[-1]:.4g} in epoch {history[-1]['epoch']}, {found}: "
            "the optimization is unstable; lower --learning-rate or add --clip-norm",
            RuntimeWarning, stacklevel=3)
