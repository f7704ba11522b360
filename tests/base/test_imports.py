"""``import ppl_vae`` changes no global setting: the caller's backend, threads and warning filters stay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Runs in a fresh interpreter: the state before and after importing every public module.
PROBE = """
import json, sys, warnings
import matplotlib, torch
before = {"backend": matplotlib.get_backend(), "threads": torch.get_num_threads(),
          "filters": len(warnings.filters)}
import ppl_vae, ppl_vae.inference, ppl_vae.evaluation, ppl_vae.explorer, ppl_vae.data
after = {"backend": matplotlib.get_backend(), "threads": torch.get_num_threads(),
         "filters": len(warnings.filters)}
print(json.dumps({"before": before, "after": after, "arviz": "arviz" in sys.modules}))
"""


def test_importing_the_package_changes_no_global_setting():
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": str(ROOT)}
    output = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                            check=True).stdout
    report = json.loads(output.strip().splitlines()[-1])
    assert report["before"] == report["after"]
    assert report["after"]["backend"] == "svg"
    assert not report["arviz"]  # imported when a diagnostic first needs it
