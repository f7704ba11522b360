"""The tensors both sides of a comparison use: the model, the binarized digits, the chain starts.

Torch only (no JAX here), so ppl_vae's side of every benchmark and the peers'
side read the same numbers from one place:

* :func:`load_vae`: a trained ppl_vae VAE from a checkpoint folder, or an
  untrained seeded one for quick runs;
* :func:`evaluation_digits`: the fixed binarized test digits that ppl_vae's
  ``evaluate`` and ``benchmarks/nuts_schemes.py`` score;
* :func:`nuts_starts`: the chains' starting points and initial inverse mass
  matrices exactly as :func:`ppl_vae.inference.mcmc.sample_posterior` makes them
  for the batched scheme (encoder mean plus ``init_scale`` encoder standard
  deviations of seeded noise, one generator per chain; the encoder variances as
  the initial inverse mass).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ppl_vae.checkpoint import load_checkpoint
from ppl_vae.data import evaluation_data, load_dataset
from ppl_vae.errors import ConfigError
from ppl_vae.inference.mcmc import NUTSConfig
from ppl_vae.inference.mcmc.api import _initial_points
from ppl_vae.models import VAE, build_model


@dataclass(frozen=True)
class Problem:
    """A model and the binarized points it is evaluated on.

    Attributes
    ----------
    model : VAE
        In eval mode, on the CPU.
    x : Tensor, shape (num_points, data_dim)
        Binary test digits (one seeded draw, as ppl_vae evaluates them).
    """

    model: VAE
    x: torch.Tensor


def load_vae(checkpoint: str | None, latent_dim: int = 20, hidden: int = 400, seed: int = 0) -> VAE:
    """A ppl_vae VAE from a checkpoint folder, or an untrained 784-hidden-latent one seeded ``seed``."""
    if checkpoint is None:
        torch.manual_seed(seed)
        return VAE(784, latent_dim, hidden_dims=(hidden,)).eval()
    saved = load_checkpoint(checkpoint)
    if saved["model_class"] != "VAE":
        raise ConfigError(f"{checkpoint} holds a {saved['model_class']}, not a VAE; pass a VAE checkpoint "
                          "(`make demo` writes runs/demo, `make runs/z2/checkpoint.pt` runs/z2)")
    model = build_model(saved["model_class"], saved["model_config"])
    model.load_state_dict(saved["model_state"])
    return model.eval()


def evaluation_digits(checkpoint: str | None, num_points: int | None = None) -> torch.Tensor:
    """The binarized mnist5k test digits a checkpoint is evaluated on, shape (num_points, 784).

    The checkpoint's data set, data seed and binarization when one is given
    (as ``benchmarks/nuts_schemes.py`` does); mnist5k, seed 0, dynamic otherwise.
    """
    if checkpoint is None:
        data, mode, seed = load_dataset("mnist5k"), "dynamic", 0
    else:
        saved = load_checkpoint(checkpoint)
        meta = saved["metadata"]
        data = load_dataset(meta["data"], root=meta["data_root"], seed=meta["data_seed"])
        mode, seed = saved["svi_config"]["binarize"], meta["data_seed"]
    x = evaluation_data(data.test_x, mode, seed)
    return x if num_points is None else x[:num_points]


def problem(checkpoint: str | None, num_points: int | None = None, latent_dim: int = 20,
            hidden: int = 400) -> Problem:
    """:func:`load_vae` and :func:`evaluation_digits` together."""
    return Problem(load_vae(checkpoint, latent_dim, hidden), evaluation_digits(checkpoint, num_points))


@torch.no_grad()
def nuts_starts(model: VAE, x: torch.Tensor, config: NUTSConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Starting points and initial inverse mass matrices of ppl_vae's batched NUTS.

    Parameters
    ----------
    model : VAE
    x : Tensor, shape (num_points, data_dim)
    config : NUTSConfig
        Its ``seed``, ``num_chains`` and ``init_scale`` decide the starts.

    Returns
    -------
    init : Tensor, shape (num_chains, num_points, latent_dim)
        Chain ``c`` starts at ``loc + init_scale * scale * eps_c``, ``eps_c``
        from a generator seeded ``seed + c`` (ppl_vae's ``_initial_points``).
    inverse_mass : Tensor, shape (num_chains, num_points, latent_dim, latent_dim)
        ``diag(scale^2)``, the same for every chain (ppl_vae's dense start).
    """
    loc, scale = model.encode(x)
    init = torch.stack([_initial_points(loc, scale, config, chain) for chain in range(config.num_chains)])
    inverse_mass = torch.diag_embed(scale.pow(2)).expand(config.num_chains, *scale.shape, scale.shape[-1])
    return init, inverse_mass
