"""Write the small files of this folder from a checkout of stan-dev/posteriordb.

Usage::

    python benchmarks/posteriordb/summarize.py PATH/TO/posteriordb

For each posterior: its data (only the fields the model reads) and, from the
reference draws (10 chains x 1,000 thinned Stan draws), each parameter's
mean, sd, number of draws and bulk ESS. Run once by hand; nothing here runs
at test or benchmark time.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

#: posterior name -> (data name, fields the model reads)
POSTERIORS = {
    "eight_schools-eight_schools_noncentered": ("eight_schools", ("J", "y", "sigma")),
    "kidiq-kidscore_momiq": ("kidiq", ("N", "kid_score", "mom_iq")),
    "sblri-blr": ("sblri", ("N", "D", "X", "y")),
}


def _unzip(path: Path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(archive.namelist()[0]))


def main(root: Path) -> None:
    db = root / "posterior_database"
    for posterior, (data_name, fields) in POSTERIORS.items():
        data = _unzip(db / "data" / "data" / f"{data_name}.json.zip")
        chains = _unzip(db / "reference_posteriors" / "draws" / "draws" / f"{posterior}.json.zip")
        info = json.loads((db / "reference_posteriors" / "draws" / "info" / f"{posterior}.info.json").read_text())
        names = info["diagnostics"]["diagnostic_information"]["names"]
        ess = dict(zip(names, info["diagnostics"]["effective_sample_size_bulk"]))
        reference = {}
        for name in chains[0]:
            draws = np.concatenate([np.asarray(chain[name], dtype=float) for chain in chains])
            reference[name] = {"mean": float(draws.mean()), "sd": float(draws.std(ddof=1)),
                               "num_draws": int(draws.size), "ess_bulk": float(ess[name])}
        out = {"posterior": posterior, "data": {key: data[key] for key in fields},
               "reference": reference}
        (HERE / f"{posterior}.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
