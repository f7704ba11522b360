"""ppl_vae: latent variable models and variational autoencoders as Pyro programs.

The generative model p(z) p(x | z) and the approximate posterior q(z | x) are
Pyro ``model``/``guide`` functions with sites ``"z"`` and ``"x"``; SVI trains
them, and the same sites serve every other inference method.
"""

from ppl_vae.checkpoint import load_checkpoint, save_checkpoint
from ppl_vae.data import Dataset, load_dataset
from ppl_vae.devices import resolve_device
from ppl_vae.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    PplVaeError,
    TrainingDivergedError,
)
from ppl_vae.inference import Program, compile_program, elbo, iwae
from ppl_vae.models import (
    VAE,
    Autoencoder,
    GaussianMixture,
    LinearGaussian,
    PyroProgram,
    TwoLayerVAE,
    build_model,
)
from ppl_vae.training import SVIConfig, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "Autoencoder",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "Dataset",
    "GaussianMixture",
    "LinearGaussian",
    "PplVaeError",
    "Program",
    "PyroProgram",
    "TwoLayerVAE",
    "SVIConfig",
    "TrainResult",
    "TrainingDivergedError",
    "build_model",
    "compile_program",
    "elbo",
    "iwae",
    "load_checkpoint",
    "load_dataset",
    "resolve_device",
    "save_checkpoint",
    "train",
]
