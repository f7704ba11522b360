"""The compiled JAX peers as baselines: NumPyro SVI, BlackJAX NUTS and a jitted IWAE.

Each peer runs the same model, data and objective as ppl_vae, from the same
checkpoint: :mod:`peers.jax_vae` ports a trained ppl_vae VAE to pure JAX
functions and checks its log joint against ppl_vae's before anything is timed.
The driver ``benchmarks/peers_vs_ppl_vae.py`` runs ppl_vae and each peer side
by side in one run and prints ratios.

The peers need the optional ``bench`` extra (``pip install -e '.[bench]'``);
CI does not install it. Nothing here is imported by the library.
"""

from __future__ import annotations

import importlib

#: What to run when a peer's package is missing.
INSTALL_HINT = "pip install -e '.[bench]'"

#: The packages each peer needs, in the order they are checked.
PEER_PACKAGES: dict[str, tuple[str, ...]] = {
    "numpyro_svi": ("jax", "numpyro", "optax"),
    "blackjax_nuts": ("jax", "blackjax"),
    "jax_iwae": ("jax",),
}


def missing_package(packages: tuple[str, ...]) -> str | None:
    """The one line saying which package is missing and how to install it, or None.

    Parameters
    ----------
    packages : tuple of str
        Importable module names, e.g. ``("jax", "numpyro")``.
    """
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            return f"{name} not installed: {INSTALL_HINT}"
    return None
