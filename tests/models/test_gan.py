"""The GAN: shapes and devices, seeded determinism, input checks, and that training moves samples
towards the data."""

from __future__ import annotations

import pytest
import torch

from ppl_vae.errors import ConfigError, DataError
from ppl_vae.models.gan import GAN, GANConfig, invert_generator, train_gan

#: Toy 1-D data: N(DATA_MEAN, DATA_SD^2).
DATA_MEAN, DATA_SD = 2.0, 0.5
#: After training, the generated mean must lie this close to the data's. The untrained
#: generator's mean is about 0 (4 data sds away); 2,000 samples estimate a mean to
#: +-0.01, so the tolerance is about the GAN's own wobble around the optimum, not sampling noise.
MEAN_TOLERANCE = 0.2
#: ... and the generated standard deviation within this factor of the data's. GANs tend to
#: under-disperse; over seeds 0-5 the ratio ranged over 0.63-1.19 (mean within 0.06).
SD_RATIO_RANGE = (0.5, 1.5)


def toy_gan(**kwargs) -> GAN:
    return GAN(1, 2, hidden_dims=(32,), discriminator_hidden_dims=(32,), output="identity", **kwargs)


def toy_data(num_points: int = 1000) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return DATA_MEAN + DATA_SD * torch.randn(num_points, 1, generator=generator)


def test_shapes_and_value_range():
    gan = GAN(12, 3, hidden_dims=(8,), discriminator_hidden_dims=(6,))
    samples = gan.sample(5)
    assert samples.shape == (5, 12)
    assert bool(((samples > 0) & (samples < 1)).all())       # sigmoid output: grey levels
    assert gan.generate(torch.zeros(2, 4, 3)).shape == (2, 4, 12)
    assert gan.discriminate(samples).shape == (5,)
    assert gan.config()["latent_dim"] == 3


def test_dtype_follows_the_module():
    gan = toy_gan().double()
    assert gan.sample(4).dtype == torch.float64
    result = train_gan(gan, toy_data(64).double(), GANConfig(steps=3, batch_size=16))
    assert result.generator_loss.dtype == torch.float64
    assert result.discriminator_loss.shape == (3,)


@pytest.mark.gpu
def test_device_follows_the_module():
    gan = toy_gan().to("cuda")
    assert gan.sample(4).device.type == "cuda"
    result = train_gan(gan, toy_data(64).to("cuda"), GANConfig(steps=3, batch_size=16))
    assert result.real_score.shape == (3,)
    with pytest.raises(DataError, match="move one of them"):
        train_gan(gan, toy_data(64), GANConfig(steps=3))


def test_the_same_seed_gives_the_same_gan():
    x = toy_data(200)
    results, states = [], []
    for _ in range(2):
        torch.manual_seed(123)                     # same initial weights
        gan = toy_gan()
        results.append(train_gan(gan, x, GANConfig(steps=50, batch_size=32, seed=7)))
        states.append(gan.state_dict())
    assert torch.equal(results[0].generator_loss, results[1].generator_loss)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    torch.manual_seed(123)
    other = train_gan(toy_gan(), x, GANConfig(steps=50, batch_size=32, seed=8))
    assert not torch.equal(other.generator_loss, results[0].generator_loss)


@pytest.mark.parametrize("make, match", [
    (lambda: GANConfig(steps=0), "steps"),
    (lambda: GANConfig(learning_rate=-1.0), "learning_rate"),
    (lambda: GANConfig(betas=(0.5, 1.0)), "betas"),
    (lambda: GAN(10, 2, output="tanh"), "output"),
    (lambda: GAN(10, 0), "latent_dim"),
    (lambda: GAN(10, 2, discriminator_dropout=1.0), "dropout"),
])
def test_bad_settings_raise_config_error(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_bad_data_raise_data_error():
    gan = GAN(4, 2, hidden_dims=(8,), discriminator_hidden_dims=(8,))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        train_gan(gan, torch.full((10, 4), 2.0), GANConfig(steps=1))
    with pytest.raises(DataError, match="shape"):
        train_gan(gan, torch.rand(10, 5), GANConfig(steps=1))
    with pytest.raises(DataError, match="NaN"):
        train_gan(gan, torch.full((10, 4), float("nan")), GANConfig(steps=1))
    with pytest.raises(DataError, match="codes of shape"):
        gan.generate(torch.zeros(3, 5))


def test_training_moves_samples_to_the_data():
    x = toy_data()
    gan = toy_gan()
    before = gan.sample(2000)
    assert abs(float(before.mean()) - DATA_MEAN) > 1.0      # the test below is not trivially true
    result = train_gan(gan, x, GANConfig(steps=1500, batch_size=64, learning_rate=1e-3))
    after = gan.sample(2000)
    assert abs(float(after.mean()) - DATA_MEAN) < MEAN_TOLERANCE, float(after.mean())
    low, high = SD_RATIO_RANGE
    assert low < float(after.std()) / DATA_SD < high, float(after.std())
    # Near the game's equilibrium D is about 1/2 on both real and fake points.
    assert 0.3 < float(result.fake_score[-200:].mean()) < 0.7


def test_inversion_recovers_generated_points():
    torch.manual_seed(0)
    gan = GAN(20, 2, hidden_dims=(16,), discriminator_hidden_dims=(8,))
    with torch.no_grad():                          # a generator whose output depends on z clearly
        for parameter in gan.generator.parameters():
            parameter.mul_(4.0)
    z = torch.randn(6, 2) * 0.5
    target = gan.generate(z).detach()
    noise = torch.rand(6, 20)
    before = [p.clone() for p in gan.parameters()]
    on_surface = invert_generator(gan, target, num_steps=400)
    off_surface = invert_generator(gan, noise, num_steps=400)
    assert on_surface.z.shape == (6, 2) and on_surface.reconstruction.shape == (6, 20)
    assert float(on_surface.squared_error.max()) < 1e-4
    assert float(off_surface.squared_error.min()) > 100 * float(on_surface.squared_error.max())
    assert all(torch.equal(a, b) for a, b in zip(before, gan.parameters()))
    assert all(p.grad is None for p in gan.parameters())
