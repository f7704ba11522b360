"""Moved to :mod:`ppl_vae.training` (``train``, ``SVIConfig``, ``TrainResult``); this path goes in the next release."""

from ppl_vae._moved import forward

__getattr__ = forward(__name__, "ppl_vae.training", "ppl_vae.training.loop", "ppl_vae.training.config",
                      "ppl_vae.inference.objectives")
