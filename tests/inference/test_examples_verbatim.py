"""Pyro's own example programs, pasted as users paste them, through ppl_vae's methods.

The programs (:mod:`pyro_examples`, copied verbatim from Pyro): the VAE of the
VAE tutorial, the semi-supervised VAE M2, the conditional VAE and ProdLDA.
Each trains briefly on a few rows (tiny networks; the checks are that every
method runs and is consistent, not that the models are good) and goes
through ``elbo`` / ``iwae``, ``sample_posterior`` and ``compare_posteriors``
where the per-point contract allows; where it does not, the one-line error
names the site and the fix.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from _docs import ROOT
from pyro.infer import config_enumerate
from pyro_examples import cvae, prodlda, ss_vae_m2, vae

from ppl_vae import SVIConfig, load_dataset, train
from ppl_vae.errors import ConfigError
from ppl_vae.evaluation import CompareConfig, compare_posteriors
from ppl_vae.inference import NUTSConfig, elbo, iwae, sample_posterior

#: Allowed deviation in Monte Carlo standard errors (one-sided normal tail ~3e-6 per check).
MC_Z = 4.5
#: NUTS only to show the program runs under it: a few draws of two chains.
TINY_NUTS = NUTSConfig(num_samples=30, warmup_steps=30, num_chains=2, parallel=False, seed=0)
#: The whole comparison at its smallest: every method runs, none converges.
TINY_COMPARE = CompareConfig(elbo_samples=20, iwae_samples=100, fit_max_steps=100, nuts=TINY_NUTS)
#: SVI settings that run a couple of epochs over the few rows.
SHORT_TRAINING = SVIConfig(epochs=2, batch_size=16, learning_rate=1e-3)
#: Words of the warning given when a program does not broadcast over an extra sample dimension.
SLOWER_PATH = "one pass at a time"


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """32 binarized MNIST digits (784 pixels), as the examples expect."""
    return (load_dataset("mnist5k").train_x[:32] > 0.5).float()


def _bounds_agree(model, guide, x: torch.Tensor) -> None:
    """The ELBO lies below the importance-weighted bound (both estimate log p(x) from below)."""
    lower = elbo(model, x, 50, guide=guide)
    bound = iwae(model, x, 200, guide=guide)
    assert torch.isfinite(bound.per_point).all()
    assert (bound.per_point > lower.per_point - MC_Z * lower.stderr).all()


@dataclass
class Example:
    """A trained example program: its model and guide functions, and a few rows to evaluate."""

    model: Callable
    guide: Callable
    x: torch.Tensor
    latent: str
    latent_dim: int
    broadcasts: bool


def vae_tutorial(digits: torch.Tensor) -> Example:
    net = vae.VAE(z_dim=2, hidden_dim=32)
    train(net.model, digits, SHORT_TRAINING, guide=net.guide)
    return Example(net.model, net.guide, digits[:4], "latent", 2, True)


def _ssvae(config_enum: str | None) -> ss_vae_m2.SSVAE:
    torch.manual_seed(0)
    return ss_vae_m2.SSVAE(z_dim=2, hidden_layers=[16], config_enum=config_enum)


def semi_supervised_m2(digits: torch.Tensor) -> Example:
    """The label y of unlabelled digits is a discrete latent; ``config_enum="parallel"``, the
    example's default, makes its networks broadcast."""
    net = _ssvae("parallel")
    train(net.model, digits, SHORT_TRAINING, guide=net.guide)
    return Example(net.model, net.guide, digits[:4], "z", 2, True)


def conditional_vae(digits: torch.Tensor) -> Example:
    """p(y | x): the hidden quadrant y of a digit given the rest x. ppl_vae's methods pass one
    tensor, so the two inputs travel as one (the only glue a user writes)."""
    torch.manual_seed(0)
    net = cvae.CVAE(2, 16, 16, cvae.BaselineNet(16, 16))  # the baseline untrained: tiny test
    images = digits.reshape(-1, 28, 28)
    inputs, outputs = images.clone(), images.clone()
    inputs[:, 14:, :14] = -1           # the example's masking: one quadrant hidden from x
    outputs[inputs != -1] = -1         # and y is that quadrant only
    data = torch.cat([inputs.reshape(-1, 784), outputs.reshape(-1, 784)], -1)

    def model(data):
        return net.model(data[:, :784], data[:, 784:])

    def guide(data):
        return net.guide(data[:, :784], data[:, 784:])

    train(model, data, SHORT_TRAINING, guide=guide)
    return Example(model, guide, data[:4], "z", 2, False)


def prod_lda(digits: torch.Tensor) -> Example:
    """Per-document topic proportions (logistic-normal) on synthetic counts, evaluated in eval
    mode (dropout off, batch norm on its running statistics) as any network is."""
    del digits
    torch.manual_seed(0)
    vocab, topics = 12, 3
    words = torch.distributions.Dirichlet(torch.full((topics, vocab), 0.3)).sample()
    mixes = torch.distributions.Dirichlet(torch.ones(topics)).sample((40,))
    docs = torch.distributions.Multinomial(15, mixes @ words).sample()
    net = prodlda.ProdLDA(vocab_size=vocab, num_topics=topics, hidden=16, dropout=0.2)
    train(net.model, docs, SVIConfig(epochs=2, batch_size=20, learning_rate=1e-2), guide=net.guide)
    net.eval()
    return Example(net.model, net.guide, docs[:5], "logtheta", topics, False)


EXAMPLES = [vae_tutorial, semi_supervised_m2, conditional_vae, prod_lda]
NAMES = ["vae-tutorial", "ss-vae-m2", "cvae", "prodlda"]


@pytest.mark.parametrize("build", EXAMPLES, ids=NAMES)
def test_example_trains_and_runs_every_estimator_and_nuts(build, digits):
    """The CVAE's boolean-mask indexing, and ProdLDA's BatchNorm1d and softmax over dim 1, take
    2-D inputs only: their samples are drawn one pass at a time, one warning per call."""
    example = build(digits)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _bounds_agree(example.model, example.guide, example.x)
    slower = [w for w in caught if SLOWER_PATH in str(w.message)]
    assert len(slower) == (0 if example.broadcasts else 2)  # elbo and iwae, once each
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sample_posterior(example.model, example.x[:2], TINY_NUTS, guide=example.guide)
    assert set(result.sites) == {example.latent}   # M2's y is summed out of p(x, z)
    assert result.sites[example.latent].shape == (2, 30, 2, example.latent_dim)


@pytest.mark.slow
@pytest.mark.parametrize("build", EXAMPLES, ids=NAMES)
def test_example_through_compare_posteriors(build, digits):
    """NUTS, the guide, q* and the flow side by side (M2 with y marked for enumeration)."""
    example = build(digits)
    model = example.model
    if build is semi_supervised_m2:
        model = config_enumerate(model, "parallel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compare_posteriors(model, example.x[:2], TINY_COMPARE, guide=example.guide)
    assert {row.name for row in result.rows} == {"nuts", "encoder", "local_gaussian", "flow"}
    assert result.nuts.samples.shape[-1] == example.latent_dim
    assert all(math.isfinite(value) for value in result.per_point["log_px"])


def test_m2_compare_asks_for_the_label_to_be_enumerated(digits):
    """q* and the flow cover z only, so the label y must be summed out, which the model must say."""
    example = semi_supervised_m2(digits)
    with pytest.raises(ConfigError, match="the guide does not sample the model's latent site 'y'; "
                                          "mark it for exact enumeration"):
        compare_posteriors(example.model, example.x[:2], TINY_COMPARE, guide=example.guide)


def test_m2_written_without_broadcasting_takes_the_slower_path(digits):
    """``config_enum=None`` makes its networks ``torch.cat`` without broadcasting: the samples
    are drawn one pass at a time, with one warning, to the same estimates."""
    fast, slow = _ssvae("parallel"), _ssvae(None)
    slow.load_state_dict(fast.state_dict())
    x = digits[:4]
    vectorized = iwae(fast.model, x, 300, guide=fast.guide)
    with pytest.warns(UserWarning, match=SLOWER_PATH) as record:
        looped = iwae(slow.model, x, 300, guide=slow.guide)
    assert len(record) == 1
    difference = (looped.per_point - vectorized.per_point).abs()
    assert (difference < MC_Z * torch.hypot(looped.stderr, vectorized.stderr)).all()
    # NUTS sums y out in parallel (an extra dimension of size 10), which these networks refuse.
    with pytest.raises(ConfigError, match="broadcast over leading dimensions"):
        sample_posterior(slow.model, x[:2], TINY_NUTS, guide=slow.guide)


# ----- the page "What a program may and may not be" ------------------------------------------------

def test_the_program_contract_page_runs(capsys):
    """docs/program_contract.md: every refusal prints its one line, and every fix runs."""
    page = (ROOT / "docs" / "program_contract.md").read_text()
    namespace: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for block in re.findall(r"```python\n(.*?)```", page, re.S):
            exec(compile(block, "program_contract.md", "exec"), namespace)
    printed = capsys.readouterr().out
    for refusal in ("site 'shift' is not inside a plate", "latent site 'c'; mark it",
                    "site 'x' is scaled by 10", "outside the support of the observed site 'x'"):
        assert refusal in printed
    # The flattening network only (the page records its own warning; no other example warns).
    slower = [w for w in [*caught, *namespace["caught"]] if SLOWER_PATH in str(w.message)]
    assert len(slower) == 1
