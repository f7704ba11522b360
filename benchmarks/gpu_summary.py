"""One table from the files ``benchmarks/gpu_check.sh`` leaves in its output folder.

Usage::

    python benchmarks/gpu_summary.py runs/gpu_check

Reads ``parts.tsv`` (each part's exit status and seconds), the benchmarks'
JSON files and the demo runs' ``summary.json`` / ``metrics.jsonl``; a part
that did not finish shows as missing rather than stopping the table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _first_json_line(path: Path) -> dict | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def _demo(folder: Path) -> str:
    summary = _json(folder / "summary.json")
    if not summary:
        return "missing"
    return (f"{summary['epoch']} epochs in {summary['wall_time']:.1f} s, test ELBO "
            f"{summary['test_elbo']:.2f}")


def main(folder: str) -> int:
    out = Path(folder)
    print(f"GPU check: {out}")
    print(f"environment: {_last_line(out / 'environment.log')}")
    print(f"gpu tests: {_last_line(out / 'gpu_tests.log')}")

    print("\nSVI step, ms (784-400-latent VAE, mnist5k, median of interleaved repeats)")
    rows = _json(out / "svi_throughput.json") or []
    print(f"{'latent':>6} {'batch':>5} {'pytorch':>8} {'pyro':>8} {'ppl_vae':>8} {'eager':>8} "
          f"{'ppl/pt':>7} {'eager/graph':>11}")
    for row in rows:
        ms = row["ms_per_step"]
        eager = ms.get("ppl_vae_eager", float("nan"))
        print(f"{row['latent_dim']:>6} {row['batch_size']:>5} {ms['pytorch']:>8.3f} {ms['pyro']:>8.3f} "
              f"{ms['ppl_vae']:>8.3f} {eager:>8.3f} {ms['ppl_vae'] / ms['pytorch']:>7.2f} "
              f"{eager / ms['ppl_vae']:>11.2f}")

    print("\nThe demo (ppl-vae train, 784-400-20, mnist5k)")
    print(f"  step recorded as a CUDA graph: {_demo(out / 'demo')}")
    print(f"  every kernel launched eagerly:  {_demo(out / 'demo_eager')}")
    evaluation = _first_json_line(out / "demo_evaluate.log")
    if evaluation:
        print(f"  evaluate: test ELBO {evaluation['elbo']:.3f} +- {evaluation['elbo_stderr']:.3f} "
              f"(K={evaluation['elbo_samples']}), IWAE {evaluation['iwae']:.3f} (K={evaluation['iwae_samples']})")

    peers = _json(out / "peers.json")
    if peers and peers.get("table"):
        print("\nppl_vae against the compiled JAX peers (ratio = ppl_vae / peer)")
        for row in peers["table"]:
            better = "higher" if row["higher_is_better"] else "lower"
            print(f"  {row['work']} ({row['unit']}, {better} is better): ppl_vae {row['ppl_vae']:.4g}, "
                  f"{row['peer']} {row['peer_value']:.4g}, ratio {row['ratio']:.2f}")

    iwae = _json(out / "iwae_evaluation.json")
    if iwae:
        rows = iwae["rows"]
        print(f"\nIWAE K = {iwae['num_samples']}: ppl_vae {rows['ppl_vae']['seconds']:.2f} s "
              f"(peak GPU {rows['ppl_vae'].get('peak_gpu_mib') or 0:.0f} MiB), per-point loop "
              f"{rows['per_point']['seconds']:.2f} s; speed-up {iwae['speedup']:.2f}x")

    generic = _json(out / "generic_vs_direct.json")
    if generic:
        print("\ngeneric program path against the direct transcription (ratio = time / direct)")
        for work, row in generic.items():
            print(f"  {work:>12}: direct {row['direct']:.3f}, generic {row['generic']:.3f} "
                  f"({row['generic'] / row['direct']:.2f}), functions {row['functions']:.3f} "
                  f"({row['functions'] / row['direct']:.2f})")

    print("\nparts (exit status, seconds):")
    try:
        parts = [line.split("\t") for line in (out / "parts.tsv").read_text().splitlines()]
    except OSError:
        parts = []
    for name, status, seconds in parts:
        note = {"0": "ok", "124": "TIMED OUT", "137": "KILLED", "skipped": "skipped"}.get(status, "FAILED")
        print(f"  {name:<20} {status:>7} {seconds:>5} s  {note}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python benchmarks/gpu_summary.py OUT_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
