"""AIS and BDMC reports for ``ppl-vae evaluate``: numbers, JSON-ready summaries and printed lines.

The estimators live in :mod:`ppl_vae.inference.ais`; this module times
them, summarizes them per data set and says in words what a reader should
do with the result (where IWAE's weights cannot give an error bar, where a
sandwich is wide and how many temperatures would narrow it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ppl_vae.inference.ais import (
    AISConfig,
    ais_log_weights,
    bdmc,
    estimate_from_log_weights,
    num_chunks,
)
from ppl_vae.inference.importance import Estimate

#: The mean BDMC gap (nats per point) below which the sandwich is called tight.
TIGHT_GAP = 0.02
#: IWAE's k̂ above which the weights have no finite mean to settle on: more samples do not help.
INFINITE_MEAN_K = 1.0


@contextmanager
def progress_bar(total: int, label: str, enabled: bool = True
                 ) -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar on stderr when it is a terminal (``None`` otherwise): ``update(points_done)``."""
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit="point", leave=False) as bar:
        yield lambda done: bar.update(done - bar.n)


#: ``gather(value) -> [every process's value]``: how processes share their results (one: ``[value]``).
Gather = Callable[[Any], list[Any]]


def ais_report(model: Any, x: torch.Tensor, config: AISConfig, rank: int = 0, size: int = 1,
               gather: Gather = lambda value: [value]) -> dict[str, Any]:
    """AIS on every point: the mean, its error, flagged points, per-point values and the time.

    With ``size`` processes, this one anneals the chunks of points whose
    index is ``rank`` modulo ``size``, and ``gather`` brings every process's
    weights together; each chunk has its own generator, so the numbers equal
    one process's.

    Parameters
    ----------
    model : ProbabilisticModel, callable or Program
    x : Tensor, shape (num_points, data_dim)
    config : AISConfig
    rank, size : int
        This process and the number of processes.
    gather : callable
        ``value -> [value of each process]`` (``torch.distributed.all_gather_object``).

    Returns
    -------
    dict
        ``ais``, ``ais_stderr`` (of the mean; ``inf`` when a point's error
        bar is not trusted), ``num_flagged``, ``seconds``,
        ``seconds_per_point``, the settings, and ``per_point``.
    """
    started = time.perf_counter()
    mine = [index for index in range(num_chunks(len(x), config)) if index % size == rank]
    with progress_bar(len(x), "AIS", enabled=size == 1) as progress:
        weights = ais_log_weights(model, x, config=config, chunks=mine, progress=progress)
    gathered = gather({index: value.cpu() for index, value in weights.items()})
    merged = {index: value.to(x.device) for part in gathered for index, value in part.items()}
    estimate = estimate_from_log_weights(merged, x.dtype)
    seconds = time.perf_counter() - started
    return {
        "ais": estimate.mean,
        "ais_stderr": estimate.mean_stderr,
        "ais_delta_stderr": _mean_error(estimate.delta_stderr),
        "num_flagged": int(estimate.flagged.sum()),
        "temperatures": config.num_temperatures,
        "chains": config.num_chains,
        "leapfrog_steps": config.leapfrog_steps,
        "seconds": seconds,
        "seconds_per_point": seconds / len(x),
        "per_point": {"ais": estimate.per_point.tolist(), "ais_stderr": estimate.stderr.tolist()},
    }


def bdmc_report(model: Any, x: torch.Tensor, num_points: int, config: AISConfig) -> dict[str, Any]:
    """The BDMC sandwich on ``num_points`` points simulated from the model (``x`` gives their shape).

    Returns
    -------
    dict
        ``lower``, ``upper`` (means), ``gap`` (mean), ``max_gap``, ``points``,
        ``temperatures``, ``temperatures_for_tight`` (the count that would
        bring the mean gap to :data:`TIGHT_GAP`, assuming AIS's 1 / T bias),
        ``seconds``.
    """
    templates = x[:num_points] if num_points <= len(x) else x[torch.arange(num_points) % len(x)]
    started = time.perf_counter()
    with progress_bar(num_points, "BDMC") as progress:
        result = bdmc(model, templates, config=config, progress=progress)
    return {
        "points": num_points,
        "temperatures": config.num_temperatures,
        "lower": result.lower.mean,
        "upper": result.upper.mean,
        "gap": result.mean_gap,
        "max_gap": float(result.gap.max()),
        "temperatures_for_tight": result.temperatures_for(TIGHT_GAP),
        "seconds": time.perf_counter() - started,
    }


def _mean_error(stderr: torch.Tensor) -> float:
    return float(stderr.pow(2).sum().sqrt() / stderr.numel())


def iwae_advice(estimate: Estimate) -> str:
    """What helps where IWAE's error bars fail: more samples while k̂ <= 1, AIS past it."""
    k = estimate.pareto_k
    if k is not None and int((k > INFINITE_MEAN_K).sum()) > 0:
        return (f"k̂ > {INFINITE_MEAN_K:g} on {int((k > INFINITE_MEAN_K).sum())} of them: the "
                "weights have no finite mean there and more samples will not settle it; run "
                "with --ais for a log p(x) with an error bar")
    return "raise --iwae-samples"


def ais_lines(report: dict[str, Any] | None, bdmc: dict[str, Any] | None) -> list[str]:
    """The lines ``ppl-vae evaluate --ais [--bdmc N]`` prints under the ELBO and IWAE."""
    lines = []
    if report is not None:
        flagged = report["num_flagged"]
        error = report["ais_stderr"] if not flagged else report["ais_delta_stderr"]
        lines.append(f"  AIS log p(x)        {report['ais']:10.3f} ± {error:.3f}{'*' if flagged else ''}"
                     f"   (T={report['temperatures']}, {report['chains']} chains; "
                     f"{report['seconds_per_point']:.3f} s per point)")
    if report is not None and report["num_flagged"]:
        lines.append(f"  * the AIS chains' weights disagree on {report['num_flagged']} points (fewer "
                     "than a third of them effective): raise --ais-temperatures")
    if bdmc is not None:
        lines.append(f"  BDMC on {bdmc['points']} points simulated from the model: lower {bdmc['lower']:.3f}, "
                     f"upper {bdmc['upper']:.3f}; gap {bdmc['gap']:.3f} nats per point "
                     f"(max {bdmc['max_gap']:.3f})")
        if bdmc["gap"] > TIGHT_GAP:
            lines.append(f"    the gap bounds the AIS error on data like these; about "
                         f"--ais-temperatures {bdmc['temperatures_for_tight']} would bring it to "
                         f"{TIGHT_GAP} nats")
        else:
            lines.append(f"    AIS with this schedule is within {bdmc['gap']:.3f} nats of log p(x) "
                         "on data like these")
    return lines
