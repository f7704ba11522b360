"""A model compiled once: its programs, their structure, the fast path and its densities.

NumPyro's ``initialize_model`` reads a model once and hands every kernel one
``ModelInfo``; :func:`compile_program` does the same for ppl_vae. It pairs the
model and guide programs (:func:`~ppl_vae.inference.program.program_pair`),
traces them once (:func:`~ppl_vae.inference.program.inspect_program`), asks
once whether the transcribed path applies
(:func:`~ppl_vae.inference.direct.has_direct_elbo`), and returns a
:class:`Program` whose methods are the densities every algorithm needs:
``log_joint``, ``log_weights``, ``elbo_loss`` and ``potential``. Every entry
point (``train``, ``elbo``, ``iwae``, ``naive_prior``, ``sample_posterior``,
the local fits, AIS, ``compare_posteriors``) takes a :class:`Program` or a raw
model and compiles it once, so a comparison that runs all of them reads the
program once instead of once per method, and no per-epoch or per-step code
re-derives what a trace already said.

The potential is free of side effects: a model object is sampled through a
frozen copy, and the networks a plain function closes over take no gradient
while it runs and get their ``requires_grad`` back after; torch's thread
count is the driver loops' business (:mod:`ppl_vae.threads`), not the density's.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.inference import direct as transcribed
from ppl_vae.inference.program import (
    NOT_BROADCASTING,
    LatentSite,
    ProgramStructure,
    check_observed_support,
    inspect_program,
    latent_moments,
    program_log_joint,
    program_log_prior_and_joint,
    program_log_terms,
    program_pair,
    refuse_scaled,
    to_constrained,
    unflatten_latents,
)
from ppl_vae.models.base import ProbabilisticModel, check_points

#: ELBO estimators by name: ``trace`` estimates the KL term by Monte Carlo,
#: ``meanfield`` uses the closed-form KL where one exists.
ELBO_ESTIMATORS = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO}

#: How the loss is computed: ``auto`` = ``direct`` where the model allows it, else ``pyro``.
ENGINES = ("auto", "direct", "pyro")

#: What training maximizes: the ELBO, or the importance-weighted bound with K = num_particles.
OBJECTIVES = ("elbo", "iwae")

#: ``loss(model, x, num_data=..., beta=...)`` -> scalar tensor, the negative objective.
Loss = Callable[..., torch.Tensor]


# ----- the data and the guide as the per-point methods take them --------------------------------

def check_data(model: Any, x: Any, where: str) -> None:
    """Check data points before scoring: the model's own checks, or generic ones for a function.

    Raises
    ------
    DataError
        If ``x`` is not a non-empty floating-point tensor with finite values
        (plus shape, device and range checks for a ppl_vae model).
    """
    if isinstance(model, ProbabilisticModel):
        check_points(model, x, where)
        return
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] == 0:
        raise DataError(f"{where} expects a non-empty torch.Tensor of data points (rows); got "
                        f"{type(x).__name__ if not isinstance(x, torch.Tensor) else tuple(x.shape)}")
    if not x.is_floating_point():
        raise DataError(f"{where} expects a floating-point tensor; got {x.dtype}. Convert it with x.float()")
    if x.is_meta:
        raise DataError(f"{where}: the data are on the meta device (shapes without values); "
                        "load real values, e.g. x.to('cpu') after filling them")
    if not bool(torch.isfinite(x).all()):
        raise DataError(f"{where}: the data hold NaN or infinite values; remove or impute them")


def row_guide(guide: Callable[..., None] | None, rows: slice) -> Callable[..., None] | None:
    """The guide for some rows: a fitted per-point guide's ``restrict(rows)``, else itself."""
    restrict = getattr(guide, "restrict", None)
    return restrict(rows) if restrict is not None else guide


def _guide_object(guide: Any) -> Any:
    """A fitted per-point posterior passed as its ``guide`` method, as the object itself."""
    owner = getattr(guide, "__self__", None)
    return owner if hasattr(owner, "restrict") else guide


def _guide_callable(guide: Any) -> Callable[..., None] | None:
    """A guide argument as a program: a per-point guide object's ``guide`` method, or itself."""
    if guide is None or not hasattr(guide, "restrict"):
        return guide
    return guide.guide


# ----- networks held fixed ------------------------------------------------------------------------

def frozen_model(model: Any, like: torch.Tensor) -> Any:
    """A copy of a model object whose weights take no gradient; a plain function as it is."""
    if not isinstance(model, torch.nn.Module):
        return model
    return copy.deepcopy(model).to(like.device, like.dtype).requires_grad_(False).eval()


def networks_of(program: Any, depth: int = 3) -> tuple[torch.nn.Module, ...]:
    """The ``nn.Module`` objects a plain function reaches: its closure, defaults and globals.

    Followed through ``functools.partial``, bound methods and functions of the
    same kind, ``depth`` levels deep; a model object is its own network.
    """
    found: dict[int, torch.nn.Module] = {}

    def visit(value: Any, level: int) -> None:
        if isinstance(value, torch.nn.Module):
            found.setdefault(id(value), value)
            return
        if level == 0:
            return
        if isinstance(value, functools.partial):
            for inner in (value.func, *value.args, *value.keywords.values()):
                visit(inner, level - 1)
        elif inspect.ismethod(value):
            visit(value.__self__, level - 1)
            visit(value.__func__, level - 1)
        elif inspect.isfunction(value):
            for cell in value.__closure__ or ():
                with contextlib.suppress(ValueError):  # an empty cell
                    visit(cell.cell_contents, level - 1)
            for inner in value.__defaults__ or ():
                visit(inner, level - 1)
            for name in value.__code__.co_names:
                inner = value.__globals__.get(name)
                if isinstance(inner, torch.nn.Module) or inspect.isfunction(inner):
                    visit(inner, level - 1)
        elif isinstance(value, (list, tuple)):
            for inner in value:
                visit(inner, level - 1)

    visit(program, depth)
    return tuple(found.values())


@contextlib.contextmanager
def no_weight_gradients(networks: tuple[torch.nn.Module, ...]) -> Iterator[None]:
    """Run with the networks' parameters taking no gradient; each gets its ``requires_grad`` back.

    ``pyro.module`` leaves such parameters out of the parameter store, with a
    warning meant for training; here that is the point, so it is not shown.
    """
    if not networks:
        yield
        return
    parameters = [p for network in networks for p in network.parameters()]
    wanted = [p.requires_grad for p in parameters]
    try:
        for parameter in parameters:
            parameter.requires_grad_(False)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not registered in the param store because "
                                    "requires_grad=False")
            yield
    finally:
        for parameter, before in zip(parameters, wanted):
            parameter.requires_grad_(before)


@dataclass(frozen=True)
class Target:
    """The posterior to sample, p(z | x) on the unconstrained latents, with the networks held fixed.

    Picklable where the program is (a model object is), so the Pyro NUTS
    schemes can send it to other processes.

    Attributes
    ----------
    model : object or callable
        A frozen copy of a model object (weights without gradients), or the
        user's model function.
    program : callable
        Its model program, paired once.
    structure : ProgramStructure
    direct : bool
        Evaluate the transcription (:mod:`ppl_vae.inference.direct`).
    networks : tuple of nn.Module
        The networks a plain function closes over, held fixed while it runs.
    """

    model: Any
    program: Callable[..., None]
    structure: ProgramStructure
    direct: bool
    networks: tuple[torch.nn.Module, ...] = ()

    def log_density(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``log p(x, T(u)) + log |dT/du|`` per row for unconstrained latents ``u`` of shape (rows, dim)."""
        # No argument validation per leapfrog step: the data were checked once, and a check is a
        # device-to-host sync that would stall a GPU at every step.
        # Inside a compiled sampler (which switched validation off) the switches cannot be traced;
        # a direct model is a frozen copy, with no networks to switch.
        if torch.compiler.is_compiling() and self.direct:
            return transcribed.log_joint(self.model, x, u)
        with pyro.validation_enabled(False), no_weight_gradients(self.networks):
            if self.direct:
                return transcribed.log_joint(self.model, x, u)
            values, log_det = to_constrained(u, self.structure)
            return program_log_joint(self.program, x, values, self.structure) + log_det

    def log_prior_and_joint(self, x: torch.Tensor, u: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """``log p(T(u))`` and ``log p(x, T(u))``, each ``+ log |dT/du|``, per row (the path's ends)."""
        with pyro.validation_enabled(False), no_weight_gradients(self.networks):
            if self.direct:
                return transcribed.log_prior_and_joint(self.model, x, u)
            values, log_det = to_constrained(u, self.structure)
            log_prior, log_joint = program_log_prior_and_joint(self.program, x, values, self.structure)
            return log_prior + log_det, log_joint + log_det


# ----- the compiled program -----------------------------------------------------------------------

@dataclass(frozen=True)
class Program:
    """A model read once: its programs, their structure, whether the fast path applies, its densities.

    Made by :func:`compile_program`; every inference entry point accepts one
    in place of a model.

    Attributes
    ----------
    source : object or callable
        What was compiled: a model object, or a model function.
    model : callable
        The model program ``model(x)``.
    guide : object or callable or None
        The proposal: a guide program, a fitted per-point posterior (with
        ``restrict(rows)``), or None (a function without a guide).
    structure : ProgramStructure or None
        What one trace of the programs showed (:func:`inspect_program`,
        required guide sites and proper priors checked per use by
        :meth:`require`); None where the programs are not per point (then
        ``problem`` says why, and only Pyro's ELBO applies).
    direct : bool
        The transcribed path (:mod:`ppl_vae.inference.direct`) computes what
        the programs compute (:func:`~ppl_vae.inference.direct.has_direct_elbo`).
    data : Tensor
        The data the programs were traced with.
    problem : ConfigError or None
        Why the programs are not per point.
    """

    source: Any
    model: Callable[..., None]
    guide: Any
    structure: ProgramStructure | None
    direct: bool
    data: torch.Tensor
    problem: ConfigError | None = None
    traced_guide: Callable[..., None] | None = field(default=None, repr=False)
    # Data already checked against this program (by identity): a training run scores the same
    # test set every epoch, a comparison the same points with every method.
    _checked: list = field(default_factory=list, repr=False, compare=False)

    @property
    def guide_program(self) -> Callable[..., None] | None:
        """The guide as a program (a per-point posterior's ``guide`` method)."""
        return _guide_callable(self.guide)

    def with_guide(self, guide: Any) -> Program:
        """The same model with another proposal, without tracing again.

        A fitted per-point posterior (:class:`~ppl_vae.inference.local_vi.PointPosterior`)
        samples exactly the continuous sites of the structure it was fitted
        with, so the structure follows: discrete sites are summed out where the
        model marks them for enumeration. Any other guide is traced with the model.
        """
        guide = _guide_object(guide)
        if guide is None or guide is self.guide:
            return self
        fitted = getattr(guide, "structure", None)
        # A discrete site the old guide sampled was traced with the guide's infer dict (replay
        # replaces the model's), so whether the model marks it for enumeration is unknown.
        replayed = any(site.discrete and site.name in self.structure.guide_sites
                       for site in self.structure.latent) if self.structure is not None else True
        if replayed or fitted is None or not callable(getattr(guide, "sites", None)) \
                or _sites(fitted) != _sites(self.structure):
            return _compile(self.source, self.data, guide)
        latent = tuple(replace(site, enumerated=site.marked_enumerated)
                       if site.discrete or site.enumerated else site for site in self.structure.latent)
        sites = guide.sites()
        rigid = () if guide.distribution(slice(0, 1)).has_rsample else sites[:1]
        structure = replace(self.structure, latent=latent, guide_sites=sites, not_reparameterized=rigid)
        return replace(self, guide=guide, structure=structure, direct=False,
                       traced_guide=row_guide(guide, slice(0, 2)), _checked=list(self._checked))

    def require(self, x: torch.Tensor, where: str, *, need_guide: bool = False,
                proper_prior: bool = True, per_point: bool = True) -> ProgramStructure:
        """The structure, checked for one use: the errors :func:`inspect_program` raises with these flags.

        With ``per_point``: no site scaled by ``poutine.scale`` and, for a
        program that is not a ppl_vae model, the data inside the observed
        sites' supports (once per data tensor).

        Raises
        ------
        ConfigError
            A site the guide must sample and does not, an improper prior, a
            program that is not per point, a scaled site.
        DataError
            An observed value outside its site's support.
        """
        if self.problem is not None:
            if need_guide or proper_prior:  # the error a stricter trace meets first
                inspect_program(self.model, self.traced_guide, self.data, need_guide=need_guide,
                                proper_prior=proper_prior)
            raise self.problem
        for site in self.structure.latent:
            _check_site(site, self.structure, need_guide, proper_prior)
        if not self.structure.broadcasts and not self._seen(None, "warned"):
            # warned here, once the program passed its checks, not at compile time
            warnings.warn(NOT_BROADCASTING, stacklevel=3)
            self._checked.append(("warned", None))
        if per_point:
            refuse_scaled(self.structure, where)
            if not isinstance(self.source, ProbabilisticModel) and not self._seen(x, "support"):
                check_observed_support(self.model, x, where)
                self._checked.append(("support", x))
        return self.structure

    def check(self, x: torch.Tensor, where: str) -> None:
        """:func:`check_data` for this program's model, once per data tensor."""
        if not self._seen(x, "data"):
            check_data(self.source, x, where)
            self._checked.append(("data", x))

    def _seen(self, x: torch.Tensor, kind: str) -> bool:
        return any(what == kind and seen is x for what, seen in self._checked)

    # ----- the densities --------------------------------------------------------------------------

    def log_joint(self, x: torch.Tensor, z: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """log p(x, z) per point, discrete latents summed out (see :func:`~ppl_vae.inference.log_joint`).

        Returns
        -------
        Tensor, shape (..., num_points)
        """
        if not isinstance(z, dict) and self.direct:
            return transcribed.log_joint(self.source, x, z)
        structure = self.require(x, "log_joint", per_point=False)
        values = z if isinstance(z, dict) else unflatten_latents(z, structure)
        first = values[structure.continuous[0].name]
        lead = first.shape[:first.dim() - len(structure.continuous[0].event_shape) - 1]
        rows = x.repeat(lead.numel(), *([1] * (x.dim() - 1)))
        flat = {name: value.reshape(-1, *value.shape[len(lead) + 1:]) for name, value in values.items()}
        return program_log_joint(self.model, rows, flat, structure).reshape(*lead, x.shape[0])

    def log_weights(self, x: torch.Tensor, num_samples: int, *, rows: slice = slice(None),
                    prior: bool = False, posterior: Any = None) -> torch.Tensor:
        """``log p(x, z_k) - log q(z_k | x)`` per point, K draws from the guide (or the prior).

        Parameters
        ----------
        x : Tensor, shape (num_points, data_dim)
            The points ``rows`` of the data.
        num_samples : int
        rows : slice
            Which of the fitted points ``x`` is, for a per-point posterior.
        prior : bool
            Draw from the prior (naive Monte Carlo) instead of the guide.
        posterior : Distribution, optional
            On the direct path, ``guide_distribution(x)`` when the caller has it.

        Returns
        -------
        Tensor, shape (num_samples, num_points)
        """
        if self.direct and not prior:
            return transcribed.log_weights(self.source, x, num_samples, posterior)
        guide = None if prior else row_guide(self.guide, rows)
        with torch.no_grad(), pyro.validation_enabled(False):
            return program_log_terms(self.model, guide, x, num_samples, self.structure,
                                     scaled=False).log_weights

    def elbo_loss(self, estimator: str = "meanfield", num_particles: int = 1, engine: str = "auto",
                  objective: str = "elbo") -> Loss:
        """The training loss: the transcription when it applies, else from the programs.

        Parameters
        ----------
        estimator : {"meanfield", "trace"}
            For the ELBO: closed-form or Monte Carlo KL (programs with enumerated
            discrete latents use Pyro's ``TraceEnum_ELBO``).
        num_particles : int
            Samples per point: particles of the ELBO, or K of the IWAE bound.
        engine : {"auto", "direct", "pyro"}
            ``direct`` requires ``direct`` to be True.
        objective : {"elbo", "iwae"}

        Returns
        -------
        callable
            ``loss(model, x, num_data=..., beta=...)`` -> the negative objective.
        """
        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
        if objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if engine == "direct" and not self.direct:
            raise ConfigError(
                f"engine='direct' needs the model() and guide() programs of VAE or LinearGaussian (one "
                f"latent site 'z' from guide_distribution, prior and decode); a "
                f"{type(self.source).__name__}, or a subclass that rewrites model() or guide(), trains "
                "with engine='pyro' or 'auto'"
            )
        use_direct = self.direct and engine != "pyro"
        if objective == "iwae" and use_direct:
            return functools.partial(transcribed.direct_iwae_loss, num_particles=num_particles)
        if use_direct:
            return functools.partial(transcribed.direct_elbo_loss, estimator=estimator,
                                     num_particles=num_particles)
        if objective == "iwae":
            structure = self.require(self.data, "train", need_guide=True, per_point=False)
            if not structure.reparameterized:
                raise ConfigError(
                    "the IWAE objective needs reparameterized guide sites (rsample); the guide samples "
                    f"{list(structure.not_reparameterized)} without, so train it with objective='elbo'"
                )
            return functools.partial(program_iwae_loss, num_particles=num_particles, structure=structure)
        try:  # an improper prior (the plain autoencoder) still has an ELBO, up to a constant
            structure = self.require(self.data, "train", need_guide=True, proper_prior=False,
                                     per_point=False)
        except ConfigError:  # not per-point (e.g. a global factor): Pyro's ELBO still applies
            structure = None
        if structure is not None and structure.enumerated:
            elbo = TraceEnum_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                                  max_plate_nesting=structure.max_plate_nesting)
        else:
            if estimator == "meanfield" and structure is not None and not structure.guide_in_model_order:
                # The closed-form KL of each site against its prior given the guide's draws of the
                # others is exact only when the guide draws the sites in the model's order.
                estimator = "trace"
            elbo = ELBO_ESTIMATORS[estimator](num_particles=num_particles,
                                              vectorize_particles=num_particles > 1)
        pyro_loss = elbo.differentiable_loss

        def loss(model: Any, x: torch.Tensor, **kwargs) -> torch.Tensor:
            return pyro_loss(model.model, model.guide, x, **kwargs)

        return loss

    @functools.cached_property
    def target(self) -> Target:
        """The posterior NUTS and AIS sample, with the networks held fixed (built on first use)."""
        frozen = frozen_model(self.source, self.data)
        # A copy freezes a model object's own networks; the functions of a PyroProgram or a
        # plain function still reach the caller's, which are held fixed while they run.
        networks = () if isinstance(self.source, ProbabilisticModel) else networks_of(
            (self.source, getattr(self.source, "model_fn", None), self.model), depth=4)
        program, _ = program_pair(frozen)
        return Target(frozen, program, self.structure, self.direct, networks)

    def potential(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``-log p(x, T(u)) - log |dT/du|`` per row, ``u`` of shape (rows, latent_numel), unconstrained.

        No side effects: the networks take no gradient (a frozen copy of a
        model object; those of a plain function are switched off while it
        runs and restored), nothing touches torch's thread count.
        """
        return -self.target.log_density(x, u)

    @property
    def _has_encoder(self) -> bool:
        """A library model on the direct path whose encoder gives q(z | x) in closed form."""
        return self.direct and callable(getattr(self.source, "encode", None))

    @property
    def has_proposal(self) -> bool:
        """Whether an encoder (on the direct path) or a guide says where each point's posterior lies."""
        return self._has_encoder or self.guide_program is not None

    def starting_region(self, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-point centre and spread of chains' starting points, in unconstrained space.

        The encoder's mean and standard deviation where the model has one and the
        direct path applies; otherwise those of draws from the guide (or the
        prior), see :func:`~ppl_vae.inference.program.latent_moments`.

        Returns
        -------
        loc, scale : Tensor, each shape (num_points, latent_numel)
        """
        if self._has_encoder:
            with torch.no_grad():
                return self.source.encode(x)
        return latent_moments(self.model, self.guide_program, x, self.structure, seed)


def _sites(structure: ProgramStructure) -> list[tuple[str, torch.Size]]:
    return [(site.name, site.event_shape) for site in structure.continuous]


def _check_site(site: LatentSite, structure: ProgramStructure, need_guide: bool,
                proper_prior: bool) -> None:
    """The per-site refusals of :func:`inspect_program` under stricter flags, in its words."""
    if proper_prior and site.improper:
        raise ConfigError(
            f"site {site.name!r} has an improper prior ({site.improper}): the model has no "
            "normalized p(z), so log p(x) and its bounds do not exist; compare reconstructions "
            "instead "
            "(elbo_terms(...)['reconstruction'])"
        )
    if need_guide and not site.enumerated and site.name not in structure.guide_sites:
        fix = ("mark it for exact enumeration with infer={'enumerate': 'parallel'}"
               if site.discrete else "sample it in the guide too")
        raise ConfigError(f"the guide does not sample the model's latent site {site.name!r}; {fix}")


def program_iwae_loss(model: Any, x: torch.Tensor, num_data: int | None = None, beta: float = 1.0, *,
                      num_particles: int, structure: ProgramStructure) -> torch.Tensor:
    """The negative importance-weighted bound (Burda et al., 2016) from the program's log-weights.

    K = ``num_particles`` joint draws of every latent site per point from the
    guide, reparameterized, give ``log (1/K) sum_k p(x, z_k) / q(z_k | x)``
    per point (enumerated discrete latents summed out); its gradient is the
    IWAE estimator. ``beta`` weights the latent sites' log-densities, as in
    the ELBO; the sum over the batch is scaled by ``num_data / batch``.

    Returns
    -------
    Tensor, shape ()
    """
    scale = 1.0 if num_data is None else num_data / x.shape[0]
    terms = program_log_terms(model.model, model.guide, x, num_particles, structure, {"beta": beta})
    return -scale * (terms.log_weights.logsumexp(0) - math.log(num_particles)).sum()


def _compile(model: Any, x: torch.Tensor, guide: Any = None) -> Program:
    """:func:`compile_program` without checking the data."""
    guide = _guide_object(guide)
    program, own_guide = program_pair(model, _guide_callable(guide))
    proposal = guide if guide is not None else own_guide
    # inspect_program traces the first two rows; a per-point guide restricted to them
    traced = row_guide(guide, slice(0, 2)) if hasattr(guide, "restrict") else own_guide
    try:
        structure, problem = inspect_program(program, traced, x, need_guide=False,
                                             proper_prior=False, warn=False), None
    except ConfigError as error:
        structure, problem = None, error
    direct = guide is None and transcribed.has_direct_elbo(model, x)
    return Program(model, program, proposal, structure, direct, x, problem, traced)


def compile_program(model: Any, x: torch.Tensor, guide: Any = None, *, check: bool = True) -> Program:
    """Read a model once: pair its programs, trace them, decide the fast path.

    Parameters
    ----------
    model : ProbabilisticModel or callable or Program
        A model object, or a Pyro program ``model(x)`` whose latent sites lie
        in a plate over the rows of ``x``; a :class:`Program` is returned as
        it is (with ``guide``, for that proposal).
    x : Tensor, shape (num_points, data_dim)
        Data to trace with (the first two rows) and to check.
    guide : callable, optional
        The guide (default: the model object's own); a fitted per-point
        posterior for the points ``x``.
    check : bool
        Check ``x`` against the model (callers that checked it already pass False).

    Returns
    -------
    Program

    Raises
    ------
    DataError
        If ``x`` does not fit the model. Problems of the programs are raised
        by the methods that need what is missing (:meth:`Program.require`).

    Examples
    --------
    >>> import torch
    >>> from ppl_vae import VAE, compile_program, elbo, iwae
    >>> vae = VAE(data_dim=64, latent_dim=2, hidden_dims=(32,))
    >>> x = torch.bernoulli(torch.full((10, 64), 0.3))
    >>> program = compile_program(vae, x)     # traced once, here
    >>> program.direct                         # the VAE's transcription applies
    True
    >>> bounds = [estimator(program, x, 50) for estimator in (elbo, iwae)]   # no tracing
    >>> bounds[0].per_point.shape
    torch.Size([10])
    """
    return resolve(model, x, guide, "compile_program" if check else None)


def resolve(model: Any, x: torch.Tensor, guide: Any, where: str | None) -> Program:
    """An entry point's program: a :class:`Program` as given (for ``guide``), or a model compiled.

    The data are checked (once per tensor for a given Program), with ``where``
    naming the entry point in errors; not at all for ``where=None``.
    """
    if isinstance(model, Program):
        program = model.with_guide(guide) if guide is not None else model
        if where is not None:
            program.check(x, where)
        return program
    if where is not None:
        check_data(model, x, where)
    program = _compile(model, x, guide)
    if where is not None:
        program._checked.append(("data", x))
    return program
