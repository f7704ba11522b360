# %% [markdown]
# # 3. Variational inference and the ELBO
#
# *Run time: about 50 seconds on an idle 2-core CPU (measured: 49 s; `PPL_VAE_SMOKE=1`: seconds).*
#
# The evidence p_θ(x) = ∫ p_θ(x | z) p(z) dz has no closed form when the
# decoder is a neural network, so neither does the posterior
# p_θ(z | x) = p_θ(x | z) p(z) / p_θ(x). Variational inference stops trying to
# compute it. It picks a simple family of distributions, here the diagonal
# Gaussian q_φ(z | x) = N(μ_φ(x), diag σ_φ(x)²) that an encoder network
# produces, and looks for the member closest to the true posterior.
#
# For any q, the log-evidence splits into two non-negative pieces:
#
# $$\log p_\theta(x) = \mathrm{ELBO}(x) + \mathrm{KL}\big(q_\phi(z \mid x) \,\|\, p_\theta(z \mid x)\big)$$
#
# $$\begin{aligned}
# \mathrm{ELBO}(x) &= \mathbb{E}_{q}\big[\log p_\theta(x, z) - \log q_\phi(z \mid x)\big] \\
#   &= \underbrace{\mathbb{E}_{q}\big[\log p_\theta(x \mid z)\big]}_{\text{reconstruction}}
#      - \underbrace{\mathrm{KL}\big(q_\phi(z \mid x) \,\|\, p(z)\big)}_{\text{regularizer}}
# \end{aligned}$$
#
# The KL to the true posterior cannot be computed, but it is never negative,
# so the ELBO is a lower bound on log p_θ(x). Raising it over φ pushes q
# towards the true posterior (the bound tightens); raising it over θ makes the
# data more probable under the model. A VAE does both at once, by stochastic
# gradient ascent on the ELBO averaged over the training images.
#
# This tutorial
#
# 1. computes the ELBO by hand from the two Pyro programs `vae.model` and
#    `vae.guide`, and checks it against the loss that training optimizes;
# 2. trains a VAE with a **two-dimensional** latent space on real digits and
#    follows the test ELBO and its two terms over the epochs;
# 3. looks at what the two-dimensional code has learned: reconstructions, the
#    map of encoded test digits, the decoded latent plane and a straight-line
#    interpolation between two digits.

# %% tags=["hide-input"]
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import TraceMeanField_ELBO
from torch.distributions import kl_divergence

from ppl_vae import VAE, SVIConfig, load_dataset, resolve_device, train
from ppl_vae.data import evaluation_data
from ppl_vae.evaluation.plots import image_grid
from ppl_vae.inference import elbo_terms

SMOKE = os.environ.get("PPL_VAE_SMOKE") == "1"
OUT = Path(__file__).resolve().parent / ("outputs/smoke" if SMOKE else "outputs") / "03_variational_inference"
OUT.mkdir(parents=True, exist_ok=True)
device = resolve_device("auto")
pyro.set_rng_seed(0)

# %% [markdown]
# ## The data and an untrained model
#
# `mnist5k`: 4,500 training and 500 test MNIST digits (50 per class). The
# Bernoulli likelihood is a distribution over black-and-white pixels, so the
# model trains on `binarize="dynamic"` (a fresh 0/1 draw of every image each
# epoch) and is scored on one fixed, seeded binary copy of the test set,
# `evaluation_data(test_x, "dynamic", seed)`: the same copy `train` uses for
# its per-epoch test numbers.

# %%
data = load_dataset("digits" if SMOKE else "mnist5k").to(device)
height, width = data.image_shape
config = SVIConfig(epochs=2 if SMOKE else 200, binarize="dynamic", seed=0)
test_binary = evaluation_data(data.test_x, config.binarize, config.seed)
vae = VAE(data.data_dim, latent_dim=2, hidden_dims=(400,)).to(device)
print(f"{data.train_x.shape[0]} training and {data.test_x.shape[0]} test images of "
      f"{height}x{width} pixels; latent_dim = {vae.latent_dim}")

# %% [markdown]
# ## The ELBO is the model and the guide, side by side
#
# The two halves of the ELBO live in the two Pyro programs:
#
# | term | Pyro site | program |
# | --- | --- | --- |
# | z ~ q_φ(z \| x), and log q_φ(z \| x) | `"z"` | `vae.guide(x)` (the encoder) |
# | log p(z) | `"z"` | `vae.model(x)` (the prior) |
# | log p_θ(x \| z) | `"x"` (observed) | `vae.model(x)` (the decoder) |
#
# One Monte Carlo sample of the ELBO runs the guide to draw z, then *replays*
# the model with that z, so both programs score the same code:
#
# $$\mathrm{ELBO} \approx \log p_\theta(x \mid z) + \log p(z) - \log q_\phi(z \mid x), \qquad z \sim q_\phi(z \mid x)$$
#
# The first term is the reconstruction; the last two, averaged over z, are
# −KL(q || p(z)). For two Gaussians that KL also has a closed form,
# KL = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²), which is what Pyro's
# `TraceMeanField_ELBO` uses and what `train` minimizes the negative of.
# Below we do all of it by hand on four test digits with the *untrained*
# model: the bound is poor (hundreds of nats below zero), because the decoder
# does not yet know what a digit looks like.

# %%
x = test_binary[:4]
with torch.no_grad():
    torch.manual_seed(1)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    z = guide_trace.nodes["z"]["value"]
    log_q = guide_trace.nodes["z"]["fn"].log_prob(z)
    log_prior = model_trace.nodes["z"]["fn"].log_prob(z)
    log_likelihood = model_trace.nodes["x"]["fn"].log_prob(x)
    one_sample_elbo = log_likelihood + log_prior - log_q

    loc, scale = vae.encode(x)
    closed_form_kl = kl_divergence(dist.Normal(loc, scale).to_event(1),
                                        dist.Normal(torch.zeros_like(loc), 1.0).to_event(1))
    by_formula = 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log()).sum(-1)
    torch.manual_seed(1)                               # the same draw of z as above
    pyro_loss = TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x)


def row(name: str, values: torch.Tensor) -> None:
    print(f"{name:<26}" + "".join(f"{v:10.2f}" for v in values.tolist()))


print(f"{'per image':<26}" + "".join(f"{'image ' + str(i):>10}" for i in range(len(x))))
row("log p(x | z)", log_likelihood)
row("log p(z) - log q(z | x)", log_prior - log_q)
row("KL, closed form", closed_form_kl)
row("KL, by the formula", by_formula)
row("one-sample ELBO", one_sample_elbo)
row("mean-field ELBO", log_likelihood - closed_form_kl)
print(f"sum of the mean-field ELBOs: {(log_likelihood - closed_form_kl).sum().item():.2f}; "
      f"Pyro's TraceMeanField_ELBO loss for the same z: {pyro_loss.item():.2f}")

# %% [markdown]
# The one-sample KL estimate log q − log p(z) is noisy and can even come out
# negative for one draw; the closed form is exact. Pyro's loss equals minus the
# sum of the per-image mean-field ELBOs: `train` computes exactly this loss on
# each minibatch (with `num_data=4500`, so the `"data"` plate scales a batch of
# 128 up to the whole training set) and takes an Adam step on the encoder's φ
# and the decoder's θ together. That is stochastic variational inference (SVI).
#
# ## Training: maximizing the ELBO by SVI
#
# After every epoch `train` evaluates the test ELBO and its two terms, each
# from one z per test image (so the curves carry a little Monte Carlo noise).

# %%
result = train(vae, data.train_x, config, test_x=data.test_x)
history = result.history
epochs = [record["epoch"] for record in history]
last = history[-1]
print(f"trained {config.epochs} epochs in {last['wall_time']:.1f} s")
every = max(1, len(history) // 8)
shown = sorted({0, *range(every - 1, len(history), every)})
for record in (history[i] for i in shown):
    print(f"epoch {record['epoch']:4d}: train ELBO {record['train_elbo']:8.2f}   "
          f"test ELBO {record['test_elbo']:8.2f} = reconstruction "
          f"{record['test_reconstruction']:8.2f} - KL {record['test_kl']:5.2f}")

# %%
figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
left.plot(epochs, [r["train_elbo"] for r in history], color="0.6", label="train ELBO")
left.plot(epochs, [r["test_elbo"] for r in history], color="C0", label="test ELBO")
left.plot(epochs, [r["test_reconstruction"] for r in history], color="C1",
          label="test reconstruction E_q[log p(x | z)]")
left.set_xlabel("epoch")
left.set_ylabel("nats per image")
left.set_title("ELBO = reconstruction − KL (higher is better)")
low = min(r["test_elbo"] for r in history[len(history) // 10:])
left.set_ylim(low - 15, max(r["test_reconstruction"] for r in history) + 10)
left.legend(loc="lower right")
right.plot(epochs, [r["test_kl"] for r in history], color="C3")
right.set_xlabel("epoch")
right.set_ylabel("nats per image")
right.set_title("test KL(q(z | x) || p(z))")
figure.suptitle(f"Test ELBO and its two terms while training a VAE with latent_dim = "
                f"{vae.latent_dim}")
figure.savefig(OUT / "elbo_terms.png", dpi=110)
print(f"wrote {OUT / 'elbo_terms.png'}")

# %% [markdown]
# The reconstruction term climbs fast and then slowly; the KL term *grows*
# during training. At the start the encoder sends every image close to the
# prior (a KL of a fraction of a nat, as in the table above), so the code
# tells the decoder almost nothing; as training goes on, the encoder spends
# more nats on each code, placing it where its digit is decoded well, because
# the gain in reconstruction outweighs the KL cost. A 2-D code can
# hold only a few nats per image, so the reconstruction stays far below zero:
# the model cannot describe each image's individual strokes.
#
# The per-epoch numbers use one sample of z; a K = 100 estimate on the final
# model removes most of that noise.

# %%
vae.eval()
final = elbo_terms(vae, test_binary, num_samples=10 if SMOKE else 100)
reconstruction, kl = final["reconstruction"], final["kl"]
print(f"final test ELBO (K = {reconstruction.num_samples}): "
      f"{reconstruction.mean - kl.mean:.2f} nats per image = reconstruction "
      f"{reconstruction.mean:.2f} (± {reconstruction.mean_stderr:.2f}) - KL {kl.mean:.2f} "
      f"(± {kl.mean_stderr:.2f})")
print(f"last epoch's one-sample values: ELBO {last['test_elbo']:.2f}, reconstruction "
      f"{last['test_reconstruction']:.2f}, KL {last['test_kl']:.2f}")

# %% [markdown]
# ## Reconstructions
#
# `vae.reconstruct(x)` encodes x, takes the mean μ_φ(x) of q(z | x) and
# decodes it to pixel probabilities. Two numbers per image cannot hold the
# details, so the reconstructions are blurry "typical" digits. Classes with a
# region of their own in the latent space (0, 1, 7, 9) come back recognizably;
# for others the reconstruction often keeps only the rough shape and slant and
# turns into a neighbouring class: 4 into 9, and 2, 3, 5 or 6 into an
# 8-like blob. This is the price of a 2-D bottleneck, not of the ELBO: the
# same model with more latent dimensions reconstructs them well.

# %%
labels = data.test_y.cpu()
chosen = torch.cat([torch.nonzero(labels == digit).flatten()[:2] for digit in range(10)])
chosen = chosen.reshape(10, 2).T.flatten()            # two rows, 0..9 in each
originals, inputs = data.test_x[chosen], test_binary[chosen]
reconstructions = vae.reconstruct(inputs)
print("reconstructed test digits (labels):", labels[chosen].tolist())

rows = ("test digit (grey values)", "binary copy given to the encoder",
        "reconstruction: mean of p(x | μ(x))")
figure, axes = plt.subplots(3, 1, figsize=(8, 6.4), layout="constrained")
for axis, images, title in zip(axes, (originals, inputs, reconstructions), rows):
    axis.imshow(image_grid(images.cpu(), (height, width), num_columns=10),
                cmap="gray_r", vmin=0, vmax=1)
    axis.set_title(title)
    axis.set_axis_off()
figure.suptitle("Twenty test digits through a 2-D code")
figure.savefig(OUT / "reconstructions.png", dpi=110)
print(f"wrote {OUT / 'reconstructions.png'}")

# %% [markdown]
# ## The latent map
#
# Each test digit's encoder mean μ_φ(x) is a point in the plane. Nobody told
# the model the labels, yet the digits of one class gather together: the
# ELBO rewards codes from which the decoder can rebuild the image, and images
# of one class look alike. The KL term keeps the cloud close to the prior
# N(0, I), most of it within a radius of about 3.

# %%
with torch.no_grad():
    means, scales = vae.encode(test_binary)
means, scales = means.cpu(), scales.cpu()
print("encoder means of the test set: average", means.mean(0).numpy().round(2),
      "standard deviation", means.std(0).numpy().round(2))
print("average encoder standard deviation sigma(x):", scales.mean(0).numpy().round(3))
for digit in range(10):
    centre = means[labels == digit].mean(0).numpy().round(2)
    print(f"  digit {digit}: centre of its codes {centre}")

figure, axis = plt.subplots(figsize=(7, 6), layout="constrained")
points = axis.scatter(means[:, 0], means[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5,
                      s=12, alpha=0.85)
colorbar = figure.colorbar(points, ax=axis, ticks=range(10))
colorbar.set_label("digit label (test_y)")
axis.set_xlabel("z[0]  (encoder mean)")
axis.set_ylabel("z[1]  (encoder mean)")
axis.set_aspect("equal")
axis.set_title(f"Encoder means of all {len(labels)} test digits")
figure.savefig(OUT / "latent_map.png", dpi=110)
print(f"wrote {OUT / 'latent_map.png'}")

# %% [markdown]
# ## The decoded latent plane
#
# Running the decoder on a regular 21 × 21 grid of codes on [−3, 3]² draws
# the model's whole "vocabulary" in one picture. Compare it with the latent
# map: each region decodes to the class whose codes live there, and between
# regions one digit morphs into the next. Every code decodes to something
# digit-like, because the KL term forces the encoder to use the space of the
# prior without large gaps. Classes that the latent map shows crowded in the
# middle own only a small patch here, or none at all.

# %%
num_steps = 21
values = torch.linspace(-3, 3, num_steps).round(decimals=4)
z1, z0 = torch.meshgrid(values.flip(0), values, indexing="ij")   # top row: largest z[1]
codes = torch.stack([z0.flatten(), z1.flatten()], dim=-1).to(device)
with torch.no_grad():
    plane = vae.decode(codes).mean.cpu()
print(f"decoded {len(codes)} codes on [-3, 3]^2; grid values: {values.numpy().round(2)}")

figure, axis = plt.subplots(figsize=(8.5, 8.5), layout="constrained")
axis.imshow(image_grid(plane, (height, width), num_columns=num_steps),
            cmap="gray_r", vmin=0, vmax=1)
tick_index = range(0, num_steps, 5)
centres = [(width + 2) * i + width / 2 for i in tick_index]
axis.set_xticks(centres, [f"{values[i] + 0.0:.1f}" for i in tick_index])      # + 0.0: no "-0.0"
axis.set_yticks(centres, [f"{values.flip(0)[i] + 0.0:.1f}" for i in tick_index])
axis.set_xlabel("z[0]")
axis.set_ylabel("z[1]")
axis.set_title(f"Decoder mean p(x | z) over a {num_steps} × {num_steps} grid of codes")
figure.savefig(OUT / "latent_plane.png", dpi=110)
print(f"wrote {OUT / 'latent_plane.png'}")

# %% [markdown]
# ## Interpolating between two digits
#
# Take two test digits of different classes, encode them to μ_A and μ_B, and
# decode ten codes on the straight line z_t = (1 − t) μ_A + t μ_B. As
# endpoints we take, for each class, the test digit whose code lies closest
# to the centre of its class's codes: a typical member. The path crosses
# whatever classes lie between the two in the latent map, so the digit
# changes shape gradually, passing through intermediate digits rather than
# fading one image into the other as pixel averaging would.

# %%
def typical(digit: int) -> int:
    """Index of the test digit of this class whose code is nearest its class's mean code."""
    members = torch.nonzero(labels == digit).flatten()
    distances = (means[members] - means[members].mean(0)).norm(dim=-1)
    return int(members[distances.argmin()])


pairs = [(typical(a), typical(b)) for a, b in ((1, 0), (7, 0))]
t = torch.linspace(0, 1, 10, device=device)
figure = plt.figure(figsize=(11, 3.9), layout="constrained")
grid = figure.add_gridspec(len(pairs), 2, width_ratios=(1, 2.6))
map_axis = figure.add_subplot(grid[:, 0])
map_axis.scatter(means[:, 0], means[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5,
                 s=6, alpha=0.35)
for row, (index_a, index_b) in enumerate(pairs):
    with torch.no_grad():
        ends, _ = vae.encode(test_binary[[index_a, index_b]])
        path = (1 - t[:, None]) * ends[0] + t[:, None] * ends[1]
        decoded = vae.decode(path).mean
    strip = torch.cat([data.test_x[[index_a]], decoded, data.test_x[[index_b]]])
    name = f"{int(labels[index_a])} → {int(labels[index_b])}"
    print(f"interpolation {name}: test images {index_a} and {index_b}, "
          f"from z = {ends[0].cpu().numpy().round(2)} to z = {ends[1].cpu().numpy().round(2)}")
    line = path.cpu()
    map_axis.plot(line[:, 0], line[:, 1], "o-", color="k" if row == 0 else "C3", ms=3,
                  label=f"path {name}")
    axis = figure.add_subplot(grid[row, 1])
    axis.imshow(image_grid(strip.cpu(), (height, width), num_columns=len(strip)),
                cmap="gray_r", vmin=0, vmax=1)
    axis.set_xticks([(width + 2) * i + width / 2 for i in range(len(strip))],
                    ["A"] + [f"{v:.2f}" for v in t.tolist()] + ["B"])
    axis.set_yticks([])
    axis.set_xlabel("t   (A, B: the two test digits; between them: decoded z_t)")
    axis.set_title(f"Interpolation {name}")
map_axis.set_xlabel("z[0]")
map_axis.set_ylabel("z[1]")
map_axis.set_aspect("equal")
map_axis.legend(loc="best", fontsize=8)
map_axis.set_title("the two straight paths in z")
figure.suptitle("Straight lines in the latent space, decoded")
figure.savefig(OUT / "interpolation.png", dpi=110)
print(f"wrote {OUT / 'interpolation.png'}")

# %% [markdown]
# ## Touch the latent space
#
# The figures above are snapshots. `write_explorer` puts the same model into
# one self-contained web page, `explorer.html`: the decoder's weights are in
# the page and its JavaScript evaluates the network, so it needs no server
# and no network. Move the pointer over the plane and the digit at that code
# is decoded as you move; click a test digit to see it with its q(z | x) as
# 1- and 2-sd ellipses; drag a line to decode ten steps along it; press
# "Sample 100" to decode 100 codes from the prior. For a trained run,
# `ppl-vae explore --checkpoint RUN --out explorer.html` writes the same page,
# and `--compare DIR` adds the NUTS draws, q* and the gaps of `ppl-vae compare`.
# The documentation site shows this tutorial's page.

# %%
from ppl_vae.explorer import write_explorer

size = write_explorer(vae, test_binary, OUT / "explorer.html", labels=data.test_y,
                      image_shape=(height, width),
                      title=f"Tutorial 3: the latent-2 VAE on {data.name}")
print(f"wrote {OUT / 'explorer.html'} ({size / 1e6:.1f} MB, {len(test_binary)} test digits)")

# %% [markdown]
# ## What to take away
#
# * The ELBO is computed from two programs: the guide proposes a code, the
#   model scores it. Its two terms pull in opposite directions: the
#   reconstruction wants informative, precise codes, the KL wants every code
#   distribution to look like the prior.
# * Maximizing it by SVI fits the decoder and the encoder together; the gap
#   between the ELBO and log p(x), KL(q || p(z | x)), is the subject of the
#   next tutorials.
# * With two latent dimensions the code is easy to look at but holds little:
#   the test ELBO here is far below that of the 20-dimensional default model
#   in the README, and the reconstructions are blurry prototypes.
