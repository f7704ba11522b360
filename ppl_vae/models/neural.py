"""Moved to :mod:`ppl_vae.models.vae` (``NeuralModel``, formerly ``NeuralLikelihoodMixin``); this path goes in the next release."""

from ppl_vae._moved import forward

__getattr__ = forward(__name__, "ppl_vae.models.networks", "ppl_vae.models.base", "ppl_vae.models.vae")
