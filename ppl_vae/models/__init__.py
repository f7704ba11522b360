"""Latent variable models written as Pyro programs."""

from __future__ import annotations

import importlib
from typing import Any

from ppl_vae.errors import CheckpointError, ConfigError
from ppl_vae.models.autoencoder import Autoencoder
from ppl_vae.models.base import ProbabilisticModel
from ppl_vae.models.gan import (
    GAN,
    GANConfig,
    GANResult,
    Inversion,
    invert_generator,
    train_gan,
)
from ppl_vae.models.likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    GaussianLikelihood,
    Likelihood,
    get_likelihood,
    register_likelihood,
)
from ppl_vae.models.linear_gaussian import LinearGaussian
from ppl_vae.models.mixture import GaussianMixture
from ppl_vae.models.program import PyroProgram
from ppl_vae.models.vae import VAE, TwoLayerVAE

#: Model classes a checkpoint can name.
MODEL_CLASSES: dict[str, type[ProbabilisticModel]] = {
    "VAE": VAE,
    "TwoLayerVAE": TwoLayerVAE,
    "LinearGaussian": LinearGaussian,
    "GaussianMixture": GaussianMixture,
    "Autoencoder": Autoencoder,
}


def model_class_name(model_type: type) -> str:
    """How a checkpoint names a model class: its short name in :data:`MODEL_CLASSES`, else ``module:qualname``."""
    for name, known in MODEL_CLASSES.items():
        if known is model_type:
            return name
    return f"{model_type.__module__}:{model_type.__qualname__}"


def import_model_class(path: str) -> type[ProbabilisticModel]:
    """The class named ``package.module:Name`` (e.g. a subclass of :class:`VAE` a user wrote),
    or the name of one of ppl_vae's own classes (:data:`MODEL_CLASSES`, e.g. ``TwoLayerVAE``).

    Raises
    ------
    ConfigError
        If the path is malformed, cannot be imported, or names no ppl_vae model class.
    """
    if path in MODEL_CLASSES:
        return MODEL_CLASSES[path]
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise ConfigError(f"--model must be one of {', '.join(MODEL_CLASSES)} or look like "
                          f"package.module:ClassName; got {path!r}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except ImportError as error:
        raise ConfigError(f"cannot import {module_name!r} for --model {path} ({error}); is it "
                          "installed or on PYTHONPATH?") from None
    except AttributeError:
        raise ConfigError(f"{module_name!r} has no {qualname!r} (--model {path})") from None
    if not (isinstance(target, type) and issubclass(target, ProbabilisticModel)):
        raise ConfigError(f"--model {path} is not a ppl_vae model class (a subclass of VAE or "
                          "another ProbabilisticModel)")
    return target


def build_model(model_class: str, config: dict[str, Any],
                model_type: type[ProbabilisticModel] | None = None) -> ProbabilisticModel:
    """Rebuild a model from the class name and the ``config()`` stored in a checkpoint.

    Parameters
    ----------
    model_class : str
        A name of :data:`MODEL_CLASSES`, or ``module:qualname`` for a class
        defined outside ppl_vae.
    config : dict
        Its constructor's arguments.
    model_type : type, optional
        The class itself, for a checkpoint of a class defined outside ppl_vae:
        a checkpoint never makes ppl_vae import code by itself, the user names it.
    """
    if model_type is not None and model_class_name(model_type) == model_class:
        target = model_type
    elif model_class in MODEL_CLASSES:
        target = MODEL_CLASSES[model_class]
    elif ":" in model_class:
        raise CheckpointError(
            f"the checkpoint holds a model of class {model_class!r}, defined outside ppl_vae; pass "
            f"--model {model_class} to load it (from Python: build_model(..., model_type=<the "
            "class>)): ppl_vae imports code only when you name it"
        )
    else:
        raise CheckpointError(
            f"the checkpoint holds an unknown model class {model_class!r}; this ppl_vae "
            f"knows {', '.join(MODEL_CLASSES)}"
        )
    try:
        return target(**config)
    except TypeError as error:
        raise CheckpointError(
            f"the checkpoint's model configuration does not fit {model_class}: {error}"
        ) from None


__all__ = ["GAN", "LIKELIHOODS", "MODEL_CLASSES", "Autoencoder", "BernoulliLikelihood", "GANConfig",
           "GANResult", "GaussianLikelihood", "GaussianMixture", "Inversion", "Likelihood",
           "LinearGaussian", "ProbabilisticModel", "PyroProgram", "TwoLayerVAE", "VAE", "build_model",
           "get_likelihood", "import_model_class", "invert_generator", "model_class_name",
           "register_likelihood", "train_gan"]
