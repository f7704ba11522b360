"""Reading a model from its Pyro program: sites, per-point log-densities and potentials.

Every inference method of ppl_vae sees a model only through its two Pyro
programs, ``model(x)`` and ``guide(x)``, run under Pyro's effect handlers:

* :func:`inspect_program` traces both once on a couple of rows and finds the
  plate over the data points, the latent sites inside it (continuous ones the
  guide samples, discrete ones the model enumerates) and the observed sites;
  anything the per-point methods cannot handle is refused with one line naming
  the site and what is needed;
* :func:`program_log_terms` draws K samples of every latent site from the
  guide (or from the prior) in one vectorized pass, an extra plate at the left
  of all the program's plates, and returns per point

      log w_k = log sum_c p(x, z_k, c) - log q(z_k | x),

  with the enumerated discrete latents ``c`` summed out exactly;
* :func:`program_log_joint` is log sum_c p(x, z, c) per point for given values
  of the continuous latents: the potential of NUTS.

The library's own Gaussian-latent programs also have direct transcriptions
(:mod:`ppl_vae.inference.direct`); :func:`~ppl_vae.inference.direct.has_direct_elbo` decides
from the programs' behaviour, by tracing them, whether a model may use them, and
:func:`~ppl_vae.inference.compiled.compile_program` holds the answer with the structure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.transforms import biject_to
from pyro.distributions.util import scale_and_mask
from pyro.infer.enum import config_enumerate
from pyro.poutine.messenger import Messenger

from ppl_vae.errors import ConfigError, DataError

#: Names tried, in order, for the plate over the data points.
DATA_PLATE_NAMES = ("data",)
#: Name of the plate that vectorizes importance samples or chains.
PARTICLES = "_ppl_vae_particles"
_OWN_ERRORS = (ConfigError, DataError)


@dataclass(frozen=True)
class LatentSite:
    """A latent sample site of the model, per data point.

    Attributes
    ----------
    name : str
    event_shape : torch.Size
        Shape of one point's value (the data plate and any inner plates
        folded in), e.g. ``(latent_dim,)``.
    enumerated : bool
        A discrete site the model sums out exactly (``infer={"enumerate": "parallel"}``).
    support : Constraint
        The distribution's support; continuous sites are sampled by NUTS in
        the unconstrained space ``biject_to(support)``.
    enumerable : bool
        The distribution has a finite support that can be summed over.
    marked_enumerated : bool
        The model marks the site for enumeration, whether or not the guide
        samples it (a guide that does not sample it has it summed out).
    improper : str
        The name of the site's improper prior distribution, empty for a proper one.
    """

    name: str
    event_shape: torch.Size
    enumerated: bool
    support: Any
    enumerable: bool = False
    marked_enumerated: bool = field(default=False, repr=False, compare=False)
    improper: str = field(default="", repr=False, compare=False)

    @property
    def discrete(self) -> bool:
        return bool(self.support.is_discrete)

    @property
    def numel(self) -> int:
        """Number of values of one point's draw on its support."""
        return math.prod(self.event_shape)

    @property
    def free_shape(self) -> torch.Size:
        """Shape of one point's value in the unconstrained space, e.g. ``(k - 1,)`` for a k-simplex."""
        if is_real_support(self.support):
            return torch.Size(self.event_shape)
        try:
            transform = biject_to(self.support)
        except NotImplementedError:
            raise ConfigError(
                f"latent site {self.name!r} has the support {self.support}, which biject_to cannot "
                "map from real vectors, so NUTS and the per-point fits cannot sample it; elbo and "
                "iwae with a guide that samples it still apply"
            ) from None
        return torch.Size(transform.inverse_shape(self.event_shape))

    @property
    def free_numel(self) -> int:
        """Number of unconstrained coordinates of one point's draw (what NUTS samples)."""
        return math.prod(self.free_shape)


@dataclass(frozen=True)
class ProgramStructure:
    """What :func:`inspect_program` learns from one trace of the model and the guide.

    Attributes
    ----------
    data_plate : str
        Name of the plate over the data points.
    max_plate_nesting : int
        Number of plate dimensions the programs use (the data plate included).
    latent : tuple of LatentSite
        The model's latent sites, in program order.
    observed : tuple of str
        The model's observed sites.
    guide_sites : tuple of str
        Sites the guide samples (auxiliary ones included).
    not_reparameterized : tuple of str
        Guide sites whose distribution has no ``rsample``.
    scaled : tuple of (str, float)
        Sites whose log-density the program scales beyond what a subsampled
        plate implies (``poutine.scale``), with the scale (its largest value
        for a tensor of scales); per-point methods refuse them
        (:func:`refuse_scaled`).
    broadcasts : bool
        The programs run with an extra plate of samples at the left of their
        own plates; where they do not, samples are drawn one pass at a time.
    """

    data_plate: str
    max_plate_nesting: int
    latent: tuple[LatentSite, ...]
    observed: tuple[str, ...]
    guide_sites: tuple[str, ...]
    not_reparameterized: tuple[str, ...] = ()
    scaled: tuple[tuple[str, float], ...] = ()
    broadcasts: bool = True

    @property
    def reparameterized(self) -> bool:
        return not self.not_reparameterized

    @property
    def continuous(self) -> tuple[LatentSite, ...]:
        """The latent sites with a continuous support (sampled by the guide, or by NUTS)."""
        return tuple(site for site in self.latent if not site.enumerated and not site.discrete)

    @property
    def enumerated(self) -> tuple[LatentSite, ...]:
        return tuple(site for site in self.latent if site.enumerated)

    @property
    def latent_numel(self) -> int:
        """Number of unconstrained continuous latent values per point (the dimension NUTS samples)."""
        return sum(site.free_numel for site in self.continuous)

    @property
    def constrained_numel(self) -> int:
        """Number of continuous latent values per point on their supports (a k-simplex counts k)."""
        return sum(site.numel for site in self.continuous)

    @property
    def particle_dim(self) -> int:
        return -(self.max_plate_nesting + 1)

    @property
    def guide_in_model_order(self) -> bool:
        """Whether the guide draws the latent sites in the model's order.

        Pyro's sufficient condition for the closed-form KL of
        ``TraceMeanField_ELBO``: a guide that draws z1 given z2 where the model
        draws z2 given z1 breaks it.
        """
        model_order = [site.name for site in self.latent if site.name in self.guide_sites]
        return [name for name in self.guide_sites if name in model_order] == model_order


# A Pyro program as a function, model(x) or guide(x) (the compiled object is compiled.Program).
PyroFunction = Callable[..., Any]


def program_pair(model: Any, guide: PyroFunction | None = None) -> tuple[PyroFunction, PyroFunction | None]:
    """The ``(model, guide)`` functions of a ppl_vae model or of two user functions.

    Parameters
    ----------
    model : ProbabilisticModel or callable
        A model object with ``model`` and ``guide`` methods, or a Pyro program
        ``model(x)``.
    guide : callable, optional
        The guide; by default the model object's own ``guide``.
    """
    if callable(getattr(model, "model", None)):
        return model.model, guide if guide is not None else getattr(model, "guide", None)
    if callable(model):
        return model, guide
    raise ConfigError(
        f"expected a ppl_vae model or a Pyro program model(x); got {type(model).__name__}"
    )


def _is_subsample(site: dict) -> bool:
    return type(site["fn"]).__name__ == "_Subsample"


def _sample_sites(trace: poutine.Trace) -> Iterator[tuple[str, dict]]:
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not _is_subsample(site):
            yield name, site


def _call(program: PyroFunction, x: torch.Tensor, kwargs: dict[str, Any]) -> poutine.Trace:
    return poutine.trace(program).get_trace(x, **kwargs)


def _run(what: str, thunk: Callable[[], Any]) -> Any:
    """Run a program; turn the errors of a program that does not fit into one clear line."""
    try:
        return thunk()
    except _OWN_ERRORS:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError, KeyError, NotImplementedError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"{what} failed: {type(error).__name__}: {first}. ppl_vae runs the model and guide "
            "with an extra batch dimension at the left of all plates (for samples and chains); "
            "every site and network must broadcast over leading dimensions (use x.shape[-1], "
            "not x.view(-1, D); Linear layers broadcast)"
        ) from None


def _find_data_plate(site: dict, batch: int) -> str | None:
    frames = [f for f in site["cond_indep_stack"] if f.vectorized and f.name != PARTICLES
              and _plate_size(f, site) == batch]
    for frame in frames:
        if frame.name in DATA_PLATE_NAMES:
            return frame.name
    return frames[-1].name if frames else None


def _plate_size(frame: Any, site: dict) -> int:
    """A plate's size; that of the site's batch dimension for a plate without one (``pyro.plate("data")``)."""
    if frame.size != -1:
        return frame.size
    shape = site["fn"].batch_shape
    return shape[frame.dim] if len(shape) >= -frame.dim else -1


#: The warning for programs that do not broadcast over an extra leading dimension.
NOT_BROADCASTING = (
    "the model or guide does not run with an extra batch dimension at the left of all plates, "
    "so ppl_vae draws its samples one pass at a time (slower, the same estimates). To "
    "vectorize, make every site and network broadcast over leading dimensions (use "
    "x.shape[-1], not x.view(-1, D); torch.cat([x.expand(*y.shape[:-1], -1), y], -1) "
    "rather than torch.cat([x, y], -1))")


def inspect_program(model: PyroFunction, guide: PyroFunction | None, x: torch.Tensor,
                    kwargs: dict[str, Any] | None = None, *, need_guide: bool = True,
                    proper_prior: bool = True, warn: bool = True) -> ProgramStructure:
    """Trace the guide and the model once and check that the per-point methods apply.

    Parameters
    ----------
    model, guide : callable
        Pyro programs taking ``x`` (and ``kwargs``).
    x : Tensor, shape (num_points, ...)
        Data points; the first two rows are used.
    kwargs : dict, optional
        Further keyword arguments of both programs.
    need_guide : bool
        Require the guide to sample every continuous latent site.
    proper_prior : bool
        Refuse improper priors (whose log p(x) does not exist).
    warn : bool
        Warn (:data:`NOT_BROADCASTING`) when the programs do not broadcast; a
        caller that may still refuse the program warns later, itself.

    Returns
    -------
    ProgramStructure

    Raises
    ------
    ConfigError
        Naming the site and what is needed: no plate over the data points, a
        latent outside it (a global latent), a continuous latent the guide
        does not sample, a discrete latent neither sampled nor enumerated,
        an enumerated site inside a further plate, an improper prior.
    """
    kwargs = kwargs or {}
    rows = x[:2] if x.shape[0] > 2 else x
    batch = rows.shape[0]
    devices = [rows.device] if rows.device.type == "cuda" else []
    # Tracing draws random numbers; the caller's random stream must not notice.
    with torch.random.fork_rng(devices=devices), torch.no_grad(), pyro.validation_enabled(False), \
            untouched_param_store():
        guide_trace = (_run("running the guide", lambda: _call(guide, rows, kwargs))
                       if guide is not None else None)
        traced = poutine.replay(model, trace=guide_trace) if guide_trace is not None else model
        model_trace = _run("running the model", lambda: _call(traced, rows, kwargs))
    plates, latent, observed, nesting = set(), [], [], 1
    for name, site in _sample_sites(model_trace):
        plate = _find_data_plate(site, batch)
        if plate is None:
            raise ConfigError(
                f"site {name!r} is not inside a plate over the data points: put every sample "
                f'site of the model inside `with pyro.plate("data", len(x)):` (a latent outside '
                "it is global, and ppl_vae's per-point methods need local latents)"
            )
        plates.add(plate)
        frames = [f for f in site["cond_indep_stack"] if f.vectorized]
        nesting = max([nesting] + [-f.dim for f in frames])
        if site["is_observed"]:
            observed.append(name)
            continue
        fn = site["fn"]
        if proper_prior and isinstance(fn, dist.ImproperUniform):
            raise ConfigError(
                f"site {name!r} has an improper prior ({type(fn).__name__}): the model has no "
                "normalized p(z), so log p(x) and its bounds do not exist; compare reconstructions "
                "instead "
                "(elbo_terms(...)['reconstruction'])"
            )
        marked = enumerated = site["infer"].get("enumerate") == "parallel"
        in_guide = guide_trace is not None and name in guide_trace.nodes
        if enumerated and in_guide:
            enumerated = False  # the guide samples it; the model scores the guide's value
        discrete = fn.support.is_discrete
        if not enumerated and not in_guide and need_guide:
            fix = ("mark it for exact enumeration with infer={'enumerate': 'parallel'}"
                   if discrete else "sample it in the guide too")
            raise ConfigError(f"the guide does not sample the model's latent site {name!r}; {fix}")
        if len(frames) > 1:
            raise ConfigError(
                f"latent site {name!r} lies in the plate(s) "
                f"{[f.name for f in frames if f.name != plate]} inside the data plate; declare its "
                "per-point dimensions as event dimensions (e.g. dist.Normal(...).to_event(1)) instead"
            )
        improper = type(fn).__name__ if isinstance(fn, dist.ImproperUniform) else ""
        latent.append(LatentSite(name, fn.event_shape, enumerated, fn.support,
                                 bool(fn.has_enumerate_support), marked, improper))
    if len(plates) != 1:
        raise ConfigError(
            f"the model's sites lie in different plates over the data points ({sorted(plates)}); "
            "use one data plate for all of them"
        )
    if not observed:
        raise ConfigError("the model has no observed site; pass the data with obs=x")
    guide_sites = tuple(name for name, site in _sample_sites(guide_trace)) if guide_trace else ()
    unknown = [name for name, site in (_sample_sites(guide_trace) if guide_trace else ())
               if name not in model_trace.nodes and not site["infer"].get("is_auxiliary")]
    if unknown:
        raise ConfigError(
            f"the guide samples {unknown}, which the model does not have; name the guide's sites "
            "as the model's (or mark helper sites infer={'is_auxiliary': True})"
        )
    rigid = tuple(name for name, site in (_sample_sites(guide_trace) if guide_trace else ())
                  if not site["is_observed"] and not site["fn"].has_rsample)
    scaled = _scaled_sites(model_trace, guide_trace)
    structure = ProgramStructure(plates.pop(), nesting, tuple(latent), tuple(observed), guide_sites,
                                 rigid, scaled)
    with torch.random.fork_rng(devices=devices), torch.no_grad(), pyro.validation_enabled(False), \
            untouched_param_store():
        broadcasts = _broadcasts(model, guide, rows, kwargs, structure)
    if broadcasts:
        return structure
    if warn:
        warnings.warn(NOT_BROADCASTING, stacklevel=2)
    return dataclasses.replace(structure, broadcasts=False)


def _broadcasts(model: PyroFunction, guide: PyroFunction | None, rows: torch.Tensor, kwargs: dict[str, Any],
                structure: ProgramStructure) -> bool:
    """Whether the programs run on ``rows`` with two samples under an extra plate at the left."""
    try:
        with pyro.plate(PARTICLES, 2, dim=structure.particle_dim):
            if guide is not None:
                guide_trace = _call(guide, rows, kwargs)
                runnable = _enumerated(poutine.replay(model, trace=guide_trace), structure)
            else:
                runnable = model
            _call(runnable, rows, kwargs)
    except (RuntimeError, ValueError, IndexError, TypeError, KeyError, NotImplementedError):
        return False
    return True


def _plate_scale(site: dict) -> float:
    """The scale that subsampled plates give a site: the product of full size / size."""
    scale = 1.0
    for frame in site["cond_indep_stack"]:
        if frame.full_size is not None and frame.size:
            scale *= frame.full_size / frame.size
    return scale


def _scaled_sites(*traces: poutine.Trace | None) -> tuple[tuple[str, float], ...]:
    """Sites whose scale is not that of their subsampled plates, with the scale (its extreme)."""
    found = {}
    for trace in traces:
        for name, site in (_sample_sites(trace) if trace is not None else ()):
            scale = torch.as_tensor(site["scale"], dtype=torch.float64) / _plate_scale(site)
            extreme = float(scale.flatten()[(scale.flatten() - 1).abs().argmax()])
            if abs(extreme - 1.0) > 1e-9:
                found.setdefault(name, extreme)
    return tuple(found.items())


def refuse_scaled(structure: ProgramStructure, where: str) -> None:
    """Refuse a program that scales a site's log-density (``poutine.scale``) in a per-point method.

    The scale of a subsampled data plate (Pyro's minibatch idiom) is undone,
    as the per-point log-densities are those of one point; any other scale
    changes the model and is refused.

    Raises
    ------
    ConfigError
        Naming the first scaled site and the fix.
    """
    if structure.scaled:
        name, scale = structure.scaled[0]
        raise ConfigError(
            f"{where}: site {name!r} is scaled by {scale:g} (poutine.scale), so the program is not "
            "a normalized p(x, z) and per-point log p(x) and posteriors are not defined; remove the "
            "scale, or make it an argument of the model that defaults to 1 (ppl_vae calls model(x))"
        )


def _reduce_to_points(log_prob: torch.Tensor, site: dict, structure: ProgramStructure,
                      data_dim: int) -> torch.Tensor:
    """A site's log-density summed over every plate dimension but the data plate's.

    Returns a tensor whose last two dimensions are (particles, points), either
    possibly of size 1, with enumeration dimensions to their left.
    """
    nesting = structure.max_plate_nesting
    if log_prob.dim() < nesting + 1:
        log_prob = log_prob.reshape((1,) * (nesting + 1 - log_prob.dim()) + log_prob.shape)
    others = [dim for dim in range(-nesting, 0) if dim != data_dim]
    return log_prob.sum(others) if others else log_prob


def _site_log_prob(site: dict, scaled: bool = True) -> torch.Tensor:
    """A site's log-density, masked, and scaled as the program scales it unless ``scaled`` is False."""
    log_prob = site["fn"].log_prob(site["value"])
    return scale_and_mask(log_prob, site["scale"] if scaled else 1.0, site["mask"])


def _data_dim(trace: poutine.Trace, structure: ProgramStructure) -> int:
    for _, site in _sample_sites(trace):
        for frame in site["cond_indep_stack"]:
            if frame.name == structure.data_plate:
                return frame.dim
    raise ConfigError(f"no site lies in the data plate {structure.data_plate!r}")


def _site_terms(trace: poutine.Trace, structure: ProgramStructure,
                scaled: bool = True) -> dict[str, torch.Tensor]:
    """Each sample site's log-density per (enumeration..., particle, point), computed once."""
    sites = dict(_sample_sites(trace))
    if not sites:  # e.g. the empty guide of a model whose latents are all enumerated
        return {}
    data_dim = _data_dim(trace, structure)
    return {name: _reduce_to_points(_site_log_prob(site, scaled), site, structure, data_dim)
            for name, site in sites.items()}


def _total(terms: dict[str, torch.Tensor], names: Any, like: torch.Tensor) -> torch.Tensor:
    """The sum of the named terms, in order (zero when there are none)."""
    total = None
    for name in names:
        total = terms[name] if total is None else total + terms[name]
    return total if total is not None else like.new_zeros(())


def _marginalize(log_joint: torch.Tensor) -> torch.Tensor:
    """Sum the enumerated discrete latents out: logsumexp over all dims left of (particles, points)."""
    if log_joint.dim() <= 2:
        return log_joint
    return log_joint.logsumexp(tuple(range(log_joint.dim() - 2)))


def _enumerated(program: PyroFunction, structure: ProgramStructure) -> PyroFunction:
    if not structure.enumerated:
        return program
    return poutine.enum(program, first_available_dim=structure.particle_dim - 1)


def _summed_out(program: PyroFunction, structure: ProgramStructure) -> PyroFunction:
    """The program with every discrete latent site enumerated (the guide's ones too), for p(x, z)."""
    if not any(site.discrete or site.enumerated for site in structure.latent):
        return program
    return poutine.enum(config_enumerate(program, "parallel"),
                        first_available_dim=structure.particle_dim - 1)


@dataclass
class LogDensityTerms:
    """Per-point log-densities of K joint draws.

    Attributes
    ----------
    log_joint : Tensor, shape (K, num_points)
        log sum_c p(x, z_k, c).
    log_proposal : Tensor, shape (K, num_points)
        log q(z_k | x) (the prior's density for prior draws).
    log_likelihood : Tensor, shape (K, num_points)
        The observed sites' log p(x | z_k), averaged over the exact posterior
        of the enumerated latents given z_k.
    sites : dict of str to Tensor
        Each site's share of ``log_joint - log_proposal`` for models without
        enumerated sites: ``log p(x | z_k)`` for an observed site, ``log p(z_k)
        - log q(z_k | x)`` for a latent one.
    """

    log_joint: torch.Tensor
    log_proposal: torch.Tensor
    log_likelihood: torch.Tensor
    sites: dict[str, torch.Tensor]

    @property
    def log_weights(self) -> torch.Tensor:
        return self.log_joint - self.log_proposal


def program_log_terms(model: PyroFunction, guide: PyroFunction | None, x: torch.Tensor, num_samples: int,
                      structure: ProgramStructure, kwargs: dict[str, Any] | None = None, *,
                      scaled: bool = True) -> LogDensityTerms:
    """K draws of every latent site per point, from the guide (or the prior when ``guide`` is None).

    Parameters
    ----------
    model, guide : callable
    x : Tensor, shape (num_points, ...)
    num_samples : int
        K, drawn in one pass under a plate at dim ``structure.particle_dim``
        (or in K passes when ``structure.broadcasts`` is False).
    structure : ProgramStructure
        From :func:`inspect_program`.
    kwargs : dict, optional
        Further keyword arguments of both programs.
    scaled : bool
        Keep the program's scales (``poutine.scale``, subsampled plates), as a
        training objective does; per-point estimates pass False.

    Returns
    -------
    LogDensityTerms
        Differentiable with respect to reparameterized draws and parameters.
    """
    kwargs = kwargs or {}
    shape = (num_samples, x.shape[0])
    if structure.broadcasts:
        with pyro.plate(PARTICLES, num_samples, dim=structure.particle_dim):
            model_terms, guide_terms, proposal_names = _pass_terms(model, guide, x, structure,
                                                                   kwargs, scaled)
    else:  # one pass per sample, each term (..., 1, points), joined along the particle dim
        passes = [_pass_terms(model, guide, x, structure, kwargs, scaled) for _ in range(num_samples)]
        model_terms, guide_terms = ({name: torch.cat([terms[i][name] for terms in passes], -2)
                                     for name in passes[0][i]} for i in (0, 1))
        proposal_names = passes[0][2]
    every = list(model_terms)
    latent = [name for name in every if name not in structure.observed]
    joint = _total(model_terms, every, x)
    observed = _total(model_terms, structure.observed, x)
    proposal = _total(guide_terms, proposal_names, x) if guide is not None else _total(model_terms, latent, x)
    sites: dict[str, torch.Tensor] = {}
    if structure.enumerated and guide is not None:
        log_joint = _marginalize(joint)
        posterior = (joint - log_joint).exp()  # p(c | x, z_k) per enumerated configuration
        log_likelihood = (posterior * observed).sum(tuple(range(joint.dim() - 2))) \
            if observed.dim() > 2 else observed
    else:
        log_joint, log_likelihood = joint, observed
        for name in every:
            term = model_terms[name]
            if name in latent and name in guide_terms:
                term = term - guide_terms[name]
            sites[name] = term.expand(shape)
    return LogDensityTerms(log_joint.expand(shape), proposal.expand(shape),
                           log_likelihood.expand(shape), sites)


def _pass_terms(model: PyroFunction, guide: PyroFunction | None, x: torch.Tensor, structure: ProgramStructure,
                kwargs: dict[str, Any], scaled: bool
                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """One run of the guide and the model: each site's log-density per point, and the guide's latent sites."""
    if guide is not None:
        guide_trace = _run("running the guide", lambda: _call(guide, x, kwargs))
        # Discrete latents the guide leaves out are summed over.
        runnable = _enumerated(poutine.replay(model, trace=guide_trace), structure)
    else:
        # With the prior as proposal every latent is drawn from it, discrete ones included.
        guide_trace, runnable = None, model
    model_trace = _run("running the model", lambda: _call(runnable, x, kwargs))
    model_terms = _site_terms(model_trace, structure, scaled)
    if guide_trace is None:
        return model_terms, {}, []
    guide_terms = _site_terms(guide_trace, structure, scaled)
    return model_terms, guide_terms, [name for name in guide_terms
                                      if not guide_trace.nodes[name]["is_observed"]]


# ----- continuous latents as one flat vector per point (NUTS, local guides) ----------------

def flatten_latents(values: dict[str, torch.Tensor], structure: ProgramStructure, *,
                    free: bool = False) -> torch.Tensor:
    """Concatenate per-point site values into one vector per point.

    Parameters
    ----------
    values : dict of str to Tensor, each shape (..., num_points) + event_shape
        On each site's support (or, with ``free``, of shape
        ``(..., num_points) + site.free_shape``, unconstrained).
    free : bool
        The values are unconstrained.

    Returns
    -------
    Tensor, shape (..., num_points, structure.constrained_numel)
        Or ``structure.latent_numel`` with ``free``.
    """
    parts = []
    for site in structure.continuous:
        value = values[site.name]
        shape, numel = (site.free_shape, site.free_numel) if free else (site.event_shape, site.numel)
        lead = value.shape[:value.dim() - len(shape)]
        parts.append(value.reshape(*lead, numel))
    return torch.cat(parts, -1)


def unflatten_latents(flat: torch.Tensor, structure: ProgramStructure, *,
                      free: bool = False) -> dict[str, torch.Tensor]:
    """The inverse of :func:`flatten_latents`: ``(..., P, D)`` -> ``{site: (..., P, *event)}``."""
    values, start = {}, 0
    for site in structure.continuous:
        shape, numel = (site.free_shape, site.free_numel) if free else (site.event_shape, site.numel)
        values[site.name] = flat[..., start:start + numel].reshape(*flat.shape[:-1], *shape)
        start += numel
    return values


def is_real_support(support: Any) -> bool:
    """Whether a support is the real line (possibly as independent event dimensions)."""
    while isinstance(support, dist.constraints.independent):
        support = support.base_constraint
    return support is dist.constraints.real


def to_constrained(unconstrained: torch.Tensor, structure: ProgramStructure
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Map a flat unconstrained vector to each site's support.

    Parameters
    ----------
    unconstrained : Tensor, shape (..., P, structure.latent_numel)

    Returns
    -------
    values : dict of str to Tensor, each shape (..., P) + event_shape
    log_abs_det_jacobian : Tensor, shape (..., P)
        Of the map, summed over sites; for a simplex (k values from k - 1)
        that of its first k - 1 coordinates, the ones its density is on.
    """
    values, log_det = {}, unconstrained.new_zeros(unconstrained.shape[:-1])
    free = unflatten_latents(unconstrained, structure, free=True)
    for site in structure.continuous:
        value = free[site.name]
        if is_real_support(site.support):
            values[site.name] = value
            continue
        transform = biject_to(site.support)
        constrained = transform(value)
        jacobian = transform.log_abs_det_jacobian(value, constrained)
        extra = jacobian.dim() - log_det.dim()
        values[site.name] = constrained
        log_det = log_det + (jacobian.reshape(*log_det.shape, -1).sum(-1) if extra > 0 else jacobian)
    return values, log_det


def to_unconstrained(values: dict[str, torch.Tensor], structure: ProgramStructure) -> torch.Tensor:
    """The inverse of :func:`to_constrained` (without the Jacobian), flattened.

    Returns
    -------
    Tensor, shape (..., P, structure.latent_numel)
    """
    free = {}
    for site in structure.continuous:
        value = values[site.name]
        free[site.name] = value if is_real_support(site.support) else biject_to(site.support).inv(value)
    return flatten_latents(free, structure, free=True)


def program_log_joint(model: PyroFunction, x: torch.Tensor, latents: dict[str, torch.Tensor],
                      structure: ProgramStructure, kwargs: dict[str, Any] | None = None
                      ) -> torch.Tensor:
    """log sum_c p(x, z, c) per point, the continuous latents given, the discrete summed out.

    Every discrete latent site is summed out exactly (also those the guide
    samples), and the scales of subsampled plates are undone: the result is
    one point's log-density.

    Parameters
    ----------
    model : callable
    x : Tensor, shape (num_points, ...)
    latents : dict of str to Tensor, each shape (num_points,) + event_shape
        A value for every continuous latent site.
    structure : ProgramStructure
    kwargs : dict, optional

    Returns
    -------
    Tensor, shape (num_points,)
    """
    kwargs = kwargs or {}
    conditioned = _summed_out(poutine.condition(model, data=latents), structure)
    trace = _run("running the model", lambda: _call(conditioned, x, kwargs))
    terms = _site_terms(trace, structure, scaled=False)
    return _marginalize(_total(terms, list(terms), x))[0]


def program_log_prior_and_joint(model: PyroFunction, x: torch.Tensor, latents: dict[str, torch.Tensor],
                                structure: ProgramStructure, kwargs: dict[str, Any] | None = None
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(z) and log p(x, z) per point from one trace, enumerated discrete latents summed out.

    ``log p(z)`` is the latent sites' share, ``log sum_c p(z, c)``, whether a
    discrete ``c`` is drawn before the continuous latents (a mixture prior) or
    after them (where it sums to 1); ``log p(x, z)`` is
    :func:`program_log_joint`. Their difference is log p(x | z), the
    likelihood that annealing from the prior raises to a power.

    Parameters
    ----------
    model : callable
    x : Tensor, shape (num_points, ...)
    latents : dict of str to Tensor, each shape (num_points,) + event_shape
    structure : ProgramStructure
    kwargs : dict, optional

    Returns
    -------
    log_prior, log_joint : Tensor, each shape (num_points,)
    """
    kwargs = kwargs or {}
    conditioned = _summed_out(poutine.condition(model, data=latents), structure)
    trace = _run("running the model", lambda: _call(conditioned, x, kwargs))
    terms = _site_terms(trace, structure, scaled=False)
    latent = [name for name in terms if name not in structure.observed]
    return (_marginalize(_total(terms, latent, x))[0],
            _marginalize(_total(terms, list(terms), x))[0])


def _unvalidated(fn: Any) -> bool:
    """Whether a distribution (or one it wraps) was built with ``validate_args=False`` on purpose.

    Pyro's own examples score grey pixels under a Bernoulli that way (a
    relaxed likelihood); the argument is stored on the instance only when given.
    """
    while fn is not None:
        if vars(fn).get("_validate_args") is False:
            return True
        fn = getattr(fn, "base_dist", None)
    return False


class Unscaled(Messenger):
    """Run a program with every sample site unscaled (subsampled plates, ``poutine.scale``)."""

    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample":
            msg["scale"] = 1.0


def check_observed_support(model: PyroFunction, x: torch.Tensor, where: str,
                           kwargs: dict[str, Any] | None = None) -> None:
    """Check the data against the supports of the model's observed sites, in one run of the model.

    The latents are drawn from the prior; only the observed values are checked,
    except at sites whose distribution was built with ``validate_args=False``
    (the program's own statement that it scores values off the support).

    Raises
    ------
    DataError
        Naming the first observed site whose value lies outside its
        distribution's support, how many points do, and the first of them.
    """
    kwargs = kwargs or {}
    devices = [x.device] if x.device.type == "cuda" else []
    # With validation on, a distribution built with validate_args=False is the only one that
    # says False (an expanded one copies the default); a program that fails its own validation
    # is left to the methods, which run it without.
    with torch.random.fork_rng(devices=devices), torch.no_grad(), pyro.validation_enabled(True), \
            untouched_param_store():
        try:
            trace = _call(model, x, kwargs)
        except (RuntimeError, ValueError, IndexError, TypeError, KeyError, NotImplementedError):
            return
        for name, site in _sample_sites(trace):
            if not site["is_observed"]:
                continue
            fn = site["fn"]
            if _unvalidated(fn):
                continue
            inside = fn.support.check(site["value"])
            if bool(inside.all()):
                continue
            outside = ~inside.expand(site["value"].shape[:site["value"].dim() - fn.event_dim])
            base = fn
            while hasattr(base, "base_dist"):
                base = base.base_dist
            raise DataError(
                f"{where}: the data lie outside the support of the observed site {name!r} "
                f"({type(base).__name__}, support {base.support}) for {int(outside.sum())} point(s) (the first "
                f"at index {tuple(outside.nonzero()[0].tolist())}); "
                "transform the data to the likelihood's support (e.g. binarize for a Bernoulli) "
                "or choose a likelihood whose support holds them"
            )


#: Draws per point from which :func:`latent_moments` takes its mean and spread.
MOMENT_DRAWS = 64


def latent_moments(model: PyroFunction, guide: PyroFunction | None, x: torch.Tensor,
                   structure: ProgramStructure, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation per point of the continuous latents, unconstrained and flat.

    Of the guide, or of the model's prior when there is no guide. Where that
    program's only random choice is one real-valued site with a Gaussian
    distribution (a Gaussian encoder, a N(0, I) prior), its exact mean and
    marginal scales; otherwise those of :data:`MOMENT_DRAWS` draws. The global random
    state is not touched. They serve as a starting region for NUTS chains and
    per-point variational fits, and as components of the defensive mixture.

    Returns
    -------
    loc, scale : Tensor, each shape (num_points, structure.latent_numel)
    """
    source = guide if guide is not None else model
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad(), pyro.validation_enabled(False), \
            untouched_param_store():
        torch.manual_seed(seed)
        if structure.broadcasts:
            with pyro.plate(PARTICLES, MOMENT_DRAWS, dim=structure.particle_dim):
                trace = _run("running the guide", lambda: _call(source, x, {}))
            exact = _single_normal_site(trace, structure)
            if exact is not None:
                return exact
            values = {site.name: trace.nodes[site.name]["value"] for site in structure.continuous}
        else:  # one draw per pass
            traces = [_run("running the guide", lambda: _call(source, x, {}))
                      for _ in range(MOMENT_DRAWS)]
            values = {site.name: torch.stack([trace.nodes[site.name]["value"] for trace in traces])
                      for site in structure.continuous}
        draws = to_unconstrained(values, structure).reshape(MOMENT_DRAWS, len(x), -1)
    return draws.mean(0), draws.std(0).clamp_min(1e-3)


#: Distributions whose mean and marginal standard deviations define a site exactly as a Gaussian.
GAUSSIANS = (torch.distributions.Normal, torch.distributions.MultivariateNormal,
             torch.distributions.LowRankMultivariateNormal)


def _single_normal_site(trace: poutine.Trace, structure: ProgramStructure
                        ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The loc and scale, shape (num_points, dim), of a trace whose one random choice is a Normal site.

    None when the trace samples anything else (then the site's distribution
    may be conditional on another draw) or the site is not a real vector.
    """
    drawn = [name for name, site in _sample_sites(trace) if not site["is_observed"]]
    sites = structure.continuous
    if len(sites) != 1 or drawn != [sites[0].name] or len(sites[0].event_shape) != 1 \
            or not is_real_support(sites[0].support):
        return None
    node = trace.nodes[sites[0].name]
    fn = node["fn"]
    while isinstance(fn, dist.Independent):
        fn = fn.base_dist
    if not isinstance(fn, GAUSSIANS):
        return None
    value = node["value"]
    # The particle dimension is the first of the value's batch dimensions; every particle's
    # parameters are the same, as nothing else was drawn.
    loc, scale = (moment.expand(value.shape).reshape(MOMENT_DRAWS, -1, value.shape[-1])[0]
                  for moment in (fn.mean, fn.variance.sqrt()))
    return loc, scale


@contextlib.contextmanager
def untouched_param_store() -> Iterator[None]:
    """Run programs for a look only: names they add to Pyro's parameter store are removed after."""
    store = pyro.get_param_store()
    before = set(store.keys())
    try:
        yield
    finally:
        for name in set(store.keys()) - before:
            del store[name]


