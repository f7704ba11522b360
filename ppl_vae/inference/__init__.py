"""Inference algorithms for ppl_vae models: ELBOs, importance sampling, NUTS on the latents, local q*."""

from ppl_vae.inference.compiled import Program, compile_program
from ppl_vae.inference.importance import (
    Estimate,
    elbo,
    elbo_terms,
    iwae,
    log_density_terms,
    log_importance_weights,
    log_joint,
    naive_prior,
)
from ppl_vae.inference.local_vi import (
    FlowPosterior,
    LocalGaussian,
    fit_flow_posterior,
    fit_local_gaussian,
)
from ppl_vae.inference.mcmc import (
    MCMCResult,
    NUTSConfig,
    posterior_moments,
    sample_posterior,
)
from ppl_vae.inference.mcmc.batched_nuts import BatchedNUTSResult, batched_nuts
from ppl_vae.inference.objectives import (
    ELBO_ESTIMATORS,
    ENGINES,
    OBJECTIVES,
    direct_elbo_loss,
    gaussian_kl,
    make_loss,
)
from ppl_vae.inference.program import LatentSite, ProgramStructure, inspect_program

__all__ = [
    "BatchedNUTSResult",
    "ELBO_ESTIMATORS",
    "ENGINES",
    "Estimate",
    "FlowPosterior",
    "LatentSite",
    "LocalGaussian",
    "MCMCResult",
    "NUTSConfig",
    "OBJECTIVES",
    "Program",
    "ProgramStructure",
    "batched_nuts",
    "compile_program",
    "direct_elbo_loss",
    "elbo",
    "elbo_terms",
    "fit_flow_posterior",
    "fit_local_gaussian",
    "gaussian_kl",
    "inspect_program",
    "iwae",
    "log_density_terms",
    "log_importance_weights",
    "log_joint",
    "make_loss",
    "naive_prior",
    "posterior_moments",
    "sample_posterior",
]
