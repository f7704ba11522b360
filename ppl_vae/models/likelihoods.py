"""The likelihoods p(x | z) of the neural models, as objects in one registry.

A decoder maps a latent code to ``out``, one number per feature; a
:class:`Likelihood` turns ``out`` into the distribution of the observed site
``"x"``::

    bernoulli     x_d | z ~ Bernoulli(sigmoid(out_d))        values in [0, 1]
    gaussian      x_d | z ~ N(out_d, sigma^2)                 sigma fixed, or learned

Each also says which data it accepts (:meth:`Likelihood.check`) and how the
command line binarizes pixels for it (:attr:`Likelihood.default_binarize`).
A likelihood is a :class:`torch.nn.Module`, so what it learns (the Gaussian's
``log_scale``) is a parameter of the model that holds it, saved in its
checkpoints and registered with Pyro like every other module of the model.

Models take a likelihood by name (``VAE(784, 20, likelihood="gaussian")``,
the form stored in configs and checkpoints) or as an object
(``likelihood=GaussianLikelihood(0.2, learn_scale=True)``). A user's own class
becomes a name that configs store and checkpoints rebuild with
:func:`register_likelihood`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.errors import ConfigError, DataError


class Likelihood(nn.Module):
    """Base class: a distribution of ``x`` given the decoder's output, and the data it accepts.

    A subclass sets :attr:`name` and :attr:`default_binarize`, and writes
    :meth:`distribution`; it extends :meth:`check` (calling ``super().check(x)``
    first) when only some finite values suit it.
    """

    #: The name in :data:`LIKELIHOODS`, stored in a model's ``config()``.
    name: ClassVar[str] = ""
    #: How the command line binarizes the data by default: "dynamic" or "none".
    default_binarize: ClassVar[str] = "none"

    @classmethod
    def from_settings(cls, observation_scale: float = 0.1,
                      learn_observation_scale: bool = False) -> Likelihood:
        """The likelihood a model builds from its constructor's settings; the base takes none.

        Parameters
        ----------
        observation_scale : float
            A model's ``observation_scale`` argument.
        learn_observation_scale : bool
            A model's ``learn_observation_scale`` argument.
        """
        return cls()

    def settings(self) -> dict[str, Any]:
        """The model-constructor settings that rebuild this likelihood (part of ``config()``)."""
        return {}

    def distribution(self, out: torch.Tensor) -> dist.TorchDistribution:
        """p(x | z) for decoder output ``out``.

        Parameters
        ----------
        out : Tensor, shape (..., data_dim)
            The decoder's output at the latent codes.

        Returns
        -------
        TorchDistribution
            Batch shape ``out.shape[:-1]``, event shape ``(data_dim,)``.
        """
        raise NotImplementedError

    def check(self, x: torch.Tensor) -> None:
        """Raise :class:`DataError` unless every value of ``x`` suits this likelihood.

        Synchronizes a device: call it once per data set, not per minibatch.
        The base accepts every finite value.

        Parameters
        ----------
        x : Tensor, shape (batch, data_dim)
        """
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad_rows = (~finite).any(dim=-1).nonzero().flatten()
            raise DataError(
                f"the data hold {int((~finite).sum())} NaN or infinite values "
                f"(first in row {int(bad_rows[0])}); remove or impute them before training."
            )

    def trivial_log_prob(self, data_dim: int) -> float | None:
        """log p(x) per point of a model that ignores z and knows nothing of the data, if one is defined.

        A training run whose ELBO falls far below it has blown up
        (:func:`ppl_vae.training.checks.warn_if_exploding`); None where no such
        model is fixed by the likelihood alone.
        """
        return None


#: The likelihoods a model, a checkpoint or ``--likelihood`` can name: name -> class.
LIKELIHOODS: dict[str, type[Likelihood]] = {}


def register_likelihood(cls: type[Likelihood]) -> type[Likelihood]:
    """Make a :class:`Likelihood` subclass nameable by its :attr:`~Likelihood.name` (a class decorator).

    Raises
    ------
    ConfigError
        If ``cls`` is not a Likelihood subclass with a name, or another class
        holds the name already.
    """
    if not (isinstance(cls, type) and issubclass(cls, Likelihood)) or not cls.name:
        raise ConfigError(f"register_likelihood takes a Likelihood subclass with a name; got {cls!r}")
    known = LIKELIHOODS.get(cls.name)
    if known is not None and known is not cls:
        raise ConfigError(f"the likelihood name {cls.name!r} is taken by {known.__qualname__}; "
                          "give your class another name")
    LIKELIHOODS[cls.name] = cls
    return cls


def get_likelihood(likelihood: str | Likelihood, observation_scale: float = 0.1,
                   learn_observation_scale: bool = False) -> Likelihood:
    """The likelihood object for a name in :data:`LIKELIHOODS`, or the object itself.

    Parameters
    ----------
    likelihood : str or Likelihood
        A registered name, or a likelihood object (returned as it is).
    observation_scale, learn_observation_scale
        A model's settings, passed to the named class's
        :meth:`~Likelihood.from_settings`.

    Raises
    ------
    ConfigError
        For an unknown name (naming the known ones), a likelihood without a
        name, or anything else.
    """
    if isinstance(likelihood, Likelihood):
        if not likelihood.name:
            raise ConfigError(f"{type(likelihood).__qualname__} has no name; set the class attribute "
                              "name, which a model's config stores")
        return likelihood
    if isinstance(likelihood, str) and likelihood in LIKELIHOODS:
        return LIKELIHOODS[likelihood].from_settings(observation_scale, learn_observation_scale)
    what = f"likelihood {likelihood!r}" if isinstance(likelihood, str) else repr(likelihood)
    raise ConfigError(f"unknown {what}; choose one of {', '.join(LIKELIHOODS)}, or pass a "
                      "Likelihood object (register_likelihood makes its class nameable)")


@register_likelihood
class BernoulliLikelihood(Likelihood):
    """Independent pixels ``x_d ~ Bernoulli(sigmoid(out_d))``; the decoder's output is the logits.

    Grey values in [0, 1] are scored too (torch's continuous relaxation,
    ``x log p + (1 - x) log(1 - p)``), as Pyro's own examples do; values
    outside [0, 1] are refused by :meth:`check`.
    """

    name = "bernoulli"
    default_binarize = "dynamic"

    def distribution(self, out: torch.Tensor) -> dist.TorchDistribution:
        """Bernoulli with logits ``out``: batch shape ``out.shape[:-1]``, event ``(data_dim,)``."""
        # Grey values are allowed on purpose (see the README), so torch's support
        # check would refuse good data; check() tests the range once per data set.
        return dist.Bernoulli(logits=out, validate_args=False).to_event(1)

    def check(self, x: torch.Tensor) -> None:
        """Also refuse values outside [0, 1]; see :meth:`Likelihood.check`."""
        super().check(x)
        if bool((x < 0).any()) or bool((x > 1).any()):
            raise DataError(
                f"a Bernoulli likelihood needs values in [0, 1]; the data range over "
                f"[{float(x.min()):.4g}, {float(x.max()):.4g}]. Rescale to [0, 1] and "
                "binarize (--binarize dynamic), or use --likelihood gaussian."
            )

    def trivial_log_prob(self, data_dim: int) -> float:
        """``-data_dim * log 2``: every pixel given probability 1/2."""
        return -data_dim * math.log(2.0)


@register_likelihood
class GaussianLikelihood(Likelihood):
    """``x_d ~ N(out_d, sigma^2)`` with one standard deviation sigma, fixed or learned.

    Parameters
    ----------
    scale : float
        sigma (its initial value when learned); positive.
    learn_scale : bool
        Learn sigma: ``log_scale`` is then a parameter, else a buffer. Either
        way it is saved in the model's state as ``observation.log_scale``.
    """

    name = "gaussian"

    def __init__(self, scale: float = 0.1, learn_scale: bool = False) -> None:
        super().__init__()
        if not scale > 0:
            raise ConfigError(f"the Gaussian likelihood's scale must be positive; got {scale!r}")
        self.initial_scale = float(scale)
        self.learn_scale = bool(learn_scale)
        raw = torch.tensor(self.initial_scale).log()
        if self.learn_scale:
            self.log_scale = nn.Parameter(raw)
        else:
            self.register_buffer("log_scale", raw)

    @classmethod
    def from_settings(cls, observation_scale: float = 0.1,
                      learn_observation_scale: bool = False) -> GaussianLikelihood:
        return cls(observation_scale, learn_observation_scale)

    def settings(self) -> dict[str, Any]:
        return {"observation_scale": self.initial_scale, "learn_observation_scale": self.learn_scale}

    @property
    def scale(self) -> torch.Tensor:
        """sigma, a scalar tensor (differentiable when learned)."""
        return self.log_scale.exp()

    def distribution(self, out: torch.Tensor) -> dist.TorchDistribution:
        """Normal with mean ``out`` and standard deviation sigma: batch ``out.shape[:-1]``, event ``(data_dim,)``."""
        return dist.Normal(out, self.scale).to_event(1)


def likelihood_of(model: Any) -> Likelihood | None:
    """The likelihood object of a model; None where it names no registered one (a Pyro program).

    A neural model holds its object as ``model.observation``; a model with a
    fixed likelihood (pPCA, the mixture) names it in ``model.likelihood``.
    """
    for held in (getattr(model, "observation", None), getattr(model, "likelihood", None)):
        if isinstance(held, Likelihood):
            return held
    name = getattr(model, "likelihood", None)
    return get_likelihood(name) if isinstance(name, str) and name in LIKELIHOODS else None
