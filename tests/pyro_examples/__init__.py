"""Pyro's published example programs, copied verbatim (Apache-2.0; see each file's notice).

``vae`` (examples/vae/vae.py, the VAE tutorial), ``ss_vae_m2`` (examples/vae/ss_vae_M2.py
with ``custom_mlp``), ``cvae`` (examples/cvae/) and ``prodlda`` (tutorial/source/prodlda.ipynb).
Only imports and script code (data loaders, plotting, training loops) were changed or left
out, as each file says; the model and guide code is as a user would paste it.
"""
