"""Moved to :mod:`ppl_vae.evaluation.diagnostics`; this path goes in the next release."""

from ppl_vae._moved import forward

__getattr__ = forward(__name__, "ppl_vae.evaluation.diagnostics")
