"""Moved to :mod:`ppl_vae.models.vae`, which holds the whole VAE family; this path goes in the next release."""

from ppl_vae._moved import forward

__getattr__ = forward(__name__, "ppl_vae.models.vae", "ppl_vae.models.base", "ppl_vae.validation")
