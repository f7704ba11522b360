"""The Examples sections of the public docstrings run, and show what they say (doctest)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import os

import pytest

import ppl_vae

#: Modules whose public objects' Examples are run: every module the public names come from,
#: and those of the most used inference functions outside ``ppl_vae.__all__``.
MODULES = sorted({obj.__module__ for obj in map(lambda name: getattr(ppl_vae, name), ppl_vae.__all__)
                  if getattr(obj, "__module__", "").startswith("ppl_vae")}
                 | {"ppl_vae.explorer", "ppl_vae.evaluation.compare", "ppl_vae.inference.ais",
                    "ppl_vae.inference.local_vi", "ppl_vae.inference.mcmc.api"})


def examples() -> list[tuple[str, doctest.DocTest]]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        for test in finder.find(module, name):
            if test.examples and not test.name.split(".")[-1].startswith("_"):
                found.append((test.name, test))
    return found


EXAMPLES = examples()


def test_the_most_used_names_have_examples():
    names = {name for name, _ in EXAMPLES}
    for expected in ("load_dataset", "resolve_device", "train", "SVIConfig", "VAE", "LinearGaussian",
                     "compile_program", "elbo", "elbo_terms", "iwae", "naive_prior", "sample_posterior",
                     "NUTSConfig", "ais", "bdmc", "fit_local_gaussian", "compare_posteriors"):
        assert any(name.endswith(f".{expected}") for name in names), expected


@pytest.mark.parametrize("name, test", EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_docstring_example(name, test, tmp_path):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    here = os.getcwd()
    os.chdir(tmp_path)  # an example that writes a file writes it here
    try:
        runner.run(test, out=lambda text: pytest.fail(f"{name}:\n{text}"))
    finally:
        os.chdir(here)
    assert runner.failures == 0
