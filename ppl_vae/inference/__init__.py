"""Inference for ppl_vae models: SVI training and marginal-likelihood estimates."""

from ppl_vae.inference.likelihood import Estimate, elbo, iwae, log_importance_weights
from ppl_vae.inference.svi import ELBO_ESTIMATORS, SVIConfig, TrainResult, evaluation_data, train

__all__ = [
    "ELBO_ESTIMATORS",
    "Estimate",
    "SVIConfig",
    "TrainResult",
    "elbo",
    "evaluation_data",
    "iwae",
    "log_importance_weights",
    "train",
]
