"""One error type per kind of problem, whichever module meets it.

A setting out of range or unknown (a data set's name or option, a mode, a
count) raises :class:`ConfigError`; data that cannot be used as given (shape,
dtype, values, or a tensor on another device than the model) raise
:class:`DataError`; a loss that became NaN or infinite while fitting raises
:class:`TrainingDivergedError`. Before issue 16 each of the three conditions
named in the table's comments raised one type in one module and another
elsewhere.
"""

from __future__ import annotations

import math

import pyro
import pytest
import torch

from ppl_vae import VAE, GaussianMixture, SVIConfig, train
from ppl_vae.data import check_binarize_mode, load_dataset
from ppl_vae.data.corruptions import shift_images
from ppl_vae.errors import ConfigError, DataError, TrainingDivergedError
from ppl_vae.evaluation import active_units, kl_per_dimension
from ppl_vae.inference import fit_local_gaussian, iwae
from ppl_vae.models import GAN, GANConfig, train_gan

DATA_DIM, LATENT_DIM = 6, 2


def _vae(broken: bool = False) -> VAE:
    """A small VAE; ``broken``: its decoder gives NaN logits, so every loss is NaN."""
    vae = VAE(DATA_DIM, LATENT_DIM, hidden_dims=(8,))
    if broken:
        with torch.no_grad():
            vae.decoder.net[-1].bias.fill_(math.nan)
    return vae


def _x(device: str = "cpu") -> torch.Tensor:
    return torch.rand(8, DATA_DIM, generator=torch.Generator().manual_seed(0)).round().to(device)


def _broken_gan() -> GAN:
    gan = GAN(DATA_DIM, LATENT_DIM, hidden_dims=(8,), discriminator_hidden_dims=(8,))
    with torch.no_grad():
        next(gan.parameters()).fill_(math.nan)
    return gan


def _broken_mixture() -> GaussianMixture:
    mixture = GaussianMixture(DATA_DIM, 2)
    with torch.no_grad():
        for parameter in mixture.parameters():
            parameter.fill_(math.nan)
    return mixture


#: (what is wrong, the call, the type it must raise, a word of its message).
CASES = [
    # Settings. Unknown data-set names and options, and the binarize mode, were DataError.
    ("unknown data set", lambda: load_dataset("mnst"), ConfigError, "did you mean"),
    ("option of another data set", lambda: load_dataset("digits", image_size=16), ConfigError,
     "belong to strokes"),
    ("unknown linear-gaussian option", lambda: load_dataset("linear-gaussian", num_point=9),
     ConfigError, "num_point'"),
    ("unknown strokes option", lambda: load_dataset("strokes", num_point=9), ConfigError,
     "num_point'"),
    ("test_fraction out of range", lambda: load_dataset("digits", test_fraction=0.0), ConfigError,
     "test_fraction"),
    ("unknown binarize mode", lambda: check_binarize_mode("sometimes"), ConfigError, "binarize"),
    ("unknown binarize mode in SVIConfig", lambda: SVIConfig(binarize="sometimes"), ConfigError,
     "binarize"),
    ("image_shape of three sides", lambda: shift_images(_x(), (2, 3, 1)), ConfigError,
     "image_shape"),
    # Data. A tensor on another device than the model was ConfigError in models/base.py and
    # DataError in models/gan.py; a meta tensor stands in for "another device" on a CPU.
    ("data file missing", lambda: load_dataset("npy:/no/such/file.npy"), DataError, "file.npy"),
    ("data on another device: encode", lambda: _vae().encode(_x("meta")), DataError, "meta"),
    ("data on another device: iwae", lambda: iwae(_vae(), _x("meta"), 2), DataError, "meta"),
    ("data on another device: kl_per_dimension", lambda: kl_per_dimension(_vae(), _x("meta")),
     DataError, "meta"),
    ("data on another device: active_units", lambda: active_units(_vae(), _x("meta")), DataError,
     "meta"),
    ("data on another device: train", lambda: train(_vae(), _x("meta"), SVIConfig(epochs=1),
                                                    progress=False), DataError, "meta"),
    ("data on another device: train_gan", lambda: train_gan(
        GAN(DATA_DIM, LATENT_DIM, hidden_dims=(8,)), _x("meta"), GANConfig(steps=1)),
     DataError, "meta"),
    ("data of another dtype", lambda: _vae().encode(_x().double()), DataError, "float64"),
    # Divergence. fit_local_gaussian and train_gan raised DataError, train and
    # GaussianMixture.fit TrainingDivergedError.
    ("SVI training diverges", lambda: train(_vae(broken=True), _x(), SVIConfig(epochs=1),
                                            progress=False), TrainingDivergedError, "diverged"),
    ("local posterior fit diverges", lambda: fit_local_gaussian(_vae(broken=True), _x()[:2],
                                                                max_steps=50),
     TrainingDivergedError, "diverged"),
    ("GAN training diverges", lambda: train_gan(_broken_gan(), _x(), GANConfig(steps=2,
                                                                                batch_size=4)),
     TrainingDivergedError, "diverged"),
    ("mixture fit diverges", lambda: _broken_mixture().fit(_x(), num_steps=2, initialize=False),
     TrainingDivergedError, "lower the learning rate"),
]


@pytest.mark.filterwarnings("ignore:Encountered NaN:UserWarning")
@pytest.mark.parametrize(("problem", "call", "error", "message"), CASES,
                         ids=[case[0] for case in CASES])
def test_each_kind_of_problem_raises_its_one_type(problem, call, error, message):
    kinds = {ConfigError, DataError, TrainingDivergedError}
    with pyro.validation_enabled(False):  # the NaN parameters must reach the loss, not a validator
        with pytest.raises(tuple(kinds)) as raised:
            call()
    assert type(raised.value) is error, f"{problem}: {type(raised.value).__name__}: {raised.value}"
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)  # one line, naming the problem and the fix
