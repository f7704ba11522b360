"""Inference for ppl_vae models: SVI, NUTS on the latents, marginal likelihoods, comparisons."""

from ppl_vae.inference.batched_nuts import BatchedNUTSResult, batched_nuts
from ppl_vae.inference.compare import CompareConfig, Comparison, compare_posteriors
from ppl_vae.inference.diagnostics import (
    ConvergenceReport,
    check_convergence,
    to_inference_data,
)
from ppl_vae.inference.disentanglement import (
    MutualInformationGap,
    correlation_matrix,
    mutual_information_gap,
    traversal_codes,
)
from ppl_vae.inference.latents import (
    ActiveUnits,
    active_units,
    gaussian_kl,
    kl_per_dimension,
)
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
from ppl_vae.inference.mcmc import (
    MCMCResult,
    NUTSConfig,
    posterior_moments,
    sample_posterior,
)
from ppl_vae.inference.objectives import (
    ENGINES,
    OBJECTIVES,
    direct_elbo_loss,
    make_loss,
)
from ppl_vae.inference.posteriors import (
    FlowPosterior,
    LocalGaussian,
    fit_flow_posterior,
    fit_local_gaussian,
)
from ppl_vae.inference.program import LatentSite, ProgramStructure, inspect_program
from ppl_vae.inference.svi import (
    ELBO_ESTIMATORS,
    SVIConfig,
    TrainResult,
    evaluation_data,
    train,
)

__all__ = [
    "ActiveUnits",
    "BatchedNUTSResult",
    "CompareConfig",
    "Comparison",
    "ConvergenceReport",
    "ELBO_ESTIMATORS",
    "ENGINES",
    "Estimate",
    "FlowPosterior",
    "LatentSite",
    "LocalGaussian",
    "MCMCResult",
    "MutualInformationGap",
    "NUTSConfig",
    "OBJECTIVES",
    "ProgramStructure",
    "SVIConfig",
    "TrainResult",
    "active_units",
    "batched_nuts",
    "check_convergence",
    "compare_posteriors",
    "correlation_matrix",
    "direct_elbo_loss",
    "elbo",
    "elbo_terms",
    "evaluation_data",
    "fit_flow_posterior",
    "fit_local_gaussian",
    "gaussian_kl",
    "inspect_program",
    "iwae",
    "kl_per_dimension",
    "log_density_terms",
    "log_importance_weights",
    "log_joint",
    "make_loss",
    "mutual_information_gap",
    "naive_prior",
    "posterior_moments",
    "sample_posterior",
    "to_inference_data",
    "train",
    "traversal_codes",
]
