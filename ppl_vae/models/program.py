"""A user's Pyro functions ``model(x)`` and ``guide(x)`` as one trainable object.

Users of Pyro write a latent variable model as two plain functions that
register their networks with ``pyro.module`` (or ``pyro.param``) and keep
every local latent inside a plate over the data points. :class:`PyroProgram`
holds such a pair so that :func:`~ppl_vae.training.train` can train it like
the library's own models: it finds the parameters by tracing the functions
once (as ``pyro.infer.SVI`` does), exposes them as ``parameters()`` and
``state_dict()`` (so checkpoints and resuming work), and gives the functions
the library's calling convention ``model(x, num_data=None, beta=1.0)``:
``num_data`` scales every site by ``num_data / batch`` and ``beta`` weights the
latent sites, by effect handlers, without the functions knowing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from torch import nn

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.models.base import ParameterPlacement


class LatentScale(Messenger):
    """Multiply the log-density of every latent (not observed) sample site by ``beta``."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = beta

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = self.beta * msg["scale"]


def _scaled(x: torch.Tensor, num_data: int | None, beta: float) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    if num_data is not None and num_data != x.shape[0]:
        if num_data < x.shape[0]:
            raise DataError(f"num_data ({num_data}) is smaller than the batch ({x.shape[0]})")
        stack.enter_context(poutine.scale(scale=num_data / x.shape[0]))
    if beta != 1.0:
        stack.enter_context(LatentScale(beta))
    return stack


def _refresh_stale_entries(programs: list[Callable[..., Any]], x: torch.Tensor) -> list[str]:
    """Trace the programs' parameters; drop store entries that hide a module's own tensors.

    ``pyro.module(name, net)`` keeps the first tensor ever stored under a name,
    so a network built later under the same name would silently not train.
    Each ``pyro.param`` site records the tensor the program offered (its
    ``args``) next to the one the store returned; where they differ and the
    offered one is a module's ``nn.Parameter``, the stale entry is removed.

    Returns
    -------
    list of str
        The parameter names the programs use, in order of first use.
    """
    store = pyro.get_param_store()
    names: list[str] = []
    for attempt in range(2):
        stale = False
        names = []
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []), \
                pyro.validation_enabled(False):
            for program in programs:
                trace = poutine.trace(program, param_only=True).get_trace(x)
                for name, site in trace.nodes.items():
                    if site["type"] != "param":
                        continue
                    offered = site["args"][1] if len(site["args"]) > 1 else None
                    if isinstance(offered, nn.Parameter) and offered is not site["value"]:
                        del store[name]
                        stale = True
                    elif name not in names:
                        names.append(name)
        if not stale:
            return names
    return names


class PyroProgram(ParameterPlacement, nn.Module):
    """Two Pyro functions, ``model(x)`` and ``guide(x)``, as a model the library can train.

    Parameters
    ----------
    model, guide : callable
        Pyro programs taking the data ``x`` (shape (batch, ...)) as their only
        argument, with every sample site inside a plate over the rows of ``x``
        and the data observed (``obs=x``). Networks are registered with
        ``pyro.module`` or parameters created with ``pyro.param``.
    x : Tensor, shape (batch, ...)
        Example data, used once to find the parameters (two rows suffice).

    Examples
    --------
    >>> program = PyroProgram(model, guide, data.train_x[:2])   # doctest: +SKIP
    >>> train(program, data.train_x)                            # doctest: +SKIP
    """

    def __init__(self, model: Callable[..., Any], guide: Callable[..., Any], x: torch.Tensor) -> None:
        super().__init__()
        if not (callable(model) and callable(guide)):
            raise ConfigError("PyroProgram needs two callables, model(x) and guide(x)")
        self.model_fn, self.guide_fn = model, guide
        self.data_dim = int(x[0].numel())
        self.pyro_name = f"{getattr(model, '__module__', '')}:{getattr(model, '__qualname__', 'model')}"
        self.params = nn.ParameterDict()
        self.refresh(x[:2])

    def refresh(self, x: torch.Tensor) -> None:
        """Find the programs' parameters again (after the store changed under them)."""
        names = _refresh_stale_entries([self.model_fn, self.guide_fn], x)
        store = pyro.get_param_store()
        if not names:
            raise ConfigError("the model and guide register no parameters (pyro.module or "
                              "pyro.param); there is nothing to train")
        self.param_names = names
        # The unconstrained tensors are what Pyro's optimizers (and this object's) update.
        self.params = nn.ParameterDict({
            _key(name): store._params[name] if isinstance(store._params[name], nn.Parameter)
            else nn.Parameter(store._params[name].detach()) for name in names})
        for name in names:
            param = self.params[_key(name)]
            if store._params[name] is not param:  # a plain tensor in the store: point it at ours
                store._params[name] = param

    def config(self) -> dict[str, Any]:
        """The functions are code, not settings: nothing to store (checkpoints keep the parameters)."""
        return {}

    def sync_param_store(self) -> None:
        """Point Pyro's parameter store at this object's tensors."""
        store = pyro.get_param_store()
        for name in self.param_names:
            param = self.params[_key(name)]
            if name in store and store._params[name] is not param:
                store._params[name] = param

    def model(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> Any:
        """The user's model, every site scaled by ``num_data / batch``, latents weighted by ``beta``."""
        with _scaled(x, num_data, beta):
            return self.model_fn(x)

    def guide(self, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0) -> Any:
        """The user's guide with the same scaling as :meth:`model`."""
        with _scaled(x, num_data, beta):
            return self.guide_fn(x)


def _key(name: str) -> str:
    return name.replace(".", "__").replace("$$$", "::")
