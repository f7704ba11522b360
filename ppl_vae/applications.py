"""Moved: the image corruptions to :mod:`ppl_vae.data.corruptions`, the metrics to :mod:`ppl_vae.evaluation`.

This path goes in the next release.
"""

from ppl_vae._moved import forward

__getattr__ = forward(__name__, "ppl_vae.data.corruptions", "ppl_vae.evaluation.anomaly",
                      "ppl_vae.evaluation.representation")
