"""A defensive mixture proposal: importance weights that stay bounded.

A Gaussian fitted by KL(q || p) is often narrower than the posterior, and
then its importance weights ``p(x, z) / q(z)`` have a heavy right tail
(Pareto k̂ > 0.7): the IWAE estimate and its error bar stop being
trustworthy. Hesterberg's (1995) defensive mixture adds the prior as a
component with share ``a_0``:

    q_mix(z) = a_1 q*(z) + a_2 q*_wide(z) + a_3 q_guide(z | x) + a_0 p(z),

so ``p(x, z) / q_mix(z) <= p(x | z) / a_0`` is bounded by the largest
likelihood: the weights have every moment and the central limit theorem
holds (Owen & Zhou 2000). ``q*_wide`` is q* with its standard deviations
times :data:`WIDEN`, which covers posterior tails that q* misses at a modest
cost in efficiency. The mixture's density is computed exactly, so its IWAE
estimate is as unbiased (in p(x)) as any other.
"""

from __future__ import annotations

from typing import Any

import pyro.distributions as dist
import torch

from ppl_vae.errors import ConfigError
from ppl_vae.inference.compiled import resolve
from ppl_vae.inference.local_vi import PointPosterior
from ppl_vae.inference.program import latent_moments

#: Standard deviations of q* are multiplied by this in the widened component.
WIDEN = 2.0

#: Shares of (q*, q* widened, encoder, prior). The prior's 0.2 bounds the weights by
#: 5 p(x | z); the rest stay near the posterior, so few draws are wasted.
SHARES = (0.4, 0.3, 0.1, 0.2)


class DefensiveMixture(PointPosterior):
    """The mixture of q*, q* widened, the guide and the prior, per fixed data point.

    Every component is a diagonal Gaussian over the flat vector of the
    program's continuous latent sites (unconstrained), see
    :func:`defensive_mixture`.

    Parameters
    ----------
    loc, scale : Tensor, shape (num_points, latent_dim)
        q* (or, without one, the guide's q(z | x)).
    guide_loc, guide_scale : Tensor, shape (num_points, latent_dim)
        The guide's q(z | x).
    prior_loc, prior_scale : Tensor, shape (num_points, latent_dim)
        The prior p(z).
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, guide_loc: torch.Tensor,
                 guide_scale: torch.Tensor, prior_loc: torch.Tensor, prior_scale: torch.Tensor) -> None:
        super().__init__()
        self.num_points = loc.shape[0]
        locs = torch.stack([loc, loc, guide_loc, prior_loc], -2)
        scales = torch.stack([scale, WIDEN * scale, guide_scale, prior_scale], -2)
        self.register_buffer("locs", locs.detach().clone())
        self.register_buffer("scales", scales.detach().clone())
        self.register_buffer("shares", torch.tensor(SHARES, dtype=loc.dtype, device=loc.device))

    def distribution(self, rows: slice) -> dist.TorchDistribution:
        locs, scales = self.locs[rows], self.scales[rows]
        mixing = dist.Categorical(probs=self.shares.expand(locs.shape[0], len(SHARES)))
        return dist.MixtureSameFamily(mixing, dist.Normal(locs, scales).to_event(1))


def defensive_mixture(model: Any, x: torch.Tensor, loc: torch.Tensor | None = None,
                      scale: torch.Tensor | None = None, guide: Any = None,
                      seed: int = 0) -> DefensiveMixture:
    """The defensive mixture for the points ``x``.

    The guide and prior components are read from the programs
    (:func:`~ppl_vae.inference.program.latent_moments`): exact where the
    program draws one Gaussian latent vector (a Gaussian encoder; a N(0, I)
    prior, as in the VAE and pPCA, which bounds the weights as above),
    otherwise Gaussians matched to the mean and spread of its draws (a
    Student-t or mixture prior, several sites), which keeps the estimate
    unbiased but not the bound.

    Parameters
    ----------
    model : ProbabilisticModel or callable or Program
        A model object, or a Pyro program ``model(x)``, or either compiled.
    x : Tensor, shape (num_points, data_dim)
    loc, scale : Tensor, shape (num_points, latent_dim), optional
        q*, per-point Gaussians fitted to ``x`` (unconstrained, flat over the
        continuous sites); without them the guide stands in.
    guide : callable, optional
        The guide (default: the model object's own).
    seed : int
        Seeds the draws the moments are taken from; the global random state is untouched.

    Returns
    -------
    DefensiveMixture
    """
    compiled = resolve(model, x, guide, None)
    own_guide = compiled.guide_program
    if own_guide is None:
        raise ConfigError("the defensive mixture needs a guide q(z | x): pass guide=")
    structure = compiled.require(x, "defensive_mixture", per_point=False)
    guide_loc, guide_scale = latent_moments(compiled.model, own_guide, x, structure, seed)
    prior_loc, prior_scale = latent_moments(compiled.model, None, x, structure, seed)
    if loc is None or scale is None:
        loc, scale = guide_loc, guide_scale
    mixture = DefensiveMixture(loc, scale, guide_loc, guide_scale, prior_loc, prior_scale)
    mixture.structure = structure
    return mixture
