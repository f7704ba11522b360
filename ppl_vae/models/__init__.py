"""Latent variable models written as Pyro programs."""

from __future__ import annotations

from typing import Any

from ppl_vae.errors import CheckpointError
from ppl_vae.models.autoencoder import Autoencoder
from ppl_vae.models.base import LIKELIHOODS, ProbabilisticModel
from ppl_vae.models.gan import GAN, GANConfig, GANResult, Inversion, invert_generator, train_gan
from ppl_vae.models.linear_gaussian import LinearGaussian
from ppl_vae.models.mixture import GaussianMixture
from ppl_vae.models.program import PyroProgram
from ppl_vae.models.vae import VAE

#: Model classes a checkpoint can name.
MODEL_CLASSES: dict[str, type[ProbabilisticModel]] = {
    "VAE": VAE,
    "LinearGaussian": LinearGaussian,
    "GaussianMixture": GaussianMixture,
    "Autoencoder": Autoencoder,
}


def build_model(model_class: str, config: dict[str, Any]) -> ProbabilisticModel:
    """Rebuild a model from the class name and the ``config()`` stored in a checkpoint."""
    if model_class not in MODEL_CLASSES:
        raise CheckpointError(
            f"the checkpoint holds an unknown model class {model_class!r}; this ppl_vae "
            f"knows {', '.join(MODEL_CLASSES)}"
        )
    try:
        return MODEL_CLASSES[model_class](**config)
    except TypeError as error:
        raise CheckpointError(
            f"the checkpoint's model configuration does not fit {model_class}: {error}"
        ) from None


__all__ = ["GAN", "LIKELIHOODS", "MODEL_CLASSES", "Autoencoder", "GANConfig", "GANResult",
           "GaussianMixture", "Inversion", "LinearGaussian", "ProbabilisticModel", "PyroProgram", "VAE",
           "build_model", "invert_generator", "train_gan"]
