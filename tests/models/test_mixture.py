"""Gaussian mixture: Pyro's enumeration against Bayes' rule written out, and maximum likelihood."""

from __future__ import annotations

import math

import pyro
import pyro.optim
import pytest
import torch
from pyro.infer import SVI, TraceEnum_ELBO
from torch.distributions import Independent, Normal

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.models.mixture import GaussianMixture

DATA_DIM, NUM_COMPONENTS = 2, 3
TRUE_WEIGHTS = (0.5, 0.3, 0.2)
TRUE_LOCS = ((-4.0, 0.0), (4.0, 0.0), (0.0, 5.0))
TRUE_SCALES = ((0.6, 0.4), (0.5, 0.8), (0.7, 0.5))
# Enumeration and the hand formula are both a few float64 log-sum-exps.
EXACT_TOLERANCE = 1e-10
# Monte Carlo frequencies: allowed deviation in multinomial standard errors.
MC_Z = 5.0
NUM_DRAWS = 4000
# Maximum likelihood on 600 points: the standard error of a fitted mean is
# about scale / sqrt(points in the component) < 0.1, so 0.3 is about 3 of them
# plus the optimizer's residual.
FIT_LOC_TOLERANCE = 0.3
# From a k-means++ start on separated clusters Adam (lr 0.1) passes the true
# parameters' log-likelihood within ~50 steps.
NUM_FIT_STEPS = 80
# Adam stops a little short of the maximum; the MLE's log-likelihood is at
# least the true parameters' on the same sample, up to this residual (nats/point).
FIT_LOGLIK_TOLERANCE = 0.01


def known_mixture(name: str = "mixture") -> GaussianMixture:
    model = GaussianMixture(DATA_DIM, NUM_COMPONENTS, name=name).double()
    with torch.no_grad():
        model.components.logits.copy_(torch.tensor(TRUE_WEIGHTS, dtype=torch.float64).log())
        model.components.locs.copy_(torch.tensor(TRUE_LOCS, dtype=torch.float64))
        model.components.log_scales.copy_(torch.tensor(TRUE_SCALES, dtype=torch.float64).log())
    return model


def points() -> torch.Tensor:
    """Points near each component, between components and far away, shape (6, 2).

    Row 4 has posterior (0.26, 0.50, 0.24): every component is plausible.
    """
    return torch.tensor(
        [[-4.0, 0.1], [3.5, -0.5], [0.2, 4.6], [0.0, 0.0], [0.3, 1.2], [10.0, -10.0]],
        dtype=torch.float64,
    )


def hand_log_joint(x: torch.Tensor) -> torch.Tensor:
    """log pi_k + log N(x; mu_k, Sigma_k) from the true parameters, shape (batch, K)."""
    weights = torch.tensor(TRUE_WEIGHTS, dtype=torch.float64)
    components = Independent(
        Normal(torch.tensor(TRUE_LOCS, dtype=torch.float64),
               torch.tensor(TRUE_SCALES, dtype=torch.float64)),
        1,
    )
    return weights.log() + components.log_prob(x.unsqueeze(1))


def hand_posterior(x: torch.Tensor) -> torch.Tensor:
    """Bayes' rule pi_k N(x; mu_k, Sigma_k) / sum_j pi_j N(x; mu_j, Sigma_j), shape (batch, K)."""
    joint = hand_log_joint(x).exp()
    return joint / joint.sum(-1, keepdim=True)


def draw(num_points: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    z = torch.multinomial(torch.tensor(TRUE_WEIGHTS), num_points, replacement=True,
                          generator=generator)
    noise = torch.randn(num_points, DATA_DIM, generator=generator, dtype=torch.float64)
    locs = torch.tensor(TRUE_LOCS, dtype=torch.float64)
    return locs[z] + torch.tensor(TRUE_SCALES, dtype=torch.float64)[z] * noise


@pytest.mark.parametrize("x", [points(), points()[3:4]], ids=["six points", "one point"])
def test_enumerated_posterior_equals_bayes_rule(x):
    posterior = known_mixture().posterior(x)
    assert posterior.batch_shape == (len(x),)
    assert posterior.probs.shape == (len(x), NUM_COMPONENTS)
    torch.testing.assert_close(posterior.probs, hand_posterior(x), atol=EXACT_TOLERANCE, rtol=0)


def test_log_marginal_equals_hand_sum():
    x = points()
    expected = hand_log_joint(x).exp().sum(-1).log()
    torch.testing.assert_close(known_mixture().log_marginal(x), expected,
                               atol=EXACT_TOLERANCE, rtol=0)


@pytest.mark.parametrize("num_data", [None, 60])
def test_enumerated_elbo_is_exact_evidence(num_data):
    model, x = known_mixture(), points()
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model.model, model.guide, x, num_data)
    scale = 1.0 if num_data is None else num_data / len(x)
    expected = -scale * float(model.log_marginal(x).detach().sum())
    assert loss == pytest.approx(expected, rel=EXACT_TOLERANCE)


def test_map_assignment_is_argmax_of_bayes_rule():
    x = points()
    assignment = known_mixture().assign(x)
    assert assignment.dtype == torch.long
    assert torch.equal(assignment, hand_posterior(x).argmax(-1))


def test_sampled_assignments_follow_the_posterior():
    x = points()[4:5].expand(NUM_DRAWS, DATA_DIM)
    probs = hand_posterior(x[:1])[0]
    assert probs.min() > 0.01, "the point should have a non-degenerate posterior"
    draws = known_mixture().assign(x, temperature=1)
    frequencies = torch.bincount(draws, minlength=NUM_COMPONENTS).double() / NUM_DRAWS
    standard_error = (probs * (1 - probs) / NUM_DRAWS).sqrt()
    assert ((frequencies - probs).abs() <= MC_Z * standard_error).all(), (frequencies, probs)


def test_fit_recovers_a_separated_mixture():
    x = draw(600, seed=1)
    true_loglik = float(known_mixture("truth").log_marginal(x).detach().mean())
    model = GaussianMixture(DATA_DIM, NUM_COMPONENTS).double()
    history = model.fit(x, num_steps=NUM_FIT_STEPS, learning_rate=0.1, seed=0)
    assert len(history) == NUM_FIT_STEPS and history[-1] < history[0]
    distances = torch.cdist(torch.tensor(TRUE_LOCS, dtype=torch.float64),
                            model.components.locs.detach())
    nearest = distances.argmin(-1)
    assert sorted(nearest.tolist()) == list(range(NUM_COMPONENTS)), "two means found one component"
    assert distances.min(-1).values.max() < FIT_LOC_TOLERANCE
    fitted_loglik = float(model.log_marginal(x).detach().mean())
    assert fitted_loglik >= true_loglik - FIT_LOGLIK_TOLERANCE
    assert -history[-1] == pytest.approx(fitted_loglik, abs=FIT_LOGLIK_TOLERANCE)


@pytest.mark.parametrize("mean", [True, False])
def test_sample_shapes(mean):
    model = known_mixture()
    samples = model.sample(50, mean=mean)
    assert samples.shape == (50, DATA_DIM)
    if mean:
        is_a_loc = (samples.unsqueeze(1) == model.components.locs.detach()).all(-1).any(-1)
        assert is_a_loc.all()


def test_decode_broadcasts_an_enumerated_latent():
    likelihood = known_mixture().decode(torch.arange(NUM_COMPONENTS).unsqueeze(-1))
    assert likelihood.batch_shape == (NUM_COMPONENTS, 1)
    assert likelihood.log_prob(points()).shape == (NUM_COMPONENTS, len(points()))


def test_config_rebuilds_the_model():
    model = GaussianMixture(4, 5, name="gmm", init_scale=2.0)
    assert GaussianMixture(**model.config()).config() == model.config()
    assert model.latent_dim == 1


@pytest.mark.parametrize("num_components", [0, 1, -2, 2.5])
def test_bad_num_components(num_components):
    with pytest.raises(ConfigError):
        GaussianMixture(DATA_DIM, num_components)


@pytest.mark.parametrize(
    "method", ["log_marginal", "posterior", "assign", "fit", "model", "init_from_data"]
)
@pytest.mark.parametrize(
    "x",
    [torch.zeros(4, DATA_DIM + 1), torch.zeros(DATA_DIM), torch.zeros(4, DATA_DIM, dtype=torch.long),
     [[0.0, 0.0]]],
    ids=["wrong width", "1-d", "integer", "list"],
)
def test_bad_inputs(method, x):
    with pytest.raises(DataError):
        getattr(GaussianMixture(DATA_DIM, NUM_COMPONENTS), method)(x)


def test_fit_rejects_bad_values():
    model = GaussianMixture(DATA_DIM, NUM_COMPONENTS)
    with pytest.raises(DataError, match="NaN"):
        model.fit(torch.tensor([[0.0, float("nan")]] * 5), num_steps=1)
    with pytest.raises(DataError, match="k-means"):
        model.fit(torch.zeros(2, DATA_DIM), num_steps=1)


def test_assign_rejects_other_temperatures():
    with pytest.raises(ConfigError):
        known_mixture().assign(points(), temperature=0.5)


def test_encode_is_not_defined():
    with pytest.raises(NotImplementedError, match="posterior"):
        known_mixture().encode(points())


def test_parameters_are_registered_and_trained_by_pyro_svi():
    model, x = known_mixture(), points()
    model.model(x)
    store = pyro.get_param_store()
    for name, param in model.named_parameters():
        key = f"mixture.{name.replace('.', '$$$', 1)}"
        assert store.get_param(key) is param
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 0.1}),
              TraceEnum_ELBO(max_plate_nesting=1))
    svi.step(x)
    for name, param in model.named_parameters():
        assert not torch.equal(param.detach(), before[name]), name


def test_second_model_with_the_same_name_uses_its_own_parameters():
    first = GaussianMixture(DATA_DIM, NUM_COMPONENTS).double()
    first.posterior(points())
    second = known_mixture()
    torch.testing.assert_close(second.posterior(points()).probs, hand_posterior(points()),
                               atol=EXACT_TOLERANCE, rtol=0)


def test_constant_features_do_not_send_the_likelihood_to_infinity():
    """Blank borders (constant pixels) are what real images have; the scale floor keeps fit finite."""
    torch.manual_seed(0)
    x = torch.rand(60, 6, dtype=torch.float64)
    x[:, :2] = 0.0  # two features that never vary
    model = GaussianMixture(6, num_components=3).double()
    losses = model.fit(x, num_steps=50)
    assert all(math.isfinite(loss) for loss in losses)
    assert float(model.scales.min()) >= model.min_scale
    assert torch.isfinite(model.log_marginal(x)).all()
