"""Speed when another process takes a core: training and batched NUTS, idle and under load, per thread policy.

Usage::

    python benchmarks/contention.py [--policies fixed adaptive passive one_thread] [--repeats 3]
                                    [--out contention.json]

Eager torch runs each operator on a team of OpenMP threads that meet at a
barrier after it, and with the default wait policy they spin there. When
another process holds one of the cores, the thread that shares its core runs
only in the scheduler's time slices while its partner spins: every operator
then waits for a slice. This benchmark measures that on two workloads:

* ``svi``: :func:`ppl_vae.train` of the 784-400-20 VAE on the mnist5k
  digits (batch 128, dynamic binarization), ms per step over 5 epochs after
  a warm-up epoch;
* ``nuts``: :func:`ppl_vae.inference.mcmc.sample_posterior` with batched NUTS
  on 20 test digits of an untrained latent-2 VAE, 4 chains x (100 + 100), seconds.

Policies, each (policy, load) cell in a fresh interpreter because OpenMP
reads its environment once, when torch loads: ``fixed`` (torch's own thread
count throughout, ``adapt_threads=False``: ppl_vae before
:mod:`ppl_vae.threads`), ``adaptive`` (the default: threads follow the free
cores), ``passive`` (fixed, ``OMP_WAIT_POLICY=PASSIVE``: threads sleep at
barriers), ``one_thread`` (``OMP_NUM_THREADS=1``), ``spin_1k`` (fixed,
``GOMP_SPINCOUNT=1000``: a short spin, then sleep). The load is one busy
process, a pure-Python loop (one core at 100%), started before the workload
and killed after it. Repeats are interleaved. The table gives each cell's
median, its slowdown under load against the same policy idle, and both
against ``fixed`` idle.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

POLICIES = {
    "fixed": {"ADAPT": "0"},
    "adaptive": {"ADAPT": "1"},
    "passive": {"ADAPT": "0", "OMP_WAIT_POLICY": "PASSIVE"},
    "one_thread": {"ADAPT": "0", "OMP_NUM_THREADS": "1"},
    "spin_1k": {"ADAPT": "0", "GOMP_SPINCOUNT": "1000"},
}
WORKLOADS = ("svi", "nuts")
BUSY_LOOP = "while True: pass"


def _child(workload: str) -> None:
    """Run one workload in this process and print its figure as JSON."""
    import torch

    adapt = os.environ["ADAPT"] == "1"

    from ppl_vae import VAE, SVIConfig, load_dataset, train
    from ppl_vae.data import evaluation_data
    from ppl_vae.inference.mcmc import NUTSConfig, sample_posterior

    data = load_dataset("mnist5k")
    torch.manual_seed(0)
    if workload == "svi":
        model = VAE(784, 20, hidden_dims=(400,))
        history = train(model, data.train_x, SVIConfig(epochs=6, binarize="dynamic"), progress=False,
                        adapt_threads=adapt).history
        steps = -(-len(data.train_x) // 128)
        seconds = (history[-1]["wall_time"] - history[0]["wall_time"]) / 5
        figure = {"ms_per_step": 1e3 * seconds / steps}
    else:
        model = VAE(784, 2, hidden_dims=(400,)).eval()
        x = evaluation_data(data.test_x, "dynamic", 0)[:20]
        config = NUTSConfig(num_samples=100, warmup_steps=100, num_chains=4, scheme="batched", seed=0,
                            adapt_threads=adapt)
        figure = {"seconds": sample_posterior(model, x, config).wall_time}
    print(json.dumps({**figure, "threads": torch.get_num_threads()}))


def _run(workload: str, policy: str, loaded: bool) -> dict:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    environment.update(POLICIES[policy])
    command = [sys.executable, __file__, "--child", workload]
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if loaded else None
    try:
        if busy:
            time.sleep(0.5)
        done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent.parent)
    finally:
        if busy:
            busy.kill()
            busy.wait()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=["fixed", "adaptive", "passive", "one_thread"],
                        choices=list(POLICIES))
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return

    key = {"svi": "ms_per_step", "nuts": "seconds"}
    cells: dict[tuple[str, str, bool], list[float]] = {}
    threads: dict[str, int] = {}
    for _ in range(args.repeats):
        for workload in args.workloads:
            for policy in args.policies:
                for loaded in (False, True):
                    result = _run(workload, policy, loaded)
                    cells.setdefault((workload, policy, loaded), []).append(result[key[workload]])
                    threads[policy] = result["threads"]
                    print(json.dumps({"workload": workload, "policy": policy, "loaded": loaded, **result}),
                          flush=True)
    print(f"\n{os.cpu_count()} cores; one busy process as the load; median of {args.repeats}")
    print(f"{'workload':<8} {'policy':<12} {'threads':>7} {'idle':>9} {'loaded':>9} {'load x':>7} "
          f"{'idle vs default':>15} {'loaded vs default idle':>22}")
    rows = []
    for workload in args.workloads:
        base = statistics.median(cells[(workload, "fixed", False)]) if "fixed" in args.policies else None
        for policy in args.policies:
            idle = statistics.median(cells[(workload, policy, False)])
            loaded = statistics.median(cells[(workload, policy, True)])
            row = {"workload": workload, "policy": policy, "threads": threads[policy], "idle": idle,
                   "loaded": loaded, "slowdown_under_load": loaded / idle,
                   "idle_vs_default_idle": idle / base if base else None,
                   "loaded_vs_default_idle": loaded / base if base else None,
                   "unit": key[workload], "runs": {"idle": cells[(workload, policy, False)],
                                                   "loaded": cells[(workload, policy, True)]}}
            rows.append(row)
            print(f"{workload:<8} {policy:<12} {threads[policy]:>7} {idle:>9.3f} {loaded:>9.3f} "
                  f"{loaded / idle:>7.2f} {row['idle_vs_default_idle'] or float('nan'):>15.2f} "
                  f"{row['loaded_vs_default_idle'] or float('nan'):>22.2f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
