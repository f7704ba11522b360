"""What every ppl_vae model shares: input checks, the data plate, Pyro registration.

A model is a :class:`torch.nn.Module` that owns its networks and exposes two
Pyro programs, ``model(x)`` and ``guide(x)``, with a latent site ``"z"`` and an
observed site ``"x"`` inside a plate named ``"data"``. Any Pyro inference
algorithm can condition, replay or trace those sites by name.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pyro
import pyro.distributions
import torch
from pyro import poutine
from torch import nn

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.models.likelihoods import Likelihood, get_likelihood, likelihood_of
from ppl_vae.validation import check_positive_int


def check_batch(x: Any, data_dim: int, where: str) -> None:
    """Check the type, shape and dtype of a batch; cheap, never synchronizes a device.

    Parameters
    ----------
    x : Tensor, shape (batch, data_dim)
        Candidate batch.
    data_dim : int
        Number of features the model expects.
    where : str
        Name of the calling function, used in the message.

    Raises
    ------
    DataError
        If ``x`` is not a floating-point tensor of shape ``(batch, data_dim)``.
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(
            f"{where} expects a torch.Tensor of shape (batch, {data_dim}); got "
            f"{type(x).__name__}. Convert it with torch.as_tensor(x, dtype=torch.float32)."
        )
    if x.dim() != 2 or x.shape[-1] != data_dim:
        raise DataError(
            f"{where} expects shape (batch, {data_dim}); got {tuple(x.shape)}. "
            "Flatten images with x.reshape(len(x), -1), or build the model with "
            "the data's dimension."
        )
    if x.shape[0] == 0:
        raise DataError(f"{where} got an empty batch; pass at least one data point.")
    if not x.is_floating_point():
        raise DataError(
            f"{where} expects a floating-point tensor; got {x.dtype}. "
            "Convert it with x.float() (uint8 images: x.float() / 255)."
        )


def check_values(x: torch.Tensor, likelihood: str | Likelihood | None) -> None:
    """Check that data values suit the likelihood (synchronizes; call once per data set).

    Parameters
    ----------
    x : Tensor, shape (batch, data_dim)
    likelihood : str, Likelihood or None
        A name in :data:`~ppl_vae.models.likelihoods.LIKELIHOODS` or the
        object; None checks only that the values are finite.

    Raises
    ------
    DataError
        On NaN or infinite values, or on values the likelihood refuses (see
        :meth:`~ppl_vae.models.likelihoods.Likelihood.check`).
    """
    (Likelihood() if likelihood is None else get_likelihood(likelihood)).check(x)


def check_device(x: torch.Tensor, module: nn.Module, name: str) -> None:
    """Raise unless ``x`` has the device and floating dtype of the module's parameters.

    Nothing is converted: float64 data would lose precision in a float32 model
    and half data would be computed at another precision than the user chose.

    Raises
    ------
    DataError
        If ``x`` is a meta tensor, lies on another device, or is floating
        point of another dtype than the parameters (each a problem of the data
        handed in, not of a setting).
    """
    parameter = next(module.parameters())
    device = parameter.device
    if x.device.type == "meta":
        raise DataError(
            f"{name} got a meta tensor (a shape without values); create the data with values on "
            f"{device}, e.g. torch.as_tensor(values, device={str(device)!r})"
        )
    if x.is_floating_point() and x.dtype != parameter.dtype:
        raise DataError(
            f"{name} got {x.dtype} data but the model's parameters are {parameter.dtype}; convert "
            f"the data with x.to({parameter.dtype}), or the model with model.to({x.dtype})"
        )
    if x.device != device:
        raise DataError(
            f"{name} is on {x.device} but the model is on {device}; move one, e.g. "
            f"{name}.to(model.device) or model.to({name}.device)"
        )


def check_points(model: "ProbabilisticModel", x: Any, where: str) -> None:
    """Everything a batch of data points must satisfy before a model scores it.

    Shape, dtype and device (see :func:`check_batch`, :func:`check_device`) and
    values (see :func:`check_values`, which synchronizes: call once per call of
    an evaluation function, not per minibatch).
    """
    check_batch(x, model.data_dim, where)
    check_device(x, model, where)
    check_values(x, likelihood_of(model))


def check_has_prior(model: "ProbabilisticModel", where: str) -> None:
    """Raise :class:`ConfigError` for a model whose p(x) is not defined (no normalized prior)."""
    if not model.has_prior:
        raise ConfigError(
            f"{where} needs a normalized prior p(z), and a {type(model).__name__} has none, so "
            "log p(x) and its bounds do not exist; compare reconstructions instead, "
            "e.g. elbo_terms(model, x)['reconstruction']"
        )


def data_plate(x: torch.Tensor, num_data: int | None) -> pyro.plate:
    """The ``"data"`` plate over a batch, scaled to ``num_data`` points when given.

    With ``num_data = N`` and a batch of ``B`` rows every log-density inside the
    plate is multiplied by ``N / B``, so a minibatch estimates the full data
    set's ELBO without bias.
    """
    batch = x.shape[0]
    if num_data is None or num_data == batch:
        return pyro.plate("data", batch, device=x.device)
    if num_data < batch:
        raise DataError(f"num_data ({num_data}) is smaller than the batch ({batch})")
    return pyro.plate("data", num_data, subsample=torch.arange(batch, device=x.device))


def transcribed(program: Any) -> Any:
    """Mark a model or guide method as one that the direct ELBO transcribes.

    :func:`ppl_vae.inference.objectives.has_direct_elbo` takes the fast path
    only for programs so marked (a subclass that rewrites ``model()`` or
    ``guide()`` gets an unmarked method and is computed from its traces).
    """
    program.transcribed_by_direct_elbo = True
    return program


def latent_scale(beta: float) -> contextlib.AbstractContextManager:
    """Weight the latent site by ``beta`` (KL warm-up, beta-VAE); a no-op at 1."""
    if beta == 1.0:
        return contextlib.nullcontext()
    return pyro.poutine.scale(scale=beta)


def sync_param_store(prefix: str, module: nn.Module) -> None:
    """Make Pyro's parameter store point at ``module``'s own parameters.

    ``pyro.module`` keeps the first tensor it saw under a name, so a second model
    built with the same name would silently train the first one's stale
    weights under Pyro's optimizers. This drops such stale entries.
    """
    store = pyro.get_param_store()
    for name, param in module.named_parameters():
        key = f"{prefix}$$${name}"
        if key in store and store.get_param(key) is not param:
            del store[key]


class ParameterPlacement:
    """``device`` and ``dtype`` of a module: those of its first parameter."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


class ProbabilisticModel(ParameterPlacement, nn.Module):
    """Base class: Pyro registration, the rebuild dictionary, sampling and reconstruction."""

    #: Prefix of this model's entries in Pyro's parameter store.
    pyro_name: str
    data_dim: int
    latent_dim: int
    #: "real" for a continuous latent z, "discrete" for a component index.
    latent_support: str = "real"
    #: False for models without a normalized prior p(z) (the plain autoencoder):
    #: they have no log p(x), so its estimators and NUTS refuse them.
    has_prior: bool = True
    #: The child modules of q(z | x), which the guide registers; every other child is the model's.
    guide_module_names: tuple[str, ...] = ("encoder",)

    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain types, stored in checkpoints."""
        raise NotImplementedError

    def generative_modules(self) -> dict[str, nn.Module]:
        """The child modules whose parameters the model program registers, by registry suffix.

        Every child module belongs to exactly one of the two programs: those
        named in :attr:`guide_module_names` to the guide, all others to the
        model. Defined here once, so no subclass's base order or forgotten
        override can leave a learned module (a Gaussian noise scale, say) out
        of Pyro's parameter store.
        """
        return {name: module for name, module in self.named_children()
                if name not in self.guide_module_names}

    def _register(self, suffix: str, module: nn.Module) -> None:
        # Another model built earlier under the same name would otherwise own these
        # entries, and Pyro's optimizers would train its tensors, not this model's.
        name = f"{self.pyro_name}.{suffix}"
        sync_param_store(name, module)
        pyro.module(name, module)

    def sync_param_store(self) -> None:
        """Point Pyro's parameter store at this instance's parameters (see :func:`sync_param_store`)."""
        for suffix, module in self.named_children():
            sync_param_store(f"{self.pyro_name}.{suffix}", module)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z | x), each of shape ``(batch, latent_dim)``."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> "pyro.distributions.TorchDistribution":
        """The likelihood p(x | z): event shape ``(data_dim,)``, batch shape ``z.shape[:-1]``."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, num_samples: int, mean: bool = True) -> torch.Tensor:
        """Ancestral sampling from the model program: z ~ p(z), then x ~ p(x | z).

        The program ``model`` itself is run with its observed site ``"x"``
        released (``poutine.uncondition``), so whatever prior and layers a
        subclass defines are the ones sampled.

        Parameters
        ----------
        num_samples : int
            Number of data points to generate.
        mean : bool
            Return the mean of p(x | z) (pixel probabilities for a Bernoulli
            likelihood), which is what pictures of generated digits show;
            otherwise a draw from p(x | z).

        Returns
        -------
        Tensor, shape (num_samples, data_dim)
        """
        check_positive_int(num_samples, "num_samples")
        placeholder = torch.zeros(num_samples, self.data_dim, device=self.device, dtype=self.dtype)
        with pyro.validation_enabled(False):
            trace = poutine.trace(poutine.uncondition(self.model)).get_trace(placeholder)
        site = trace.nodes["x"]
        return site["fn"].mean if mean else site["value"]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of p(x | z) at the posterior mean of q(z | x); shape ``(batch, data_dim)``."""
        loc, _ = self.encode(x)
        return self.decode(loc).mean


class GaussianLatentModel(ProbabilisticModel):
    """A model with prior z ~ N(0, I_latent), likelihood ``decode(z)`` and guide ``guide_distribution(x)``.

    The interface that :func:`ppl_vae.inference.objectives.direct_elbo_loss`
    transcribes: the one ``model`` program below samples ``"z"`` from
    :meth:`prior` and ``"x"`` from ``decode(z)``; a subclass (the VAE, pPCA)
    writes its ``guide`` program, sampling ``"z"`` from :meth:`guide_distribution`.
    """

    @transcribed
    def model(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> None:
        """Generative model p(z) p(x | z) with ``x`` observed.

        Parameters
        ----------
        x : Tensor, shape (batch, data_dim)
            Observed data.
        num_data : int, optional
            Size of the full data set when ``x`` is a minibatch; scales the
            log-density by ``num_data / batch``.
        beta : float
            Weight of the latent site (1 gives the ELBO; <1 during KL warm-up).
        """
        check_batch(x, self.data_dim, f"{type(self).__name__}.model")
        for suffix, module in self.generative_modules().items():
            self._register(suffix, module)
        with data_plate(x, num_data):
            with latent_scale(beta):
                z = pyro.sample("z", self.prior(x))
            pyro.sample("x", self.decode(z), obs=x)

    def prior(self, x: torch.Tensor) -> "pyro.distributions.TorchDistribution":
        """p(z) = N(0, I) for each row of ``x``: batch shape ``(batch,)``, event ``(latent_dim,)``."""
        return pyro.distributions.Normal(
            x.new_zeros(x.shape[0], self.latent_dim), x.new_ones(())
        ).to_event(1)

    def guide_distribution(self, x: torch.Tensor) -> "pyro.distributions.TorchDistribution":
        """q(z | x), the distribution the guide samples ``"z"`` from; batch shape ``(batch,)``."""
        raise NotImplementedError
