"""The module paths and names kept for one release are gone, and nothing forwards through strings.

A forwarder (a module ``__getattr__`` that looks names up by their module's
name) is an import that ``tests/system/test_layout.py`` cannot see, so none may come
back: an old path fails as any missing module or name does.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ppl_vae"

#: Module paths that forwarded to their new homes for one release, with where the names live now.
OLD_MODULES = {
    "ppl_vae.applications": "ppl_vae.data.corruptions, ppl_vae.evaluation.anomaly, .representation",
    "ppl_vae.plotting": "ppl_vae.evaluation.plots",
    "ppl_vae.run_folder": "ppl_vae.training.run_folder, ppl_vae.storage",
    "ppl_vae.synthetic": "ppl_vae.data.synthetic",
    "ppl_vae.inference.adaptation": "ppl_vae.inference.mcmc.adaptation",
    "ppl_vae.inference.batched_nuts": "ppl_vae.inference.mcmc.batched_nuts",
    "ppl_vae.inference.compare": "ppl_vae.evaluation.compare",
    "ppl_vae.inference.diagnostics": "ppl_vae.evaluation.diagnostics",
    "ppl_vae.inference.disentanglement": "ppl_vae.evaluation.representation",
    "ppl_vae.inference.distributed": "ppl_vae.training.distributed",
    "ppl_vae.inference.latents": "ppl_vae.evaluation.representation",
    "ppl_vae.inference.likelihood": "ppl_vae.inference.importance",
    "ppl_vae.inference.posteriors": "ppl_vae.inference.local_vi",
    "ppl_vae.inference.run_checks": "ppl_vae.training.checks",
    "ppl_vae.inference.svi": "ppl_vae.training",
    "ppl_vae.models.neural": "ppl_vae.models.vae, ppl_vae.models.networks",
    "ppl_vae.models.two_layer": "ppl_vae.models.vae",
    "ppl_vae._moved": "(the forwarding machinery itself)",
}

#: Names that resolved on a module other than their own for one release.
OLD_NAMES = [
    ("ppl_vae.inference", "train"),
    ("ppl_vae.inference", "compare_posteriors"),
    ("ppl_vae.inference", "check_convergence"),
    ("ppl_vae.inference", "kl_per_dimension"),
    ("ppl_vae.inference", "mutual_information_gap"),
    ("ppl_vae.models.vae", "NeuralLikelihoodMixin"),
]


@pytest.fixture
def python_finders_only(monkeypatch):
    """Import with Python's own finders only: the finder of an editable install of another
    checkout maps ``ppl_vae.*`` names missing here to that checkout's files."""
    monkeypatch.setattr(sys, "meta_path", [finder for finder in sys.meta_path
                                           if finder.__module__.startswith("_frozen_importlib")])


@pytest.mark.parametrize("old", sorted(OLD_MODULES))
def test_an_old_module_path_is_an_ordinary_missing_module(old, python_finders_only):
    with pytest.raises(ModuleNotFoundError, match=f"No module named '{old}'"):
        importlib.import_module(old)


@pytest.mark.parametrize(("module", "name"), OLD_NAMES)
def test_an_old_name_is_an_ordinary_missing_attribute(module, name):
    with pytest.raises(AttributeError, match=f"has no attribute '{name}'"):
        getattr(importlib.import_module(module), name)


def test_no_module_of_the_package_defines_a_module_getattr():
    """A module ``__getattr__`` would resolve names by string, past the layout test."""
    found = [str(path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob("*.py"))
             for node in ast.parse(path.read_text()).body
             if (isinstance(node, ast.FunctionDef) and node.name == "__getattr__")
             or (isinstance(node, ast.Assign)
                 and any(getattr(t, "id", None) == "__getattr__" for t in node.targets))]
    assert not found, f"modules with a __getattr__: {found}"


#: The public names of the old module ppl_vae/data.py, now the package ppl_vae/data/.
OLD_DATA_NAMES = ("BINARIZE_MODES", "KNOWN_DATASETS", "Dataset", "binarize", "check_binarize_mode",
                  "evaluation_data", "load_dataset")


def test_the_data_package_keeps_every_public_name_of_the_old_module_as_a_plain_attribute():
    import ppl_vae.data as data

    for name in OLD_DATA_NAMES:
        assert name in vars(data) and name in data.__all__, name  # no forwarding, so no warning
    assert callable(data.binarize)  # the function, not the submodule binarization.py


def test_the_renamed_fit_is_gone():
    from ppl_vae.inference import local_vi

    assert not hasattr(local_vi, "fit_point_guide") and hasattr(local_vi, "fit_point_posterior")
