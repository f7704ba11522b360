"""Inference for ppl_vae models: SVI, NUTS on the latents, marginal likelihoods, comparisons."""

from ppl_vae.inference.compare import CompareConfig, Comparison, compare_posteriors
from ppl_vae.inference.diagnostics import ConvergenceReport, check_convergence, to_inference_data
from ppl_vae.inference.likelihood import (
    Estimate,
    elbo,
    elbo_terms,
    iwae,
    log_density_terms,
    log_importance_weights,
    log_joint,
    naive_prior,
)
from ppl_vae.inference.mcmc import MCMCResult, NUTSConfig, posterior_moments, sample_posterior
from ppl_vae.inference.posteriors import (
    FlowPosterior,
    LocalGaussian,
    fit_flow_posterior,
    fit_local_gaussian,
)
from ppl_vae.inference.svi import ELBO_ESTIMATORS, SVIConfig, TrainResult, evaluation_data, train

__all__ = [
    "ELBO_ESTIMATORS",
    "CompareConfig",
    "Comparison",
    "ConvergenceReport",
    "Estimate",
    "FlowPosterior",
    "LocalGaussian",
    "MCMCResult",
    "NUTSConfig",
    "SVIConfig",
    "TrainResult",
    "check_convergence",
    "compare_posteriors",
    "elbo",
    "elbo_terms",
    "evaluation_data",
    "fit_flow_posterior",
    "fit_local_gaussian",
    "iwae",
    "log_density_terms",
    "log_importance_weights",
    "log_joint",
    "naive_prior",
    "posterior_moments",
    "sample_posterior",
    "to_inference_data",
    "train",
]
