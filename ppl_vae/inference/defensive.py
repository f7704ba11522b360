"""A defensive mixture proposal: importance weights that stay bounded.

A Gaussian fitted by KL(q || p) is often narrower than the posterior, and
then its importance weights ``p(x, z) / q(z)`` have a heavy right tail
(Pareto k̂ > 0.7): the IWAE estimate and its error bar stop being
trustworthy. Hesterberg's (1995) defensive mixture adds the prior as a
component with share ``a_0``:

    q_mix(z) = a_1 q*(z) + a_2 q*_wide(z) + a_3 q_enc(z | x) + a_0 p(z),

so ``p(x, z) / q_mix(z) <= p(x | z) / a_0`` is bounded by the largest
likelihood: the weights have every moment and the central limit theorem
holds (Owen & Zhou 2000). ``q*_wide`` is q* with its standard deviations
times :data:`WIDEN`, which covers posterior tails that q* misses at a modest
cost in efficiency. The mixture's density is computed exactly, so its IWAE
estimate is as unbiased (in p(x)) as any other.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from ppl_vae.inference.posteriors import _PointGuide
from ppl_vae.models.base import ProbabilisticModel

#: Standard deviations of q* are multiplied by this in the widened component.
WIDEN = 2.0

#: Shares of (q*, q* widened, encoder, prior). The prior's 0.2 bounds the weights by
#: 5 p(x | z); the rest stay near the posterior, so few draws are wasted.
SHARES = (0.4, 0.3, 0.1, 0.2)


class DefensiveMixture(_PointGuide):
    """The mixture of q*, q* widened, the encoder and the prior, per fixed data point.

    Parameters
    ----------
    loc, scale : Tensor, shape (num_points, latent_dim)
        q* (or, without one, the encoder's q(z | x)).
    encoder_loc, encoder_scale : Tensor, shape (num_points, latent_dim)
        The encoder's q(z | x).
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, encoder_loc: torch.Tensor,
                 encoder_scale: torch.Tensor) -> None:
        super().__init__()
        self.num_points = loc.shape[0]
        locs = torch.stack([loc, loc, encoder_loc, torch.zeros_like(loc)], -2)
        scales = torch.stack([scale, WIDEN * scale, encoder_scale, torch.ones_like(scale)], -2)
        self.register_buffer("locs", locs.detach().clone())
        self.register_buffer("scales", scales.detach().clone())
        self.register_buffer("shares", torch.tensor(SHARES, dtype=loc.dtype, device=loc.device))

    def distribution(self, rows: slice) -> dist.TorchDistribution:
        locs, scales = self.locs[rows], self.scales[rows]
        mixing = dist.Categorical(probs=self.shares.expand(locs.shape[0], len(SHARES)))
        return dist.MixtureSameFamily(mixing, dist.Normal(locs, scales).to_event(1))


def defensive_mixture(model: ProbabilisticModel, x: torch.Tensor, loc: torch.Tensor | None = None,
                      scale: torch.Tensor | None = None) -> DefensiveMixture:
    """The defensive mixture for the points ``x``.

    Parameters
    ----------
    model : ProbabilisticModel
        A model with prior N(0, I) on ``"z"`` and an encoder ``model.encode(x)``.
    x : Tensor, shape (num_points, data_dim)
    loc, scale : Tensor, shape (num_points, latent_dim), optional
        q*, per-point Gaussians fitted to ``x``; without them the encoder stands in.

    Returns
    -------
    DefensiveMixture
    """
    with torch.no_grad():
        encoder_loc, encoder_scale = model.encode(x)
    if loc is None or scale is None:
        loc, scale = encoder_loc, encoder_scale
    return DefensiveMixture(loc, scale, encoder_loc, encoder_scale)
