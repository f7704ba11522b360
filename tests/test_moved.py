"""Old module paths and names still resolve, to the very same objects, with a DeprecationWarning."""

from __future__ import annotations

import importlib

import pytest

#: (old module, name, module it moved to): one row per module that moved, and the package exports.
MOVED = [
    ("ppl_vae.inference", "compare_posteriors", "ppl_vae.evaluation"),
    ("ppl_vae.inference", "check_convergence", "ppl_vae.evaluation"),
    ("ppl_vae.inference", "kl_per_dimension", "ppl_vae.evaluation"),
    ("ppl_vae.inference", "mutual_information_gap", "ppl_vae.evaluation"),
    ("ppl_vae.inference", "train", "ppl_vae.training"),
    ("ppl_vae.inference.compare", "guide_samples", "ppl_vae.evaluation.compare"),
    ("ppl_vae.inference.diagnostics", "to_inference_data", "ppl_vae.evaluation.diagnostics"),
    ("ppl_vae.inference.latents", "active_units", "ppl_vae.evaluation.representation"),
    ("ppl_vae.inference.disentanglement", "discretize", "ppl_vae.evaluation.representation"),
    ("ppl_vae.plotting", "image_grid", "ppl_vae.evaluation.plots"),
    ("ppl_vae.applications", "anomaly_roc", "ppl_vae.evaluation.anomaly"),
    ("ppl_vae.applications", "linear_probe", "ppl_vae.evaluation.representation"),
    ("ppl_vae.applications", "MAX_QUANTIZATION_BITS", "ppl_vae.evaluation.representation"),
    ("ppl_vae.applications", "flip_pixels", "ppl_vae.data.corruptions"),
    ("ppl_vae.synthetic", "make_strokes", "ppl_vae.data.synthetic"),
    ("ppl_vae.inference.batched_nuts", "batched_nuts", "ppl_vae.inference.mcmc.batched_nuts"),
    ("ppl_vae.inference.adaptation", "warmup_stages", "ppl_vae.inference.mcmc.adaptation"),
    ("ppl_vae.inference.likelihood", "iwae", "ppl_vae.inference.importance"),
    ("ppl_vae.inference.likelihood", "MAX_CHUNK_ELEMENTS", "ppl_vae.inference.importance"),
    ("ppl_vae.inference.posteriors", "fit_local_gaussian", "ppl_vae.inference.local_vi"),
    ("ppl_vae.models.neural", "NeuralLikelihoodMixin", "ppl_vae.models.vae"),
    ("ppl_vae.models.neural", "GaussianObservation", "ppl_vae.models.vae"),
    ("ppl_vae.models.neural", "Decoder", "ppl_vae.models.networks"),
    ("ppl_vae.models.two_layer", "TwoLayerVAE", "ppl_vae.models.vae"),
]


@pytest.mark.parametrize(("old", "name", "new"), MOVED)
def test_an_old_path_forwards_with_a_warning(old, name, new):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to {new}"):
        found = getattr(module, name)
    assert found is getattr(importlib.import_module(new), name)


def test_the_old_path_of_a_moved_file_still_imports_and_leaves_the_package_export_alone():
    import ppl_vae.inference
    from ppl_vae.inference import likelihood  # the file is gone: a forwarder stands in for it
    from ppl_vae.inference.mcmc.batched_nuts import batched_nuts

    with pytest.warns(DeprecationWarning, match="ppl_vae.inference.likelihood.elbo moved"):
        assert likelihood.elbo is ppl_vae.inference.elbo
    with pytest.warns(DeprecationWarning, match="moved to ppl_vae.inference.mcmc.batched_nuts"):
        from ppl_vae.inference.batched_nuts import batched_nuts as old
    assert old is batched_nuts
    assert ppl_vae.inference.batched_nuts is batched_nuts  # still the function, not a module


def test_a_name_that_never_existed_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        importlib.import_module("ppl_vae.inference").no_such_name


#: The public names of the old module ppl_vae/data.py, now the package ppl_vae/data/.
OLD_DATA_NAMES = ("BINARIZE_MODES", "KNOWN_DATASETS", "Dataset", "binarize", "check_binarize_mode",
                  "evaluation_data", "load_dataset")


def test_the_data_package_keeps_every_public_name_of_the_old_module_as_a_plain_attribute():
    import ppl_vae.data as data

    for name in OLD_DATA_NAMES:
        assert name in vars(data) and name in data.__all__, name  # no forwarding, so no warning
    assert callable(data.binarize)  # the function, not the submodule binarization.py


def test_a_renamed_function_forwards_with_a_warning(monkeypatch):
    from ppl_vae.inference import local_vi

    calls = []
    monkeypatch.setattr(local_vi, "fit_point_posterior", lambda *args, **kwargs: calls.append((args, kwargs)))
    with pytest.warns(DeprecationWarning, match="renamed fit_point_posterior"):
        local_vi.fit_point_guide("model", "x", posterior="q", seed=3)
    assert calls == [(("model", "x"), {"posterior": "q", "seed": 3})]
