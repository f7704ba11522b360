"""MCMC on the latents: the entry point (:mod:`~ppl_vae.inference.mcmc.api`), batched NUTS, its warm-up.

:mod:`ppl_vae.inference.mcmc.api` reads a model's program and runs NUTS on
p(z | x) (``sample_posterior``); :mod:`ppl_vae.inference.mcmc.batched_nuts`
is the sampler itself, which sees only a potential function and never a model;
:mod:`ppl_vae.inference.mcmc.adaptation` holds Stan's warm-up (dual averaging,
the windowed mass matrix).
"""

from ppl_vae.inference.mcmc.api import (
    RECOMMENDED_MAX_LATENT_DIM,
    SCHEMES,
    MCMCResult,
    NUTSConfig,
    posterior_moments,
    sample_posterior,
)

__all__ = [
    "RECOMMENDED_MAX_LATENT_DIM",
    "SCHEMES",
    "MCMCResult",
    "NUTSConfig",
    "posterior_moments",
    "sample_posterior",
]
