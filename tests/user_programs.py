"""Pyro programs written the way users write them, each with its exact answers.

Every program here is a pair of plain functions (or a small subclass), with
its local latents inside ``pyro.plate("data", len(x))``. The linear-Gaussian
ones have a closed-form log p(x) and posterior, which the tests compare every
inference method with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import MultivariateNormal

from ppl_vae import VAE

DTYPE = torch.float64


class StudentTVAE(VAE):
    """A VAE whose prior has heavy tails: z ~ StudentT(3, 0, 1) per coordinate."""

    def prior(self, x):
        zeros = x.new_zeros(x.shape[0], self.latent_dim)
        return dist.StudentT(3.0, zeros, torch.ones_like(zeros)).to_event(1)


def _random(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=DTYPE)


@dataclass
class HandPPCA:
    """Probabilistic PCA written by hand: z ~ N(0, I_L), x | z ~ N(W z + mu, sigma^2 I_D)."""

    weight: torch.Tensor
    loc: torch.Tensor
    noise: float

    @classmethod
    def random(cls, data_dim: int = 5, latent_dim: int = 2, seed: int = 0) -> "HandPPCA":
        generator = torch.Generator().manual_seed(seed)
        return cls(_random(data_dim, latent_dim, generator=generator),
                   _random(data_dim, generator=generator), 0.5)

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.weight.shape[1]), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.weight.T + self.loc, self.noise).to_event(1), obs=x)

    def posterior(self, x: torch.Tensor) -> MultivariateNormal:
        """The exact p(z | x), batch shape (num_points,)."""
        precision = torch.eye(self.weight.shape[1], dtype=DTYPE) + self.weight.T @ self.weight / self.noise**2
        covariance = torch.linalg.inv(precision)
        mean = (x - self.loc) @ self.weight @ covariance / self.noise**2
        return MultivariateNormal(mean, covariance.expand(len(x), -1, -1))

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        covariance = self.weight @ self.weight.T + self.noise**2 * torch.eye(len(self.loc), dtype=DTYPE)
        return MultivariateNormal(self.loc, covariance).log_prob(x)

    def sample(self, num_points: int, seed: int = 1) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        z = _random(num_points, self.weight.shape[1], generator=generator)
        return z @ self.weight.T + self.loc + self.noise * _random(num_points, len(self.loc),
                                                                   generator=generator)

    def exact_guide(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.posterior(x))

    def poor_guide(self, x: torch.Tensor) -> None:
        """Shifted by 0.3 and 1.5 times too wide: a valid but mediocre proposal."""
        exact = self.posterior(x)
        scale = exact.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(exact.mean + 0.3, 1.5 * scale).to_event(1))


@dataclass
class TwoLayerGaussian:
    """z1 ~ N(0, I), z2 | z1 ~ N(A z1, s^2 I), x | z2 ~ N(W z2 + mu, sigma^2 I): two local sites.

    The linear version of the two-stochastic-layer models of Burda et al.
    (2016); the guide q(z2 | x) q(z1 | z2, x) has the same structure.
    """

    mixing: torch.Tensor
    weight: torch.Tensor
    loc: torch.Tensor
    middle_noise: float = 0.6
    noise: float = 0.5

    @classmethod
    def random(cls, seed: int = 0) -> "TwoLayerGaussian":
        generator = torch.Generator().manual_seed(seed)
        return cls(_random(2, 2, generator=generator), _random(5, 2, generator=generator),
                   _random(5, generator=generator))

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            z2 = pyro.sample("z2", dist.Normal(z1 @ self.mixing.T, self.middle_noise).to_event(1))
            pyro.sample("x", dist.Normal(z2 @ self.weight.T + self.loc, self.noise).to_event(1), obs=x)

    def joint(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and covariance of (z1, z2, x), dimension 2 + 2 + 5."""
        a, w = self.mixing, self.weight
        eye2, eye5 = torch.eye(2, dtype=DTYPE), torch.eye(5, dtype=DTYPE)
        c11 = eye2
        c22 = a @ a.T + self.middle_noise**2 * eye2
        cxx = w @ c22 @ w.T + self.noise**2 * eye5
        top = torch.cat([c11, a.T, a.T @ w.T], 1)
        middle = torch.cat([a, c22, c22 @ w.T], 1)
        bottom = torch.cat([w @ a, w @ c22, cxx], 1)
        mean = torch.cat([torch.zeros(4, dtype=DTYPE), self.loc])
        return mean, torch.cat([top, middle, bottom], 0)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        mean, covariance = self.joint()
        return MultivariateNormal(mean[4:], covariance[4:, 4:]).log_prob(x)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact mean (num_points, 4) and covariance (4, 4) of (z1, z2) given x."""
        mean, covariance = self.joint()
        gain = covariance[:4, 4:] @ torch.linalg.inv(covariance[4:, 4:])
        return (x - mean[4:]) @ gain.T, covariance[:4, :4] - gain @ covariance[4:, :4]

    def sample(self, num_points: int, seed: int = 1) -> torch.Tensor:
        mean, covariance = self.joint()
        generator = torch.Generator().manual_seed(seed)
        chol = torch.linalg.cholesky(covariance[4:, 4:])
        return mean[4:] + _random(num_points, 5, generator=generator) @ chol.T

    def guide(self, x: torch.Tensor) -> None:
        """q(z2 | x) q(z1 | z2, x): each a Gaussian off the exact conditional on purpose."""
        mean, covariance = self.posterior(x)
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", dist.Normal(mean[:, 2:] + 0.2,
                                               1.3 * covariance[2:, 2:].diagonal().sqrt()).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(0.4 * z2, 0.9).to_event(1))
            del z1


@dataclass
class MixturePriorLinear:
    """c ~ Cat(pi), z | c ~ N(m_c, s_c^2 I), x | z ~ N(W z + b, sigma^2 I), with c enumerated."""

    logits: torch.Tensor
    centres: torch.Tensor
    spreads: torch.Tensor
    weight: torch.Tensor
    loc: torch.Tensor
    noise: float = 0.7

    @classmethod
    def random(cls, seed: int = 0) -> "MixturePriorLinear":
        generator = torch.Generator().manual_seed(seed)
        return cls(_random(3, generator=generator), 2.0 * _random(3, 2, generator=generator),
                   torch.tensor([0.5, 0.8, 1.2], dtype=DTYPE), _random(4, 2, generator=generator),
                   _random(4, generator=generator))

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(logits=self.logits), infer={"enumerate": "parallel"})
            z = pyro.sample("z", dist.Normal(self.centres[c], self.spreads[c].unsqueeze(-1)).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.weight.T + self.loc, self.noise).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            loc = (x - self.loc) @ torch.linalg.pinv(self.weight).T
            pyro.sample("z", dist.Normal(loc, 0.8).to_event(1))

    def _components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log pi_c N(x; W m_c + b, s_c^2 W W^T + sigma^2 I), and p(z | x, c)'s means and covariances."""
        w, eye = self.weight, torch.eye(len(self.loc), dtype=DTYPE)
        log_terms, means, covs = [], [], []
        for c in range(len(self.logits)):
            prior_cov = self.spreads[c] ** 2 * torch.eye(2, dtype=DTYPE)
            marginal = MultivariateNormal(self.centres[c] @ w.T + self.loc,
                                          w @ prior_cov @ w.T + self.noise**2 * eye)
            log_terms.append(self.logits.log_softmax(-1)[c] + marginal.log_prob(x))
            precision = torch.linalg.inv(prior_cov) + w.T @ w / self.noise**2
            cov = torch.linalg.inv(precision)
            means.append((self.centres[c] @ torch.linalg.inv(prior_cov)
                          + (x - self.loc) @ w / self.noise**2) @ cov)
            covs.append(cov)
        return torch.stack(log_terms, -1), torch.stack(means, -2), torch.stack(covs)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        return self._components(x)[0].logsumexp(-1)

    def posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        log_terms, means, _ = self._components(x)
        return (log_terms.softmax(-1).unsqueeze(-1) * means).sum(-2)

    def sample(self, num_points: int, seed: int = 1) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        c = torch.multinomial(self.logits.softmax(-1), num_points, replacement=True, generator=generator)
        z = self.centres[c] + self.spreads[c].unsqueeze(-1) * _random(num_points, 2, generator=generator)
        return z @ self.weight.T + self.loc + self.noise * _random(num_points, 4, generator=generator)


def vae_functions(vae):
    """A trained VAE's networks as two plain Pyro functions (the form of Pyro's VAE tutorial)."""

    def model(x):
        pyro.module("decoder", vae.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(vae.latent_dim), 1.0).to_event(1))
            logits = vae.decoder(z)
            pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", vae.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = vae.encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return model, guide


def grid_log_marginal(log_joint, half_width: float = 5.0, step: float = 0.02):
    """log p(x) and E[z | x] of a 2-D latent model by quadrature on a square grid.

    ``log_joint(z)`` maps z of shape (G, 2) to log p(x, z) of shape (G, num_points).
    """
    axis = torch.arange(-half_width, half_width + step / 2, step, dtype=DTYPE)
    grid = torch.cartesian_prod(axis, axis)
    values = torch.cat([log_joint(piece) for piece in grid.split(20000)], 0)  # (G, P)
    log_px = values.logsumexp(0) + 2 * math.log(step)
    weights = (values - values.logsumexp(0)).exp()
    return log_px, weights.T @ grid


# ----- conjugate programs with constrained latent sites --------------------------------------

@dataclass
class ConjugateProgram:
    """z_i ~ prior, x_i | z_i ~ likelihood, one constrained latent site per point, all in closed form.

    Subclasses give the family of the prior and the posterior (the same), the
    prior's parameters, the conjugate update and the likelihood. ``guide`` is
    the exact posterior widened on purpose (its parameters divided by 1.5:
    the same mean, a larger spread, heavier tails than the posterior's), so
    importance weights are bounded but not constant; ``exact_guide`` is the
    posterior itself (constant weights, equal to p(x)).
    """

    family = dist.Gamma
    site = "z"

    def prior_params(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def posterior_params(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def likelihood(self, z: torch.Tensor, x: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def prior(self, x: torch.Tensor) -> dist.TorchDistribution:
        return self.family(*self.prior_params(x))

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """The exact p(z | x), batch shape (num_points,)."""
        return self.family(*self.posterior_params(x))

    def model(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample(self.site, self.prior(x))
            pyro.sample("x", self.likelihood(z, x), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample(self.site, self.family(*(p / 1.5 for p in self.posterior_params(x))))

    def exact_guide(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample(self.site, self.posterior(x))

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log p(x | z) + log p(z) - log p(z | x), at any z (the posterior mean)."""
        z = self.posterior(x).mean
        return (self.likelihood(z, x).log_prob(x) + self.prior(x).log_prob(z)
                - self.posterior(x).log_prob(z))

    def sample(self, num_points: int, seed: int = 1) -> torch.Tensor:
        like = torch.zeros(num_points, 1, dtype=DTYPE)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            z = self.prior(like).expand([num_points]).sample()
            return self.likelihood(z, like.expand(num_points, self.data_dim)).sample()


@dataclass
class GammaPoisson(ConjugateProgram):
    """A rate per point, lam ~ Gamma(a, b); its row's counts x_ij ~ Poisson(lam).

    Posterior Gamma(a + sum_j x_ij, b + m); evidence in closed form.
    """

    concentration: float = 2.0
    rate: float = 1.0
    data_dim: int = 5
    family = dist.Gamma
    site = "lam"

    def prior_params(self, x):
        return x.new_tensor(self.concentration), x.new_tensor(self.rate)

    def posterior_params(self, x):
        return self.concentration + x.sum(-1), self.rate + x.new_full(x.shape[:1], x.shape[-1])

    def likelihood(self, z, x):
        return dist.Poisson(z.unsqueeze(-1).expand(*z.shape, x.shape[-1])).to_event(1)


@dataclass
class BetaBernoulli(ConjugateProgram):
    """A coin per point, p ~ Beta(a, b); its row's flips x_ij ~ Bernoulli(p).

    Posterior Beta(a + heads, b + tails).
    """

    a: float = 2.0
    b: float = 2.0
    data_dim: int = 10
    family = dist.Beta
    site = "p"

    def prior_params(self, x):
        return x.new_tensor(self.a), x.new_tensor(self.b)

    def posterior_params(self, x):
        heads = x.sum(-1)
        return self.a + heads, self.b + x.shape[-1] - heads

    def likelihood(self, z, x):
        return dist.Bernoulli(probs=z.unsqueeze(-1).expand(*z.shape, x.shape[-1])).to_event(1)


@dataclass
class DirichletMultinomial(ConjugateProgram):
    """Proportions per point on the 3-simplex, theta ~ Dirichlet(alpha); counts x ~ Multinomial(n, theta).

    Posterior Dirichlet(alpha + x): a latent with event shape (3,) and 2
    unconstrained dimensions.
    """

    alpha: tuple[float, ...] = (1.5, 2.0, 2.5)
    total_count: int = 10
    data_dim: int = 3
    family = dist.Dirichlet
    site = "theta"

    def prior_params(self, x):
        return (x.new_tensor(self.alpha),)

    def posterior_params(self, x):
        return (x.new_tensor(self.alpha) + x,)

    def likelihood(self, z, x):
        return dist.Multinomial(self.total_count, probs=z)
