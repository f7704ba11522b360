"""Entry points seed their own draws and leave the caller's global random state as they found it."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ppl_vae import VAE, GaussianMixture, SVIConfig, train
from ppl_vae.evaluation import CompareConfig, compare_posteriors
from ppl_vae.inference import NUTSConfig, fit_local_gaussian
from ppl_vae.inference.mcmc import sample_posterior
from ppl_vae.models.gan import GAN, GANConfig, invert_generator, train_gan
from ppl_vae.rng import keeps_global_rng

TINY_NUTS = NUTSConfig(num_samples=10, warmup_steps=10, num_chains=2, parallel=False)


def _state() -> tuple:
    return torch.get_rng_state(), random.getstate(), np.random.get_state()


def _same(before: tuple, after: tuple) -> bool:
    (torch_a, random_a, numpy_a), (torch_b, random_b, numpy_b) = before, after
    return (torch.equal(torch_a, torch_b) and random_a == random_b
            and all(np.array_equal(a, b) for a, b in zip(numpy_a, numpy_b)))


def _small_vae() -> tuple[VAE, torch.Tensor]:
    x = torch.bernoulli(torch.rand(12, 6, generator=torch.Generator().manual_seed(0)))
    return VAE(6, 2, hidden_dims=(8,)), x


def _entry_points() -> dict:
    """Each entry point with its inputs already built (building them draws from the global stream)."""
    vae, x = _small_vae()
    gan = GAN(6, 2, hidden_dims=(8,), discriminator_hidden_dims=(8,))
    mixture, points, images = GaussianMixture(3, 2), torch.randn(20, 3), torch.rand(12, 6)
    return {
        "train": lambda: train(vae, x, SVIConfig(epochs=1, batch_size=6, seed=5)),
        "fit_local_gaussian": lambda: fit_local_gaussian(vae, x, max_steps=100, seed=5),
        "sample_posterior": lambda: sample_posterior(vae, x[:3], TINY_NUTS),
        "compare_posteriors": lambda: compare_posteriors(vae, x[:3], CompareConfig(
            elbo_samples=5, iwae_samples=5, fit_max_steps=100, nuts=TINY_NUTS, seed=5)),
        "GaussianMixture.fit": lambda: mixture.fit(points, num_steps=3, seed=5),
        "train_gan": lambda: train_gan(gan, images, GANConfig(steps=2, batch_size=6, seed=5)),
        "invert_generator": lambda: invert_generator(gan, images[:3], num_steps=2, seed=5),
    }


@pytest.mark.parametrize("name", list(_entry_points()))
def test_entry_point_leaves_the_global_random_state_alone(name):
    run = _entry_points()[name]
    before = _state()
    run()
    assert _same(before, _state())


def test_the_state_is_restored_when_the_entry_point_raises():
    @keeps_global_rng
    def failing() -> None:
        torch.manual_seed(7)
        random.seed(7)
        np.random.seed(7)
        raise ValueError("bad input")

    before = _state()
    with pytest.raises(ValueError):
        failing()
    assert _same(before, _state())
