"""The ``ppl-vae`` command: argparse to configs to library calls, nothing more.

Every failure the library foresees is a :class:`~ppl_vae.errors.PplVaeError`;
the command prints its one-line message and exits with status 2. A training
run stopped by SIGINT or SIGTERM saves a checkpoint, says how to resume and
exits with 128 + the signal's number (130, 143).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch

from ppl_vae.checkpoint import atomic_write, atomic_write_text, load_checkpoint, remove_stale_temporaries
from ppl_vae.data import BINARIZE_MODES, KNOWN_DATASETS, load_dataset
from ppl_vae.devices import resolve_device
from ppl_vae.errors import ConfigError, PplVaeError, TrainingInterrupted
from ppl_vae.inference.compare import METHODS, CompareConfig, compare_posteriors, json_safe
from ppl_vae.inference.diagnostics import plot_pair, plot_trace
from ppl_vae.inference.distributed import (
    World,
    current_world,
    init_distributed,
    launched_by_torchrun,
    shutdown,
)
from ppl_vae.inference.likelihood import Estimate, elbo, iwae
from ppl_vae.inference.psis import pareto_k_threshold
from ppl_vae.inference.mcmc import SCHEMES, NUTSConfig
from ppl_vae.inference.objectives import ENGINES
from ppl_vae.inference.svi import ELBO_ESTIMATORS, SVIConfig, evaluation_data, train
from ppl_vae.models import LIKELIHOODS, VAE, build_model
from ppl_vae.models.base import check_positive_int
from ppl_vae.plotting import plot_posterior_comparison, save_image_grid

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when available), cpu, cuda or cuda:N (default: auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppl-vae",
        description="Latent variable models as Pyro programs: train a VAE, sample from it, "
                    "evaluate its log-likelihood.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "train", help="train a VAE by SVI",
        description="Train a VAE by stochastic variational inference. Writes OUT/checkpoint.pt, "
                    "OUT/metrics.jsonl (one line per epoch), OUT/samples.png (100 generated "
                    "images) and OUT/summary.json.",
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
                     help="replace a checkpoint already in --out")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device(fit)

    draw = commands.add_parser(
        "sample", help="generate data from a trained model",
        description="Draw z from the prior N(0, I) and decode it (the mean of p(x|z)). "
                    "Writes a PNG grid, or a .npy array of shape (num_samples, data_dim).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    draw.add_argument("--checkpoint", required=True, help="training output folder or checkpoint.pt")
    draw.add_argument("--num-samples", type=int, default=100)
    draw.add_argument("--out", required=True, help="output file, .png or .npy")
    draw.add_argument("--seed", type=int, default=0)
    _add_device(draw)

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
    score.add_argument("--seed", type=int, default=0)
    score.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_device(score)

    versus = commands.add_parser(
        "compare", help="variational posteriors against NUTS on the same points",
        description="For the first N test points: the encoder's q(z|x), a per-point Gaussian q* "
                    "and a flow posterior, each against NUTS draws of p(z|x). Writes "
                    "OUT/comparison.json, OUT/comparison.txt, OUT/posteriors.png, "
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
    versus.add_argument("--seed", type=int, default=0)
    _add_device(versus)
    return parser


def _load_model(path: str, device: torch.device) -> tuple[Any, dict[str, Any]]:
    checkpoint = load_checkpoint(path, map_location=device)
    model = build_model(checkpoint["model_class"], checkpoint["model_config"])
    try:
        model.load_state_dict(checkpoint["model_state"])
    except RuntimeError:
        raise PplVaeError(
            f"the checkpoint's weights do not fit a {checkpoint['model_class']} with "
            f"{checkpoint['model_config']}; the file is damaged or was edited"
        ) from None
    return model.to(device).eval(), checkpoint


def _save_samples(model: Any, count: int, image_shape: Sequence[int] | None, path: Path,
                  title: str) -> None:
    images = model.sample(count).cpu()
    if path.suffix == ".npy":
        atomic_write(path, lambda handle: np.save(handle, images.numpy()))
    elif image_shape is None:
        raise ConfigError("this model's data are not images; write samples to a .npy file")
    else:
        save_image_grid(images, tuple(image_shape), path, title=title)


def run_train(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if launched_by_torchrun():
        device = init_distributed(device)
    try:
        return _train(args, device, current_world())
    finally:
        shutdown()


def _train(args: argparse.Namespace, device: torch.device, world: World) -> int:
    binarize = args.binarize or ("dynamic" if args.likelihood == "bernoulli" else "none")
    config = SVIConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        elbo=args.elbo, num_particles=args.num_particles, beta=args.beta,
        kl_warmup_epochs=args.kl_warmup_epochs, clip_norm=args.clip_norm, binarize=binarize,
        seed=args.seed, checkpoint_every=args.checkpoint_every, engine=args.engine)
    pyro.set_rng_seed(args.seed)
    data = load_dataset(args.data, root=args.data_root, seed=args.seed).to(device)
    model = VAE(data.data_dim, args.latent_dim, hidden_dims=args.hidden_dims,
                likelihood=args.likelihood, observation_scale=args.observation_scale,
                learn_observation_scale=args.learn_observation_scale).to(device)
    metadata = {"data": args.data, "data_root": args.data_root, "data_seed": args.seed,
                "image_shape": list(data.image_shape) if data.image_shape else None}
    out = Path(args.out)
    quiet = args.quiet or not world.is_main
    if not quiet:
        print(f"training a VAE (latent_dim {args.latent_dim}, hidden {args.hidden_dims}, "
              f"{args.likelihood}, binarize {binarize}) on {args.data}: "
              f"{len(data.train_x)} train / {len(data.test_x)} test points, device {device}"
              + (f", {world.size} processes" if world.size > 1 else ""))
    result = train(model, data.train_x, config, test_x=data.test_x, out_dir=out,
                   resume=args.resume, overwrite=args.overwrite,
                   progress=None if not quiet else False, metadata=metadata)
    if not world.is_main:
        return 0
    last = result.history[-1]
    summary = {**last, "device": str(device), "settings": vars(args) | {"binarize": binarize}}
    remove_stale_temporaries(out, ("samples.png", "summary.json"))  # left by a run killed while writing
    if data.image_shape is not None:
        _save_samples(model, 100, data.image_shape, out / "samples.png",
                      f"100 samples, {args.data}, latent_dim {args.latent_dim}")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    if not quiet:
        print(f"epoch {last['epoch']}: train ELBO {last['train_elbo']:.2f}, test ELBO "
              f"{last['test_elbo']:.2f} nats per data point, {last['wall_time']:.1f} s")
        print(f"wrote {out / 'checkpoint.pt'}, {out / 'metrics.jsonl'}, {out / 'summary.json'}"
              + (f", {out / 'samples.png'}" if data.image_shape is not None else ""))
    return 0


def run_sample(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, checkpoint = _load_model(args.checkpoint, device)
    out = Path(args.out)
    if out.suffix not in (".png", ".npy"):
        raise ConfigError(f"--out must end in .png or .npy; got {out.name}")
    if not out.parent.is_dir():
        raise ConfigError(f"the folder {out.parent} does not exist; create it first")
    pyro.set_rng_seed(args.seed)
    _save_samples(model, args.num_samples, checkpoint["metadata"].get("image_shape"), out,
                  f"{args.num_samples} samples from p(x)")
    print(f"wrote {out}")
    return 0


def _evaluation_points(checkpoint: dict[str, Any], split: str,
                       device: torch.device) -> torch.Tensor:
    """The data a checkpoint was trained on, as the training loop evaluated them."""
    meta = checkpoint["metadata"]
    if "data" not in meta:
        raise PplVaeError("the checkpoint does not say which data it was trained on; "
                          "evaluate it from Python with the ppl_vae.inference functions")
    data = load_dataset(meta["data"], root=meta["data_root"], seed=meta["data_seed"]).to(device)
    x = data.test_x if split == "test" else data.train_x
    return evaluation_data(x, checkpoint["svi_config"]["binarize"], meta["data_seed"])


def run_evaluate(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, checkpoint = _load_model(args.checkpoint, device)
    x = _evaluation_points(checkpoint, args.split, device)
    pyro.set_rng_seed(args.seed)
    elbo_estimate = elbo(model, x, args.elbo_samples)
    iwae_estimate = iwae(model, x, args.iwae_samples)
    report = {
        "split": args.split,
        "num_points": x.shape[0],
        "elbo": elbo_estimate.mean,
        "elbo_stderr": elbo_estimate.mean_stderr,
        "elbo_samples": args.elbo_samples,
        "iwae": iwae_estimate.mean,
        "iwae_stderr": iwae_estimate.mean_stderr,
        "iwae_samples": args.iwae_samples,
        "epoch": checkpoint.get("epoch"),
    } | _importance_report(iwae_estimate)
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
    if flagged:
        shown = report["flagged_points"][:FLAGGED_SHOWN]
        print(f"  * k̂ > {report['pareto_k_threshold']:.2f} on {flagged} of {report['num_points']} "
              f"points ({100 * report['flagged_share']:.1f}%): their IWAE error bars cannot be "
              "trusted, and the ± above does not cover them; raise --iwae-samples")
        print(f"    flagged points: {', '.join(map(str, shown))}"
              + (f" and {flagged - len(shown)} more (all in --json)" if flagged > len(shown) else ""))
    else:
        print(f"  k̂ <= {report['pareto_k_threshold']:.2f} on every point: the error bars hold")
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
    check_positive_int(args.num_points, "--num-points")
    nuts = NUTSConfig(num_samples=args.num_samples, warmup_steps=args.warmup_steps,
                      num_chains=args.num_chains, scheme=args.scheme, seed=args.seed)
    config = CompareConfig(elbo_samples=args.elbo_samples, iwae_samples=args.iwae_samples,
                           nuts=nuts, methods=tuple(args.methods),
                           fit_max_steps=args.fit_max_steps, seed=args.seed)
    model, checkpoint = _load_model(args.checkpoint, device)
    x = _evaluation_points(checkpoint, "test", device)[:args.num_points]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    comparison = compare_posteriors(model, x, config)
    table = comparison.table()
    atomic_write_text(out / "comparison.json", comparison.to_json() + "\n")
    atomic_write_text(out / "comparison.txt", table + "\n")
    image_shape = checkpoint["metadata"].get("image_shape")
    plot_posterior_comparison(comparison, model, x, tuple(image_shape) if image_shape else None,
                              out / "posteriors.png")
    idata = comparison.nuts.to_inference_data()
    plot_trace(idata, out / "trace.png")
    if model.latent_dim >= 2:
        plot_pair(idata, out / "pair.png", point=comparison.point_index[0])
    print(table)
    print(f"wrote {out / 'comparison.json'}, {out / 'comparison.txt'}, {out / 'posteriors.png'}, "
          f"{out / 'trace.png'}" + (f", {out / 'pair.png'}" if model.latent_dim >= 2 else ""))
    if not comparison.converged:
        print("ppl-vae compare: WARNING: NUTS did not converge; see the table's reasons and "
              "raise --warmup-steps / --num-samples", file=sys.stderr)
    return 0


COMMANDS = {"train": run_train, "sample": run_sample, "evaluate": run_evaluate,
            "compare": run_compare}


def _is_out_of_memory(error: BaseException) -> bool:
    """CPU and CUDA allocation failures (torch raises them as RuntimeError subclasses)."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error)
    return "can't allocate memory" in text or "out of memory" in text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ppl-vae``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except PplVaeError as error:
        print(f"ppl-vae {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except (MemoryError, RuntimeError) as error:
        if not _is_out_of_memory(error):
            raise
        print(f"ppl-vae {args.command}: error: ran out of memory while allocating a tensor; use "
              "fewer samples or points, a smaller --batch-size, or a device with more memory",
              file=sys.stderr)
        return EXIT_ERROR
    except TrainingInterrupted as interruption:
        print(f"ppl-vae {args.command}: {interruption}", file=sys.stderr)
        return 128 + interruption.signal_number
    except KeyboardInterrupt:
        print(f"ppl-vae {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
