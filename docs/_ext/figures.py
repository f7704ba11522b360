"""Every measured figure of the README and the site, rendered from one source: ``benchmarks/results/``.

The benchmarks write JSON (``--out``); the files kept in ``benchmarks/results/``
are the measurements the documentation quotes. A page quotes them through a
marked block, in the README as on the site::

    <!-- figures: svi -->
    (rendered here; do not edit by hand)
    <!-- /figures -->

``python docs/_ext/figures.py`` (run by ``make docs`` and ``make docs-smoke``)
re-renders every block of ``README.md`` and ``docs/*.md`` from the JSON;
``--check`` only says which files disagree with it, and the docs build warns
(so ``-W`` fails) when one does. To publish new measurements: copy the
benchmark's JSON into ``benchmarks/results/`` and run the script.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"

BLOCK = re.compile(r"(<!-- figures: ([\w-]+) -->\n)(.*?)(<!-- /figures -->)", re.S)

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen"]


def load(name: str) -> Any:
    return json.loads((RESULTS / f"{name}.json").read_text())


def nats(value: float) -> str:
    return f"{value:.1f}".replace("-", "−")


def _svi_row(rows: list[dict], latent_dim: int, batch_size: int) -> dict:
    return next(row for row in rows if row["latent_dim"] == latent_dim and row["batch_size"] == batch_size)


def demo() -> str:
    result = load("demo")
    reference = result["reference"]
    return (f"What to expect ({result['machine']}, seed {result['seed']}): training takes about "
            f"{result['train_s']} s, evaluation about {result['evaluate_s']} s (`make demo` end to "
            f"end: {result['total_s']} s), and on the 500 test digits\n\n"
            "| estimate (nats per image) | value |\n| --- | --- |\n"
            f"| test ELBO (K = {result['test_elbo']['num_samples']:,}) | "
            f"{nats(result['test_elbo']['value'])} |\n"
            f"| IWAE bound on log p(x) (K = {result['iwae']['num_samples']:,}) | "
            f"{nats(result['iwae']['value'])} |\n\n"
            f"the same as {reference['what']} (about {nats(reference['test_elbo']).replace('.0', '')} "
            f"and {nats(reference['iwae']).replace('.0', '')}).\n")


def svi_headline() -> str:
    row = _svi_row(load("svi"), 20, 128)
    ms = row["ms_per_step"]
    return (f"One SVI step of the default VAE (784-400-20, batch 128) takes {ms['ppl_vae']:.2f} ms "
            f"on a 2-core CPU: {row['ppl_vae_over_pytorch']:.2f}× the time of a hand-written "
            f"PyTorch loop, where plain Pyro SVI takes {row['pyro_over_pytorch']:.2f}× "
            "(the whole table is on the Speed page).\n")


def svi() -> str:
    lines = ["| latent | batch | hand-written PyTorch | plain Pyro SVI | ppl_vae `train` | "
             "ppl_vae, `engine=\"pyro\"` |", "| --- | --- | --- | --- | --- | --- |"]
    for row in load("svi"):
        ms = row["ms_per_step"]
        lines.append(f"| {row['latent_dim']} | {row['batch_size']} | {ms['pytorch']:.2f} ms (1.00) | "
                     f"{ms['pyro']:.2f} ms ({row['pyro_over_pytorch']:.2f}) | "
                     f"{ms['ppl_vae']:.2f} ms ({row['ppl_vae_over_pytorch']:.2f}) | "
                     f"{ms['ppl_vae_pyro_engine']:.2f} ms ({row['ppl_vae_pyro_engine_over_pytorch']:.2f}) |")
    return "\n".join(lines) + "\n"


SCHEMES = {"batched": "`batched` (ppl_vae's default, dense mass)",
           "joint": "`joint` (one Pyro NUTS over all points)",
           "per_point": "`per_point` (one Pyro NUTS per point, the baseline)"}


def nuts() -> str:
    result = load("nuts")
    rows = result["rows"]
    baseline = next(row for row in rows if row["scheme"] == "per_point")["ess_per_s"]
    lines = ["| scheme | wall time | min bulk ESS | max R-hat | ESS/s | leapfrog steps per draw | ratio |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {SCHEMES[row['scheme']]} | {row['wall_time_all_points_s']:.0f} s | "
                     f"{row['min_bulk_ess']:.0f} | {row['max_r_hat']:.4f} | {row['ess_per_s']:.2f} | "
                     f"{row['mean_leapfrog_steps_per_draw']:.1f} | {row['ess_per_s'] / baseline:.2f}"
                     f"{'×' if row['scheme'] != 'per_point' else ''} |")
    return "\n".join(lines) + "\n"


def iwae() -> str:
    result = load("iwae")
    ours, loop = result["rows"]["ppl_vae"], result["rows"]["per_point"]
    return (f"`python benchmarks/iwae_evaluation.py --checkpoint runs/demo` scores the "
            f"{ours['num_points']} test digits with the IWAE bound at K = {result['num_samples']:,}: "
            f"{ours['seconds']:.1f} s ({ours['num_points'] / ours['seconds']:.0f} points/s) with a peak "
            f"of {ours['peak_rss_mib']:.0f} MiB, against {loop['seconds']:.1f} s for a per-point loop "
            f"that draws all K samples of a point at once (peak {loop['peak_rss_mib']:.0f} MiB in "
            "this run; 1.46 GiB in an earlier one).\n")


def docs_build() -> str:
    result = load("docs_build")
    count = len(list((ROOT / "tutorials").glob("[0-9][0-9]_*.py")))
    minutes, seconds = divmod(result["full_build_s"], 60)
    slowest = ", ".join(name.split("_", 1)[0].lstrip("0") for name in result["slowest"])
    slowest_min = max(result["slowest"].values()) / 60
    return (f"`make docs` executes all {NUMBERS[count]} tutorials at full size: {minutes} minutes "
            f"{seconds} seconds on {result['machine']}, of which the tutorials take "
            f"{result['full_tutorials_s'] // 60} minutes, the slowest ({slowest.replace(', ', ' and ')}) "
            f"about {slowest_min:.1f} minutes each. The executed notebooks are cached, so a second "
            "`make docs` re-runs only the tutorials whose code changed.\n")


def log_px() -> str:
    result = load("ais")
    estimates, below = result["estimates"], result["estimates"]["iwae_below_ais"]
    hardware = result["hardware"]
    lines = [f"On the demo model's {result['num_points']} test digits ({hardware['cores']}-core "
             f"{hardware['device'].upper()}, {hardware['torch_threads']} torch threads, one run):\n",
             "| estimate | nats per digit | Monte Carlo error of the mean | digits with a trusted "
             "error bar | time |", "| --- | --- | --- | --- | --- |"]
    names = {"elbo": f"ELBO (K = {estimates['elbo']['samples']:,})",
             "iwae": f"IWAE (K = {estimates['iwae']['samples']:,})",
             "ais": f"AIS (T = {estimates['ais']['temperatures']}, {estimates['ais']['chains']} chains)"}
    for key, name in names.items():
        row = estimates[key]
        error = (f"± {row['stderr']:.3f}" if row["trusted_share"] == 1.0
                 else f"± {row['delta_stderr']:.3f} (delta method; not trusted everywhere)")
        lines.append(f"| {name} | {row['mean']:.2f} | {error} | "
                     f"{100 * row['trusted_share']:.0f}% | {row['seconds']:.0f} s |")
    lines += ["", f"Per digit, IWAE lies below AIS by {below['mean']:.2f} nats on average "
                  f"(median {below['median']:.2f}, largest {below['max']:.2f}; where IWAE lies above "
                  f"AIS, by up to {-below['min']:.2f}, the AIS chains missed posterior mass).", "",
              f"BDMC on {result['bdmc_points']} digits simulated from the model "
              f"({result['ais_config']['num_chains']} chains, {result['ais_config']['leapfrog_steps']} "
              "leapfrog steps, linear schedule):", "",
              "| temperatures | mean gap (nats) | largest gap | lower bound | upper bound | "
              "seconds per digit |", "| --- | --- | --- | --- | --- | --- |"]
    for row in result["bdmc"]:
        lines.append(f"| {row['temperatures']:,} | {row['mean_gap']:.3f} | {row['max_gap']:.3f} | "
                     f"{row['lower']:.2f} | {row['upper']:.2f} | {row['seconds_per_point']:.2f} |")
    return "\n".join(lines) + "\n"


def posteriordb() -> str:
    result = load("posteriordb")
    config = result["config"]
    lines = [f"{config['num_chains']} chains × ({config['warmup_steps']:,} + {config['num_samples']:,}), "
             f"float64, median of {config['repeats']} paired repeats; ppl_vae: `batched_nuts(jit_compile=True)`, "
             "NumPyro: NUTS with `chain_method=\"vectorized\"`; both dense mass; compile: the first run's extra "
             "seconds\n",
             "| posterior | ppl_vae | compile | NumPyro | compile | seconds, ppl_vae / NumPyro | ESS/s, ppl_vae / "
             "NumPyro | max R-hat | max \\|z\\| vs reference |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    def median(runs: list[dict]) -> float:
        return sorted(run["seconds"] for run in runs)[len(runs) // 2]

    for record in result["posteriors"]:
        ours, theirs = record["ppl_vae"], record["numpyro"]
        lines.append(
            f"| `{record['posterior']}` | {median(ours):.1f} s | {record['ppl_vae_compile_s'][0]:.0f} s | "
            f"{median(theirs):.1f} s | {record['numpyro_compile_s'][0]:.0f} s | {record['ratio_seconds']:.2f} | "
            f"{record['ratio_ess_per_s']:.2f} | {max(run['max_r_hat'] for run in ours):.3f} / "
            f"{max(run['max_r_hat'] for run in theirs):.3f} | {max(run['max_abs_z'] for run in ours):.1f} / "
            f"{max(run['max_abs_z'] for run in theirs):.1f} |")
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[], str]] = {
    "demo": demo, "svi-headline": svi_headline, "svi": svi, "nuts": nuts, "iwae": iwae,
    "docs-build": docs_build, "log_px": log_px, "posteriordb": posteriordb,
}


def render(text: str) -> str:
    """``text`` with every figures block rendered afresh; an unknown block name is an error."""
    def fill(match: re.Match) -> str:
        name = match.group(2)
        if name not in RENDERERS:
            raise KeyError(f"no figures block named {name!r}; known: {', '.join(RENDERERS)}")
        return match.group(1) + RENDERERS[name]() + match.group(4)
    return BLOCK.sub(fill, text)


def targets() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def stale() -> list[Path]:
    """The files whose figures blocks differ from what the JSON gives."""
    return [path for path in targets() if render(path.read_text()) != path.read_text()]


def blocks(path: Path) -> dict[str, str]:
    """The figures blocks of one file, by name (what the README and the site must agree on)."""
    return {match.group(2): match.group(3) for match in BLOCK.finditer(path.read_text())}


def main(argv: list[str]) -> int:
    if "--check" in argv:
        found = stale()
        for path in found:
            print(f"{path.relative_to(ROOT)}: figures differ from benchmarks/results "
                  f"(run python docs/_ext/figures.py)")
        return 1 if found else 0
    for path in targets():
        text = path.read_text()
        rendered = render(text)
        if rendered != text:
            path.write_text(rendered)
            print(f"rendered the figures of {path.relative_to(ROOT)}")
    return 0


def warn_when_stale(app: Any, config: Any) -> None:
    from sphinx.util import logging

    if Path(app.srcdir).resolve() != ROOT / "docs":  # a copy of the extension elsewhere (a test)
        return
    for path in stale():
        logging.getLogger(__name__).warning(
            f"{path.relative_to(ROOT)}: figures differ from benchmarks/results; run "
            "python docs/_ext/figures.py")


def setup(app: Any) -> dict[str, object]:
    app.connect("config-inited", warn_when_stale)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
