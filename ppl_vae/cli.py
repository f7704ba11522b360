"""The ``ppl-vae`` command: argparse to configs to library calls, nothing more.

Every failure the library foresees is a :class:`~ppl_vae.errors.PplVaeError`;
the command prints its one-line message and exits with status 2. So do
misspelt or out-of-range options, all checked before any work starts, and
failed writes (a full disk, a read-only folder, a folder or a file in the way).
A training run stopped by SIGINT or SIGTERM saves a checkpoint, says how to
resume and exits with 128 + the signal's number (130, 143); any other command
stopped by a signal prints one line and exits the same way. Warnings are one
line each.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any


def _import_matplotlib_with_agg() -> str | None:
    """Import matplotlib drawing with Agg whatever ``MPLBACKEND`` says; return a value it would refuse.

    matplotlib validates ``MPLBACKEND`` when it is imported and raises on an
    unknown name, which would stop every command, also those that draw nothing.
    The command line only writes figures to files, so it never needs that backend.
    """
    requested = os.environ.pop("MPLBACKEND", None)
    try:
        import matplotlib
    finally:
        if requested is not None:
            os.environ["MPLBACKEND"] = requested
    matplotlib.use("Agg")
    try:
        matplotlib.rcsetup.validate_backend(requested or "agg")
    except ValueError:
        return requested
    return None


#: An ``MPLBACKEND`` matplotlib does not know (commands that draw say they use Agg instead).
_REFUSED_BACKEND = _import_matplotlib_with_agg()

import numpy as np  # noqa: E402  (the modules below import matplotlib)
import pyro
import torch

from ppl_vae.checkpoint import CHECKPOINT_NAME, load_checkpoint
from ppl_vae.data import (
    BINARIZE_MODES,
    KNOWN_DATASETS,
    Dataset,
    evaluation_data,
    load_dataset,
)
from ppl_vae.devices import resolve_device
from ppl_vae.errors import ConfigError, DataError, PplVaeError, TrainingInterrupted
from ppl_vae.evaluation.compare import METHODS, CompareConfig, compare_posteriors
from ppl_vae.evaluation.diagnostics import plot_pair, plot_trace
from ppl_vae.evaluation.log_px import ais_lines, ais_report, bdmc_report, iwae_advice
from ppl_vae.evaluation.plots import plot_posterior_comparison, save_image_grid
from ppl_vae.explorer import (
    DEFAULT_MAX_POINTS,
    POSTERIOR_DRAWS_NAME,
    load_compare_results,
    save_posterior_draws,
    write_explorer,
)
from ppl_vae.inference.ais import AISConfig
from ppl_vae.inference.compiled import compile_program
from ppl_vae.inference.importance import Estimate, elbo, iwae
from ppl_vae.inference.mcmc import SCHEMES, NUTSConfig
from ppl_vae.inference.objectives import ELBO_ESTIMATORS, ENGINES, OBJECTIVES
from ppl_vae.inference.psis import pareto_k_threshold
from ppl_vae.models import (
    LIKELIHOODS,
    VAE,
    build_model,
    import_model_class,
    model_class_name,
)
from ppl_vae.models.base import check_positive_int
from ppl_vae.storage import atomic_write, atomic_write_text, hold, json_safe
from ppl_vae.training import METRICS_NAME, SVIConfig, train
from ppl_vae.training.distributed import (
    World,
    current_world,
    gather_objects,
    init_distributed,
    launched_by_torchrun,
    shutdown,
)
from ppl_vae.training.run_folder import LEGACY_TRAIN_FILES

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
#: Seeds go to numpy and torch generators, which take 32-bit unsigned integers.
SEED_MAX = 2**32 - 1
#: Split R-hat cuts every chain in two halves, and the variance within a half needs 2 draws.
MIN_NUTS_DRAWS = 4
# Options checked before any work, by their argparse names (the flag is --name-with-dashes).
_POSITIVE_INTS = ("latent_dim", "hidden_dims", "epochs", "batch_size", "num_particles",
                  "checkpoint_every", "num_samples", "elbo_samples", "iwae_samples", "num_points",
                  "warmup_steps", "num_chains", "fit_max_steps", "ais_temperatures", "ais_chains")
_NON_NEGATIVE_INTS = ("kl_warmup_epochs", "bdmc")
_POSITIVE_FLOATS = ("observation_scale", "learning_rate", "clip_norm")
_NON_NEGATIVE_FLOATS = ("beta",)
_TRAIN_OUTPUTS = (CHECKPOINT_NAME, METRICS_NAME, "summary.json", "samples.png")
_COMPARE_OUTPUTS = ("comparison.json", "comparison.txt", "posteriors.png", "trace.png", "pair.png",
                    POSTERIOR_DRAWS_NAME)


class _UsageError(Exception):
    """A command line argparse cannot parse."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (naming the fix) instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{message}; see `{self.prog} --help`")


def _add_model(parser: argparse.ArgumentParser, training: bool = False) -> None:
    what = ("train this model class instead of ppl_vae's VAE: TwoLayerVAE (two stochastic "
            "layers, the better log p(x)), or PACKAGE.MODULE:CLASS, a subclass of VAE (or of another "
            "ppl_vae model) that takes the VAE's arguments, e.g. one with another prior()"
            if training else "the model class a checkpoint was trained with, when it is defined "
            "outside ppl_vae (ppl_vae imports code only when you name it)")
    parser.add_argument("--model", default=None, metavar="CLASS", help=what)


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when available), cpu, cuda or cuda:N")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ppl-vae",
        description="Latent variable models as Pyro programs: train a VAE, sample from it, "
                    "evaluate its log-likelihood.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (_add_train, _add_sample, _add_evaluate, _add_compare, _add_explore):
        add_command(commands)
    return parser


def _add_train(commands: argparse._SubParsersAction) -> None:
    """The ``train`` command and its options."""
    fit = commands.add_parser(
        "train", help="train a VAE by SVI",
        description="Train a VAE by stochastic variational inference. Writes OUT/checkpoint.pt, "
                    "OUT/metrics.jsonl (one line per epoch), OUT/samples.png (100 generated "
                    "images) and OUT/summary.json. One run at a time holds OUT (a second one "
                    "is refused with the first one's PID), and files that ppl_vae did not "
                    "write are never replaced or deleted (OUT/.ppl_vae_manifest.json lists "
                    "those it wrote).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    fit.add_argument("--data", default="mnist5k",
                     help=f"data set: {', '.join(KNOWN_DATASETS)}")
    fit.add_argument("--data-root", default=None,
                     help="folder with the IDX files for mnist / fashion-mnist")
    fit.add_argument("--latent-dim", type=int, default=20, help="latent dimensions")
    fit.add_argument("--hidden-dims", type=int, nargs="+", default=[400],
                     help="hidden layer widths of the encoder (the decoder mirrors them)")
    fit.add_argument("--likelihood", choices=LIKELIHOODS, default="bernoulli",
                     help="observation model p(x|z)")
    fit.add_argument("--observation-scale", type=float, default=0.1,
                     help="standard deviation of the Gaussian likelihood")
    fit.add_argument("--learn-observation-scale", action="store_true",
                     help="learn the Gaussian likelihood's standard deviation")
    fit.add_argument("--binarize", choices=BINARIZE_MODES, default=None,
                     help="binarize pixels for a Bernoulli likelihood; default: dynamic for "
                          "bernoulli, none for gaussian")
    fit.add_argument("--epochs", type=int, default=200)
    fit.add_argument("--batch-size", type=int, default=128)
    fit.add_argument("--learning-rate", type=float, default=1e-3)
    fit.add_argument("--elbo", choices=tuple(ELBO_ESTIMATORS), default="meanfield",
                     help="meanfield: closed-form KL (TraceMeanField_ELBO); trace: Monte Carlo "
                          "KL (Trace_ELBO)")
    fit.add_argument("--engine", choices=ENGINES, default="auto",
                     help="how the ELBO is computed: direct (the transcription of the Pyro "
                          "programs, same value and gradient, faster), pyro (Pyro's "
                          "differentiable_loss), auto (direct where the model allows)")
    fit.add_argument("--num-particles", type=int, default=1, help="samples of z per ELBO estimate")
    fit.add_argument("--beta", type=float, default=1.0, help="weight of the KL term")
    fit.add_argument("--kl-warmup-epochs", type=int, default=0,
                     help="epochs over which the KL weight rises from 0 to beta")
    fit.add_argument("--clip-norm", type=float, default=None, help="clip the gradient norm")
    fit.add_argument("--checkpoint-every", type=int, default=10, help="epochs between checkpoints")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--out", required=True, help="output folder")
    fit.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    fit.add_argument("--overwrite", action="store_true",
                     help="replace the run already in --out (only files ppl_vae wrote; they are "
                          "removed when the new run starts)")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.add_argument("--fixed-threads", action="store_true",
                     help="keep torch's CPU thread count even while other processes take cores "
                          "(bit-identical to an idle run, but slower while others take cores)")
    fit.add_argument("--no-cuda-graph", action="store_true",
                     help="on a GPU, launch every kernel of every step from Python instead of "
                          "replaying the step recorded once as a CUDA graph (same numbers; slower)")
    fit.add_argument("--objective", choices=OBJECTIVES, default="elbo",
                     help="elbo, or iwae: the importance-weighted bound with K = --num-particles "
                          "samples per point (Burda et al., 2016)")
    _add_model(fit, training=True)
    _add_device(fit)


def _add_sample(commands: argparse._SubParsersAction) -> None:
    """The ``sample`` command and its options."""
    draw = commands.add_parser(
        "sample", help="generate data from a trained model",
        description="Draw z from the prior N(0, I) and decode it (the mean of p(x|z)). "
                    "Writes a PNG grid, or a .npy array of shape (num_samples, data_dim).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    draw.add_argument("--checkpoint", required=True, help="training output folder or checkpoint.pt")
    draw.add_argument("--num-samples", type=int, default=100)
    draw.add_argument("--out", required=True, help="output file, .png or .npy")
    draw.add_argument("--seed", type=int, default=0)
    _add_model(draw)
    _add_device(draw)


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    """The ``evaluate`` command and its options."""
    score = commands.add_parser(
        "evaluate", help="test ELBO and IWAE log-likelihood per data point",
        description="Estimate the test-set ELBO and the importance-weighted bound on log p(x) "
                    "(IWAE, K samples), in nats per data point, with Monte Carlo standard errors.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    score.add_argument("--checkpoint", required=True, help="training output folder or checkpoint.pt")
    score.add_argument("--elbo-samples", type=int, default=100, help="samples per point for the ELBO")
    score.add_argument("--iwae-samples", type=int, default=1000,
                       help="importance samples K per point for the IWAE bound")
    score.add_argument("--split", choices=("test", "train"), default="test")
    score.add_argument("--ais", action="store_true",
                       help="also estimate log p(x) by annealed importance sampling (HMC transitions "
                            "from q(z|x) to p(x, z)): an error bar where IWAE's weights give none")
    score.add_argument("--ais-temperatures", type=int, default=AISConfig.num_temperatures,
                       help="AIS temperatures (more: a tighter bound, proportionally slower)")
    score.add_argument("--ais-chains", type=int, default=AISConfig.num_chains,
                       help="AIS chains per point")
    score.add_argument("--bdmc", type=int, default=0, metavar="N",
                       help="bidirectional Monte Carlo on N points simulated from the model: a "
                            "sandwich whose gap bounds the AIS error with this schedule (0: none)")
    score.add_argument("--seed", type=int, default=0)
    score.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_model(score)
    _add_device(score)


def _add_compare(commands: argparse._SubParsersAction) -> None:
    """The ``compare`` command and its options."""
    versus = commands.add_parser(
        "compare", help="variational posteriors against NUTS on the same points",
        description="For the first N test points: the encoder's q(z|x), a per-point Gaussian q* "
                    "and a flow posterior, each against NUTS draws of p(z|x). Writes "
                    "OUT/comparison.json, OUT/posterior_draws.npz (thinned NUTS draws and q* per "
                    "point, for `ppl-vae explore --compare`), OUT/comparison.txt, OUT/posteriors.png, "
                    "OUT/trace.png and OUT/pair.png, and prints the table with the approximation and "
                    "amortization gaps.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    versus.add_argument("--checkpoint", required=True, help="training output folder or checkpoint.pt")
    versus.add_argument("--num-points", type=int, default=100, help="test points to compare")
    versus.add_argument("--out", required=True, help="output folder")
    versus.add_argument("--num-samples", type=int, default=2000,
                        help="NUTS draws per chain (2000: enough for bulk ESS >= 400 on the hardest "
                             "of the first 100 test digits of a latent-2 model)")
    versus.add_argument("--warmup-steps", type=int, default=500, help="NUTS warm-up steps per chain")
    versus.add_argument("--num-chains", type=int, default=4)
    versus.add_argument("--scheme", choices=SCHEMES, default="batched",
                        help="independent chains in lock step (default), one Pyro NUTS run over all "
                             "points, or one Pyro NUTS run per point")
    versus.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    versus.add_argument("--elbo-samples", type=int, default=1000)
    versus.add_argument("--iwae-samples", type=int, default=5000)
    versus.add_argument("--fit-max-steps", type=int, default=5000,
                        help="step budget of the per-point fits")
    versus.add_argument("--ais", action="store_true",
                        help="add annealed importance sampling: a row, and a candidate for each "
                             "point's log p(x) that needs no proposal")
    versus.add_argument("--seed", type=int, default=0)
    _add_model(versus)
    _add_device(versus)


def _add_explore(commands: argparse._SubParsersAction) -> None:
    """The ``explore`` command and its options."""
    look = commands.add_parser(
        "explore", help="an interactive latent-space explorer as one HTML file",
        description="Write ONE self-contained HTML page (no server, no network) for a trained VAE: "
                    "the test digits' encodings on the latent plane, the decoder evaluated live "
                    "in the page, q(z|x) ellipses, interpolation and samples. With --compare, the "
                    "NUTS draws, q* and the gaps that `ppl-vae compare` wrote.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    look.add_argument("--checkpoint", required=True, help="training output folder or checkpoint.pt")
    look.add_argument("--out", required=True, help="the .html file to write")
    look.add_argument("--compare", default=None, help="an output folder of `ppl-vae compare`")
    look.add_argument("--num-points", type=int, default=DEFAULT_MAX_POINTS,
                      help="test digits shown on the plane")
    look.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    _add_model(look)

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_options(args: argparse.Namespace) -> None:
    """Check every option's range before any work, naming the flag as typed.

    Raises
    ------
    ConfigError
        For the first option out of range.
    """
    options = vars(args)
    for name in _POSITIVE_INTS + _NON_NEGATIVE_INTS:
        values = options.get(name)
        least = 1 if name in _POSITIVE_INTS else 0
        for value in values if isinstance(values, list) else [values]:
            if value is not None and value < least:
                kind = "a positive integer" if least else "an integer >= 0"
                raise ConfigError(f"{_flag(name)} must be {kind}; got {value}")
    for name in _POSITIVE_FLOATS + _NON_NEGATIVE_FLOATS:
        value = options.get(name)
        if value is None:
            continue
        positive = name in _POSITIVE_FLOATS
        if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
            kind = "a positive" if positive else "a non-negative"
            raise ConfigError(f"{_flag(name)} must be {kind} finite number; got {value:g}")
    seed = options.get("seed")
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"--seed must lie between 0 and {SEED_MAX} (2**32 - 1); got {seed}")
    if args.command == "compare" and args.num_samples < MIN_NUTS_DRAWS:
        raise ConfigError(
            f"--num-samples must be at least {MIN_NUTS_DRAWS}: split R-hat halves every chain and "
            f"needs 2 draws per half; got {args.num_samples}")
    if args.command == "train" and args.resume and args.overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it; "
                          "pass one of them")
    if args.command == "sample":
        _check_sample_out(Path(args.out))


def _check_sample_out(out: Path) -> None:
    if out.suffix.lower() not in (".png", ".npy"):
        raise ConfigError(f"--out must end in .png or .npy; got {out.name}")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name ending in {out.suffix}")
    if not out.parent.is_dir():
        problem = "is a file, not a folder" if out.parent.exists() else "does not exist"
        raise ConfigError(f"the folder {out.parent} {problem}; create it first")


def _write_failure(error: OSError) -> str:
    if isinstance(error, IsADirectoryError):
        return "a folder stands where the file should go"
    if isinstance(error, (NotADirectoryError, FileExistsError)):
        return "a file stands where a folder should be"
    return error.strerror or str(error)


@contextlib.contextmanager
def _writing(path: Path, then: str) -> Any:
    """Turn a failed write of ``path`` into one line: what failed, why, and ``then`` (the way on)."""
    try:
        yield
    except OSError as error:
        culprit = Path(error.filename) if isinstance(error.filename, str) else path
        # Neither the file, one inside the folder, nor a temporary beside the file: e.g. a cache
        # that ArviZ creates under a read-only HOME.
        if path not in (culprit, *culprit.parents) and culprit.parent != path.parent:
            raise PplVaeError(
                f"could not write {culprit} ({_write_failure(error)}), outside {path}; make it "
                "writable, or point HOME (or XDG_CACHE_HOME) at a writable folder") from None
        raise PplVaeError(f"could not write {path} ({_write_failure(error)}); {then}") from None


def _load_data(name: str, root: str | None, seed: int, device: torch.device) -> Dataset:
    """``load_dataset`` and the move to ``device``, with running out of memory named as such."""
    try:
        return load_dataset(name, root=root, seed=seed).to(device)
    except (MemoryError, RuntimeError) as error:
        if not _is_out_of_memory(error):
            raise
        raise DataError(
            f"ran out of memory while loading the data set {name} onto {device}; free memory, "
            "use a smaller data set, or a device with more memory") from None


def _load_model(path: str, device: torch.device, model_path: str | None = None
                ) -> tuple[Any, dict[str, Any]]:
    model_type = import_model_class(model_path) if model_path else None
    checkpoint = load_checkpoint(path, map_location=device)
    if model_type is not None:
        check_model_class(checkpoint, model_type, path)
    model = build_model(checkpoint["model_class"], checkpoint["model_config"], model_type)
    try:
        model.load_state_dict(checkpoint["model_state"])
    except RuntimeError:
        raise PplVaeError(
            f"the checkpoint's weights do not fit a {checkpoint['model_class']} with "
            f"{checkpoint['model_config']}; the file is damaged or was edited"
        ) from None
    return model.to(device).eval(), checkpoint


def check_model_class(checkpoint: dict[str, Any], model_type: type, path: str | Path) -> None:
    """Refuse, in one line, to use a checkpoint of one model class as another.

    Raises
    ------
    ConfigError
        If the checkpoint's ``model_class`` is not ``model_type``'s name.
    """
    saved, named = checkpoint["model_class"], model_class_name(model_type)
    if saved != named:
        raise ConfigError(f"{path} holds a model of class {saved}, not {named}; pass --model {saved}")


def _save_samples(model: Any, count: int, image_shape: Sequence[int] | None, path: Path,
                  title: str) -> None:
    images = model.sample(count).cpu()
    if path.suffix.lower() == ".npy":
        atomic_write(path, lambda handle: np.save(handle, images.numpy()))
    elif image_shape is None:
        raise ConfigError("this model's data are not images; write samples to a .npy file")
    else:
        save_image_grid(images, tuple(image_shape), path, title=title)


def _in_world(run: Any, args: argparse.Namespace) -> int:
    """``run(args, device, world)`` in the process group ``torchrun`` set up, or alone."""
    device = resolve_device(args.device)
    if launched_by_torchrun():
        device = init_distributed(device)
    try:
        return run(args, device, current_world())
    finally:
        shutdown()


def run_train(args: argparse.Namespace) -> int:
    return _in_world(_train, args)


def _build(model_type: type, settings: dict[str, Any]) -> Any:
    """A model of ``model_type`` from the command line's settings (those its constructor takes)."""
    accepted = inspect.signature(model_type).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    try:
        return model_type(**{k: v for k, v in settings.items() if takes_all or k in accepted})
    except TypeError as error:
        raise ConfigError(f"cannot build {model_type.__name__} from the command line's settings: "
                          f"{error}; give it the VAE's arguments (data_dim, latent_dim, ...)") from None


def _train(args: argparse.Namespace, device: torch.device, world: World) -> int:
    binarize = args.binarize or LIKELIHOODS[args.likelihood].default_binarize
    config = SVIConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        elbo=args.elbo, num_particles=args.num_particles, beta=args.beta,
        kl_warmup_epochs=args.kl_warmup_epochs, clip_norm=args.clip_norm, binarize=binarize,
        seed=args.seed, checkpoint_every=args.checkpoint_every, engine=args.engine,
        objective=args.objective)
    model_type = import_model_class(args.model) if args.model else VAE
    if args.resume and (Path(args.out) / CHECKPOINT_NAME).is_file():
        check_model_class(load_checkpoint(args.out), model_type, Path(args.out) / CHECKPOINT_NAME)
    pyro.set_rng_seed(args.seed)
    data = _load_data(args.data, args.data_root, args.seed, device)
    model = _build(model_type, dict(
        data_dim=data.data_dim, latent_dim=args.latent_dim, hidden_dims=args.hidden_dims,
        likelihood=args.likelihood, observation_scale=args.observation_scale,
        learn_observation_scale=args.learn_observation_scale)).to(device)
    metadata = {"data": args.data, "data_root": args.data_root, "data_seed": args.seed,
                "image_shape": list(data.image_shape) if data.image_shape else None}
    out = Path(args.out)
    quiet = args.quiet or not world.is_main
    outputs = [name for name in _TRAIN_OUTPUTS if name != "samples.png" or data.image_shape]
    folder = (hold(out, "train", outputs, resume=args.resume, overwrite=args.overwrite,
                   adopt=LEGACY_TRAIN_FILES) if world.is_main else contextlib.nullcontext())
    with folder:
        if not quiet:
            print(f"training a {model_type.__name__} (latent_dim {args.latent_dim}, hidden {args.hidden_dims}, "
                  f"{args.likelihood}, binarize {binarize}) on {args.data}: "
                  f"{len(data.train_x)} train / {len(data.test_x)} test points, device {device}"
                  + (f", {world.size} processes" if world.size > 1 else ""))
        result = train(model, data.train_x, config, test_x=data.test_x, out_dir=out,
                       resume=args.resume, overwrite=args.overwrite,
                       progress=None if not quiet else False, metadata=metadata,
                       cuda_graph=not args.no_cuda_graph, adapt_threads=not args.fixed_threads)
        if not world.is_main:
            return 0
        _write_final_files(args, model, data, result, binarize, device, out)
    if not quiet:
        last = result.history[-1]
        print(f"epoch {last.get('epoch')}: train ELBO {last.get('train_elbo', math.nan):.2f}, "
              f"test ELBO {last.get('test_elbo', math.nan):.2f} nats per data point, "
              f"{last.get('wall_time', math.nan):.1f} s")
        print(f"wrote {', '.join(str(out / name) for name in outputs)}")
    return 0


def _write_final_files(args: argparse.Namespace, model: Any, data: Dataset, result: Any,
                       binarize: str, device: torch.device, out: Path) -> None:
    """samples.png and summary.json; a failure or a signal says what is missing and how to get it."""
    summary = {**result.history[-1], "device": str(device),
               "settings": vars(args) | {"binarize": binarize}}
    title = f"100 samples, {Path(args.data).name}, latent_dim {args.latent_dim}"
    writes = [("summary.json", lambda: atomic_write_text(
        out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n"))]
    if data.image_shape is not None:
        writes.insert(0, ("samples.png", lambda: _save_samples(
            model, 100, data.image_shape, out / "samples.png", title)))
    done: list[str] = []
    kept = f"the checkpoint of epoch {result.checkpoint_epoch} is complete"
    again = ("run the same command with --resume" + (" instead of --overwrite" if args.overwrite
                                                     else "") + " to write them")

    def missing() -> str:
        names = [n for n, _ in writes if n not in done]
        return f"{names[0]} is missing" if len(names) == 1 else f"{' and '.join(names)} are missing"

    try:
        for name, write in writes:
            with _writing(out / name, f"{kept} but {missing()}: free space or fix the folder, "
                          f"then {again}"):
                write()
            done.append(name)
    except KeyboardInterrupt as interruption:
        number = getattr(interruption, "signal_number", signal.SIGINT)
        raise TrainingInterrupted(
            f"stopped by {signal.Signals(number).name} while writing the last files: {kept}, "
            f"{missing()}; {again}", number) from None


def run_sample(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, checkpoint = _load_model(args.checkpoint, device, args.model)
    out = Path(args.out)
    pyro.set_rng_seed(args.seed)
    with _writing(out, "free space or choose another --out"):
        _save_samples(model, args.num_samples, checkpoint.get("metadata", {}).get("image_shape"),
                      out, f"{args.num_samples} samples from p(x)")
    print(f"wrote {out}")
    return 0


def _evaluation_points(checkpoint: dict[str, Any], split: str,
                       device: torch.device) -> torch.Tensor:
    """The data a checkpoint was trained on, as the training loop evaluated them."""
    meta = checkpoint.get("metadata", {})
    if "data" not in meta or "svi_config" not in checkpoint:
        raise PplVaeError("the checkpoint does not say which data it was trained on (it holds "
                          "only a model's weights); evaluate it from Python with the "
                          "ppl_vae.inference functions")
    data = _load_data(meta["data"], meta.get("data_root"), meta.get("data_seed", 0), device)
    x = data.test_x if split == "test" else data.train_x
    return evaluation_data(x, checkpoint["svi_config"].get("binarize", "none"),
                           meta.get("data_seed", 0))


def run_evaluate(args: argparse.Namespace) -> int:
    return _in_world(_evaluate, args)


def _evaluate(args: argparse.Namespace, device: torch.device, world: World) -> int:
    """ELBO and IWAE on rank 0; AIS's chunks of points shared out over every process."""
    model, checkpoint = _load_model(args.checkpoint, device, args.model)
    x = _evaluation_points(checkpoint, args.split, device)
    program = compile_program(model, x)  # read once, for every estimate below
    report: dict[str, Any] = {"split": args.split, "num_points": x.shape[0],
                              "epoch": checkpoint.get("epoch")}
    if world.is_main:
        pyro.set_rng_seed(args.seed)
        elbo_estimate = elbo(program, x, args.elbo_samples)
        iwae_estimate = iwae(program, x, args.iwae_samples)
        report |= {
            "elbo": elbo_estimate.mean,
            "elbo_stderr": elbo_estimate.mean_stderr,
            "elbo_samples": args.elbo_samples,
            "iwae": iwae_estimate.mean,
            "iwae_stderr": iwae_estimate.mean_stderr,
            "iwae_samples": args.iwae_samples,
            "processes": world.size,
        } | _importance_report(iwae_estimate)
    if args.ais or args.bdmc:
        config = AISConfig(num_temperatures=args.ais_temperatures, num_chains=args.ais_chains,
                           seed=args.seed)
        report["ais"] = (ais_report(program, x, config, world.rank, world.size,
                                    partial(gather_objects, world=world)) if args.ais else None)
        report["bdmc"] = (bdmc_report(program, x, args.bdmc, config)
                          if args.bdmc and world.is_main else None)
    if not world.is_main:
        return 0
    if args.json:
        print(json.dumps(json_safe(report), allow_nan=False))
        return 0
    print(f"{args.split} set, {report['num_points']} points, epoch {report['epoch']} "
          "(nats per data point, Monte Carlo standard error)")
    print(f"  ELBO                {report['elbo']:10.3f} ± {_plain(report['elbo_stderr'])}"
          f"   (K={args.elbo_samples})")
    flagged = report["num_flagged"]
    print(f"  IWAE log p(x) bound {report['iwae']:10.3f} ± {_plain(report['iwae_delta_stderr'])}"
          f"{'*' if flagged else ''}   (K={args.iwae_samples})")
    k, ess = report["pareto_k"], report["ess"]
    print(f"  importance weights: Pareto k̂ median {_plain(k['median'], 2)}, max {_plain(k['max'], 2)}; "
          f"ESS median {_plain(ess['median'], 0)} of {args.iwae_samples}")
    if flagged and report["pareto_k_threshold"] == 0:  # k̂ cannot be estimated from K <= 10
        print(f"  * k̂ needs more than 10 samples per point (K={args.iwae_samples}), so no IWAE "
              "error bar can be trusted; raise --iwae-samples above 10")
    elif flagged:
        shown = report["flagged_points"][:FLAGGED_SHOWN]
        print(f"  * k̂ > {report['pareto_k_threshold']:.2f} on {flagged} of {report['num_points']} "
              f"points ({100 * report['flagged_share']:.1f}%): their IWAE error bars cannot be "
              f"trusted, and the ± above does not cover them; {iwae_advice(iwae_estimate)}")
        print(f"    flagged points: {', '.join(map(str, shown))}"
              + (f" and {flagged - len(shown)} more (all in --json)" if flagged > len(shown) else ""))
    else:
        print(f"  k̂ <= {report['pareto_k_threshold']:.2f} on every point: the error bars hold")
    if report.get("ais") is not None or report.get("bdmc") is not None:
        for line in ais_lines(report.get("ais"), report.get("bdmc")):
            print(line)
    return 0


#: Flagged points listed by ``ppl-vae evaluate`` (``--json`` lists them all).
FLAGGED_SHOWN = 20


def _plain(value: float | None, digits: int = 3) -> str:
    """A number for the table, or "—" when there is none (NaN: one sample; inf: untrustworthy)."""
    return f"{value:.{digits}f}" if value is not None and np.isfinite(value) else "—"


def _importance_report(estimate: Estimate) -> dict[str, Any]:
    """k̂ and ESS of an importance-sampling estimate: summaries, flagged points, per-point values."""
    k, ess, flagged = estimate.pareto_k, estimate.ess, estimate.flagged
    return {
        "iwae_delta_stderr": float(estimate.delta_stderr.pow(2).sum().sqrt() / len(k)),
        "pareto_k_threshold": pareto_k_threshold(estimate.num_samples),
        "pareto_k": {"median": float(k.median()), "max": float(k.max())},
        "ess": {"min": float(ess.min()), "median": float(ess.median())},
        "num_flagged": int(flagged.sum()),
        "flagged_share": estimate.flagged_share,
        "flagged_points": torch.nonzero(flagged).flatten().tolist(),
        "per_point": {"iwae": estimate.per_point.tolist(), "iwae_stderr": estimate.stderr.tolist(),
                      "pareto_k": k.tolist(), "ess": ess.tolist()},
    }


def run_compare(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    nuts = NUTSConfig(num_samples=args.num_samples, warmup_steps=args.warmup_steps,
                      num_chains=args.num_chains, scheme=args.scheme, seed=args.seed)
    config = CompareConfig(elbo_samples=args.elbo_samples, iwae_samples=args.iwae_samples,
                           nuts=nuts, methods=tuple(args.methods),
                           fit_max_steps=args.fit_max_steps,
                           ais=AISConfig(seed=args.seed) if args.ais else None, seed=args.seed)
    model, checkpoint = _load_model(args.checkpoint, device, args.model)
    test_x = _evaluation_points(checkpoint, "test", device)
    if args.num_points > len(test_x):
        print(f"ppl-vae compare: note: --num-points {args.num_points} exceeds the "
              f"{len(test_x)} test points; comparing all {len(test_x)}", file=sys.stderr)
    x = test_x[:args.num_points]
    out = Path(args.out)
    names = [name for name in _COMPARE_OUTPUTS if name != "pair.png" or model.latent_dim >= 2]
    then = "free space or choose another --out folder, and run the comparison again"
    # Each comparison replaces the files of the previous one in the folder (and only those).
    with hold(out, "compare", names, overwrite=True), _writing(out, then):
        comparison = compare_posteriors(model, x, config)
        table = comparison.table()
        atomic_write_text(out / "comparison.json", comparison.to_json() + "\n")
        save_posterior_draws(comparison, out / POSTERIOR_DRAWS_NAME)  # explore needs both files
        atomic_write_text(out / "comparison.txt", table + "\n")
        image_shape = checkpoint.get("metadata", {}).get("image_shape")
        plot_posterior_comparison(comparison, model, x,
                                  tuple(image_shape) if image_shape else None,
                                  out / "posteriors.png")
        idata = comparison.nuts.to_inference_data()
        plot_trace(idata, out / "trace.png")
        if model.latent_dim >= 2:
            plot_pair(idata, out / "pair.png", point=comparison.point_index[0])
    print(table)
    print(f"wrote {', '.join(str(out / name) for name in names)}")
    if not comparison.converged:
        print("ppl-vae compare: WARNING: NUTS did not converge; see the table's reasons and "
              "raise --warmup-steps / --num-samples", file=sys.stderr)
    return 0


def run_explore(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() != ".html":
        raise ConfigError(f"--out must end in .html; got {out.name}")
    if not out.parent.is_dir():
        raise ConfigError(f"the folder {out.parent} does not exist; create it first")
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it, or choose another --out")
    check_positive_int(args.num_points, "--num-points")
    compare = load_compare_results(args.compare) if args.compare else None
    device = torch.device("cpu")  # the page evaluates the decoder; torch only encodes the points
    model, checkpoint = _load_model(args.checkpoint, device, args.model)
    x = _evaluation_points(checkpoint, "test", device)
    meta = checkpoint["metadata"]
    labels = load_dataset(meta["data"], root=meta.get("data_root"),
                          seed=meta.get("data_seed", 0)).test_y
    image_shape = meta.get("image_shape")
    if image_shape is None:
        raise ConfigError("the explorer shows images; this checkpoint's data are not images")
    size = write_explorer(model, x, out, labels=labels, image_shape=tuple(image_shape),
                          compare=compare, max_points=args.num_points,
                          title=f"{meta['data']}, latent_dim {model.latent_dim}")
    print(f"wrote {out} ({size / 1e6:.1f} MB; open it in a browser, no server needed)")
    return 0


#: What to make smaller when a command runs out of memory.
MEMORY_ADVICE = {
    "train": "a smaller --num-particles or --batch-size",
    "sample": "a smaller --num-samples",
    "evaluate": "smaller --elbo-samples and --iwae-samples",
    "compare": "a smaller --num-points, --num-chains or --num-samples",
    "explore": "a smaller --num-points",
}
#: Set to 1 to get the traceback of an error in the code of a --model class.
DEBUG_VARIABLE = "PPL_VAE_DEBUG"
#: Commands that write figures (with matplotlib's Agg backend).
DRAWING_COMMANDS = ("train", "sample", "compare")

COMMANDS = {"train": run_train, "sample": run_sample, "evaluate": run_evaluate,
            "compare": run_compare, "explore": run_explore}


def _is_out_of_memory(error: BaseException) -> bool:
    """CPU and CUDA allocation failures (torch raises them as RuntimeError subclasses)."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error)
    return any(words in text for words in ("can't allocate memory", "out of memory",
                                            "Storage size calculation overflowed"))


def _one_line_warnings(command: str) -> Any:
    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        text = " ".join(str(message).split())
        print(f"ppl-vae {command}: warning: {text}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ppl-vae``; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as error:
        print(f"ppl-vae: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    with warnings.catch_warnings():
        # A title holding a path in a script the font lacks would print one warning per glyph.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
        warnings.showwarning = _one_line_warnings(args.command)
        if _REFUSED_BACKEND is not None and args.command in DRAWING_COMMANDS:
            warnings.warn(f"MPLBACKEND={_REFUSED_BACKEND!r} is not a backend matplotlib knows; "
                          "figures are drawn with Agg (the command line only writes files)",
                          RuntimeWarning, stacklevel=1)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        check_options(args)
        return COMMANDS[args.command](args)
    except PplVaeError as error:
        print(f"ppl-vae {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except (MemoryError, RuntimeError) as error:
        if not _is_out_of_memory(error):
            raise
        print(f"ppl-vae {args.command}: error: ran out of memory while allocating a tensor; use "
              f"{MEMORY_ADVICE[args.command]}, or a device with more memory", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:  # a read or write no narrower handler foresaw
        where = f" {error.filename}" if error.filename else ""
        print(f"ppl-vae {args.command}: error: could not access{where} "
              f"({_write_failure(error)}); check the path and free space", file=sys.stderr)
        return EXIT_ERROR
    except TrainingInterrupted as interruption:
        print(f"ppl-vae {args.command}: {interruption}", file=sys.stderr)
        return 128 + interruption.signal_number
    except KeyboardInterrupt as interruption:
        number = getattr(interruption, "signal_number", signal.SIGINT)
        print(f"ppl-vae {args.command}: interrupted by {signal.Signals(number).name}",
              file=sys.stderr)
        return 128 + number
    except Exception as error:
        where = _user_code_location(getattr(args, "model", None), error)
        if where is None or os.environ.get(DEBUG_VARIABLE):
            raise
        text = error.msg if isinstance(error, SyntaxError) else str(error)
        reason = (text.strip().splitlines() or [""])[0][:200]  # Pyro appends its trace below
        print(f"ppl-vae {args.command}: error: {args.model} raised {type(error).__name__}"
              f"{': ' + reason if reason else ''} ({where}); fix the class, or run again with "
              f"{DEBUG_VARIABLE}=1 to see the traceback", file=sys.stderr)
        return EXIT_ERROR


def _user_code_location(model: str | None, error: BaseException) -> str | None:
    """Where in the code of ``--model PACKAGE.MODULE:CLASS`` ``error`` arose, or None if not there.

    The last frame of the traceback that runs in the user's package, or for a
    syntax error the file it names.
    """
    if not model or ":" not in model or model.startswith("ppl_vae."):
        return None
    package = model.partition(":")[0].split(".")[0]
    if isinstance(error, SyntaxError) and error.filename:
        if package in Path(error.filename).with_suffix("").parts:
            return f"syntax error at {Path(error.filename).name}:{error.lineno}"
    frames = [(frame, line) for frame, line in traceback.walk_tb(error.__traceback__)
              if frame.f_globals.get("__name__", "").split(".")[0] == package]
    if not frames:
        return None
    frame, line = frames[-1]
    return f"in {frame.f_code.co_name}() at {Path(frame.f_code.co_filename).name}:{line}"


if __name__ == "__main__":  # through the console entry, which also turns SIGTERM into one line
    import ppl_vae_console

    sys.exit(ppl_vae_console.main())
