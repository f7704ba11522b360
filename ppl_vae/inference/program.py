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
(:mod:`ppl_vae.inference.objectives`); :func:`~ppl_vae.inference.objectives.has_direct_elbo` decides
from the programs' behaviour, by tracing them, whether a model may use them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.transforms import biject_to
from pyro.distributions.util import scale_and_mask

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
    """

    name: str
    event_shape: torch.Size
    enumerated: bool
    support: Any

    @property
    def numel(self) -> int:
        return math.prod(self.event_shape)


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
    """

    data_plate: str
    max_plate_nesting: int
    latent: tuple[LatentSite, ...]
    observed: tuple[str, ...]
    guide_sites: tuple[str, ...]
    not_reparameterized: tuple[str, ...] = ()

    @property
    def reparameterized(self) -> bool:
        return not self.not_reparameterized

    @property
    def continuous(self) -> tuple[LatentSite, ...]:
        """The latent sites that are not enumerated (sampled by the guide, or by NUTS)."""
        return tuple(site for site in self.latent if not site.enumerated)

    @property
    def enumerated(self) -> tuple[LatentSite, ...]:
        return tuple(site for site in self.latent if site.enumerated)

    @property
    def latent_numel(self) -> int:
        """Number of continuous latent values per point (the dimension NUTS samples)."""
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


Program = Callable[..., Any]


def program_pair(model: Any, guide: Program | None = None) -> tuple[Program, Program | None]:
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


def _call(program: Program, x: torch.Tensor, kwargs: dict[str, Any]) -> poutine.Trace:
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
    frames = [f for f in site["cond_indep_stack"] if f.vectorized and f.name != PARTICLES]
    for frame in frames:
        if frame.name in DATA_PLATE_NAMES and frame.size == batch:
            return frame.name
    sized = [f for f in frames if f.size == batch]
    return sized[-1].name if sized else None


def inspect_program(model: Program, guide: Program | None, x: torch.Tensor,
                    kwargs: dict[str, Any] | None = None, *, need_guide: bool = True,
                    proper_prior: bool = True) -> ProgramStructure:
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
        enumerated = site["infer"].get("enumerate") == "parallel"
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
        latent.append(LatentSite(name, fn.event_shape, enumerated, fn.support))
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
    return ProgramStructure(plates.pop(), nesting, tuple(latent), tuple(observed), guide_sites, rigid)


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


def _site_log_prob(site: dict) -> torch.Tensor:
    log_prob = site["fn"].log_prob(site["value"])
    return scale_and_mask(log_prob, site["scale"], site["mask"])


def _data_dim(trace: poutine.Trace, structure: ProgramStructure) -> int:
    for _, site in _sample_sites(trace):
        for frame in site["cond_indep_stack"]:
            if frame.name == structure.data_plate:
                return frame.dim
    raise ConfigError(f"no site lies in the data plate {structure.data_plate!r}")


def _site_terms(trace: poutine.Trace, structure: ProgramStructure) -> dict[str, torch.Tensor]:
    """Each sample site's log-density per (enumeration..., particle, point), computed once."""
    sites = dict(_sample_sites(trace))
    if not sites:  # e.g. the empty guide of a model whose latents are all enumerated
        return {}
    data_dim = _data_dim(trace, structure)
    return {name: _reduce_to_points(_site_log_prob(site), site, structure, data_dim)
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


def _enumerated(program: Program, structure: ProgramStructure) -> Program:
    if not structure.enumerated:
        return program
    return poutine.enum(program, first_available_dim=structure.particle_dim - 1)


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


def program_log_terms(model: Program, guide: Program | None, x: torch.Tensor, num_samples: int,
                      structure: ProgramStructure, kwargs: dict[str, Any] | None = None
                      ) -> LogDensityTerms:
    """K draws of every latent site per point, from the guide (or the prior when ``guide`` is None).

    Parameters
    ----------
    model, guide : callable
    x : Tensor, shape (num_points, ...)
    num_samples : int
        K, drawn in one pass under a plate at dim ``structure.particle_dim``.
    structure : ProgramStructure
        From :func:`inspect_program`.
    kwargs : dict, optional
        Further keyword arguments of both programs.

    Returns
    -------
    LogDensityTerms
        Differentiable with respect to reparameterized draws and parameters.
    """
    kwargs = kwargs or {}
    shape = (num_samples, x.shape[0])
    with pyro.plate(PARTICLES, num_samples, dim=structure.particle_dim):
        if guide is not None:
            guide_trace = _run("running the guide", lambda: _call(guide, x, kwargs))
            replayed = poutine.replay(model, trace=guide_trace)
        else:
            guide_trace, replayed = None, model
        # With the prior as proposal every latent is drawn from it, discrete ones included;
        # otherwise the discrete latents the guide leaves out are summed over.
        runnable = _enumerated(replayed, structure) if guide is not None else replayed
        model_trace = _run("running the model", lambda: _call(runnable, x, kwargs))
    model_terms = _site_terms(model_trace, structure)
    every = list(model_terms)
    latent = [name for name in every if not model_trace.nodes[name]["is_observed"]]
    joint = _total(model_terms, every, x)
    observed = _total(model_terms, structure.observed, x)
    if guide_trace is not None:
        guide_terms = _site_terms(guide_trace, structure)
        proposal = _total(guide_terms, [name for name in guide_terms
                                        if not guide_trace.nodes[name]["is_observed"]], x)
    else:
        guide_terms = {}
        proposal = _total(model_terms, latent, x)
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


# ----- continuous latents as one flat vector per point (NUTS, local guides) ----------------

def flatten_latents(values: dict[str, torch.Tensor], structure: ProgramStructure) -> torch.Tensor:
    """Concatenate per-point site values into one vector per point.

    Parameters
    ----------
    values : dict of str to Tensor, each shape (..., num_points) + event_shape

    Returns
    -------
    Tensor, shape (..., num_points, structure.latent_numel)
    """
    parts = []
    for site in structure.continuous:
        value = values[site.name]
        lead = value.shape[:value.dim() - len(site.event_shape)]
        parts.append(value.reshape(*lead, site.numel))
    return torch.cat(parts, -1)


def unflatten_latents(flat: torch.Tensor, structure: ProgramStructure) -> dict[str, torch.Tensor]:
    """The inverse of :func:`flatten_latents`: ``(..., P, D)`` -> ``{site: (..., P, *event)}``."""
    values, start = {}, 0
    for site in structure.continuous:
        piece = flat[..., start:start + site.numel]
        values[site.name] = piece.reshape(*flat.shape[:-1], *site.event_shape)
        start += site.numel
    return values


def is_real_support(support: Any) -> bool:
    """Whether a support is the real line (possibly as independent event dimensions)."""
    while isinstance(support, dist.constraints.independent):
        support = support.base_constraint
    return support is dist.constraints.real


def to_constrained(unconstrained: torch.Tensor, structure: ProgramStructure
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Map a flat unconstrained vector to each site's support.

    Returns
    -------
    values : dict of str to Tensor, each shape (..., P) + event_shape
    log_abs_det_jacobian : Tensor, shape (..., P)
    """
    values, log_det = {}, unconstrained.new_zeros(unconstrained.shape[:-1])
    for name, value in unflatten_latents(unconstrained, structure).items():
        site = next(s for s in structure.continuous if s.name == name)
        if is_real_support(site.support):
            values[name] = value
            continue
        transform = biject_to(site.support)
        constrained = transform(value)
        jacobian = transform.log_abs_det_jacobian(value, constrained)
        extra = jacobian.dim() - log_det.dim()
        values[name] = constrained
        log_det = log_det + (jacobian.reshape(*log_det.shape, -1).sum(-1) if extra > 0 else jacobian)
    return values, log_det


def to_unconstrained(values: dict[str, torch.Tensor], structure: ProgramStructure) -> torch.Tensor:
    """The inverse of :func:`to_constrained` (without the Jacobian), flattened."""
    free = {}
    for site in structure.continuous:
        value = values[site.name]
        free[site.name] = value if is_real_support(site.support) else biject_to(site.support).inv(value)
    return flatten_latents(free, structure)


def program_log_joint(model: Program, x: torch.Tensor, latents: dict[str, torch.Tensor],
                      structure: ProgramStructure, kwargs: dict[str, Any] | None = None
                      ) -> torch.Tensor:
    """log sum_c p(x, z, c) per point, the continuous latents given, the discrete summed out.

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
    conditioned = _enumerated(poutine.condition(model, data=latents), structure)
    trace = _run("running the model", lambda: _call(conditioned, x, kwargs))
    terms = _site_terms(trace, structure)
    return _marginalize(_total(terms, list(terms), x))[0]


def program_log_prior_and_joint(model: Program, x: torch.Tensor, latents: dict[str, torch.Tensor],
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
    conditioned = _enumerated(poutine.condition(model, data=latents), structure)
    trace = _run("running the model", lambda: _call(conditioned, x, kwargs))
    terms = _site_terms(trace, structure)
    latent = [name for name in terms if name not in structure.observed]
    return (_marginalize(_total(terms, latent, x))[0],
            _marginalize(_total(terms, list(terms), x))[0])


#: Draws per point from which :func:`latent_moments` takes its mean and spread.
MOMENT_DRAWS = 64


def latent_moments(model: Program, guide: Program | None, x: torch.Tensor,
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
        with pyro.plate(PARTICLES, MOMENT_DRAWS, dim=structure.particle_dim):
            trace = _run("running the guide", lambda: _call(source, x, {}))
        exact = _single_normal_site(trace, structure)
        if exact is not None:
            return exact
        values = {site.name: trace.nodes[site.name]["value"] for site in structure.continuous}
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


