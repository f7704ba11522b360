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
    ELBO_ESTIMATORS,
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
    "active_units",
    "batched_nuts",
    "check_convergence",
    "compare_posteriors",
    "correlation_matrix",
    "direct_elbo_loss",
    "elbo",
    "elbo_terms",
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
    "traversal_codes",
]

# Training moved to ppl_vae.training; the old names still resolve here, with a warning, for one release.
from ppl_vae._moved import forward  # noqa: E402

__getattr__ = forward(__name__, "ppl_vae.training")
