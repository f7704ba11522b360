# %% [markdown]
# # 6. A VAE against a plain autoencoder
#
# *Run time: about 50 seconds on an idle 2-core CPU (measured: 50 s; `PPL_VAE_SMOKE=1`: seconds).*
#
# An autoencoder squeezes each image through a short code and is trained to
# get the image back: encoder e(x) → code z → decoder g(z) → x̂, with a
# reconstruction loss and nothing else. A VAE is built from the same two
# networks, but it changes two things:
#
# | | plain autoencoder | VAE |
# | --- | --- | --- |
# | code of an image | one point z = e(x) | a distribution q(z \| x) = N(μ(x), diag σ(x)²) |
# | what training maximizes | log p(x \| z = e(x)), the reconstruction | the ELBO: reconstruction − KL(q(z \| x) ‖ p(z)) |
# | distribution over codes | none | the prior p(z) = N(0, I) |
# | making a new image | no recipe | z ~ p(z), then x ~ p(x \| z) |
#
# This tutorial trains both with identical networks and a 2-D code, so the
# code space can be drawn, and looks at what the prior and the KL term buy:
#
# 1. the autoencoder written as a Pyro model and guide, whose ELBO is
#    exactly its reconstruction log-likelihood, so the same `train` fits it;
# 2. reconstructions, where the autoencoder does as well or better;
# 3. the two code spaces: an autoencoder's codes sit at a scale and place
#    that nothing in its loss fixes, a VAE's near N(0, I);
# 4. making new digits by decoding random codes, and where those codes fall
#    relative to the codes of real digits: the "holes" of the code space;
# 5. straight-line interpolation between two digits in each code space.

# %% tags=["hide-input"]
import copy
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyro
import torch
from matplotlib.patches import Circle, Rectangle
from pyro.infer import TraceMeanField_ELBO

from ppl_vae import (
    VAE,
    Autoencoder,
    ConfigError,
    SVIConfig,
    load_dataset,
    resolve_device,
    train,
)
from ppl_vae.data import evaluation_data
from ppl_vae.evaluation.plots import image_grid
from ppl_vae.inference import elbo_terms

SMOKE = os.environ.get("PPL_VAE_SMOKE") == "1"
OUT = Path(__file__).resolve().parent / ("outputs/smoke" if SMOKE else "outputs") / "06_vae_vs_autoencoder"
OUT.mkdir(parents=True, exist_ok=True)
device = resolve_device("auto")
pyro.set_rng_seed(0)

# %% [markdown]
# ## The data and the two models
#
# `mnist5k` (4,500 training and 500 test digits), trained with dynamic
# binarization (a fresh black-and-white draw of every image each epoch) and
# scored on one fixed binary copy of the test set, as in tutorial 3. Both
# models get the 784-400-2 encoder and the 2-400-784 decoder with a Bernoulli
# likelihood. The only difference in the networks: the VAE's encoder has 4
# outputs (μ and σ for 2 coordinates), the autoencoder's has 2 (the code).

# %%
data = load_dataset("digits" if SMOKE else "mnist5k").to(device)
height, width = data.image_shape
test_binary = evaluation_data(data.test_x, "dynamic", 0)
train_binary = evaluation_data(data.train_x, "dynamic", 0)      # one fixed copy, for the codes
train_labels, test_labels = data.train_y.cpu(), data.test_y.cpu()
vae = VAE(data.data_dim, latent_dim=2, hidden_dims=(400,)).to(device)
autoencoder = Autoencoder(data.data_dim, latent_dim=2, hidden_dims=(400,)).to(device)
for name, model in (("VAE", vae), ("autoencoder", autoencoder)):
    shapes = [tuple(p.shape) for p in model.parameters()]
    print(f"{name:<12} parameter shapes {shapes}")

# %% [markdown]
# ## An autoencoder as a Pyro program
#
# To train the autoencoder with the same SVI loop as the VAE, we write it as
# a model and a guide with the same sites:
#
# | site | VAE | `Autoencoder` |
# | --- | --- | --- |
# | `"z"` in the guide | `Normal(μ(x), σ(x)).to_event(1)` | `Delta(e(x), event_dim=1)`: all mass on one code |
# | `"z"` in the model | `Normal(0, 1)`, the prior | a flat improper density, log p(z) = 0 for every z |
# | `"x"` in the model | `Bernoulli(logits=g(z))`, observed | the same |
#
# Pyro scores a point mass at its own location with log-density 0 (a
# convention: a point mass has no density). With a flat prior the latent
# term of the ELBO is then log p(z) − log q(z | x) = 0 − 0, and
#
#     ELBO(x) = log p(x | z = e(x)),
#
# the negative binary cross-entropy of the reconstruction: ordinary
# autoencoder training. The check below runs both Pyro programs on four test
# digits of the untrained model and compares Pyro's loss with the
# reconstruction log-likelihood written out by hand. The KL term that
# `elbo_terms` reports is exactly zero, and `sample` refuses: without a prior
# there is nothing to draw codes from.

# %%
x = test_binary[:4]
with torch.no_grad():
    pyro_loss = TraceMeanField_ELBO().differentiable_loss(autoencoder.model, autoencoder.guide, x)
    codes, spread = autoencoder.encode(x)
    by_hand = autoencoder.decode(codes).log_prob(x)
    terms = elbo_terms(autoencoder, x)
print("log p(x | z = e(x)) per image:", by_hand.cpu().numpy().round(2))
print(f"minus their sum: {-by_hand.sum().item():.4f}; Pyro's ELBO loss: {pyro_loss.item():.4f}")
print("elbo_terms: reconstruction", terms["reconstruction"].per_point.cpu().numpy().round(2),
      "KL", terms["kl"].per_point.cpu().numpy().round(2))
print("encode returns the codes and a spread of", spread.abs().max().item())
try:
    autoencoder.sample(4)
except ConfigError as error:
    print("autoencoder.sample(4) raises ConfigError:", error)

# %% [markdown]
# ## Training both the same way
#
# Same settings, same seed, same number of epochs. For the autoencoder the
# "test ELBO" that `train` records is its test reconstruction log-likelihood
# (its KL column is zero); it is not a bound on log p(x), because the flat
# prior is not a probability distribution.

# %%
config = SVIConfig(epochs=2 if SMOKE else 100, binarize="dynamic", seed=0)
histories = {}
for name, model in (("VAE", vae), ("autoencoder", autoencoder)):
    result = train(model, data.train_x, config, test_x=data.test_x)
    histories[name] = result.history
    last = result.history[-1]
    print(f"{name:<12} {config.epochs} epochs in {last['wall_time']:5.1f} s: test ELBO "
          f"{last['test_elbo']:8.2f} = reconstruction {last['test_reconstruction']:8.2f} "
          f"- KL {last['test_kl']:5.2f}")
vae.eval()
autoencoder.eval()

# %%
figure, axis = plt.subplots(figsize=(8, 4.5), layout="constrained")
for name, color in (("VAE", "C0"), ("autoencoder", "C1")):
    history = histories[name]
    epochs = [r["epoch"] for r in history]
    axis.plot(epochs, [r["test_reconstruction"] for r in history], color=color,
              label=f"{name}: test reconstruction term")
epochs = [r["epoch"] for r in histories["VAE"]]
axis.plot(epochs, [r["test_elbo"] for r in histories["VAE"]], color="C0", ls="--",
          label="VAE: test ELBO (reconstruction − KL)")
values = [r["test_elbo"] for h in histories.values() for r in h[len(h) // 10:]]
axis.set_ylim(min(values) - 10, max(values) + 6)
axis.set_xlabel("epoch")
axis.set_ylabel("nats per test image (higher is better)")
axis.set_title("Same networks, same data: reconstruction over training")
axis.legend(loc="lower right")
figure.savefig(OUT / "training_curves.png", dpi=110)
print(f"wrote {OUT / 'training_curves.png'}")

# %% [markdown]
# The two curves part after about ten epochs, and the autoencoder's
# reconstruction term ends some 6 nats above the VAE's. Nothing costs the
# autoencoder anything to put each code exactly where its decoder likes it
# best. The VAE pays for every nat of information its code carries (the KL
# term, about 5 nats here) and has to decode from a *noisy* code
# z ~ q(z | x).
#
# ## Reconstructions
#
# To compare like with like, both models reconstruct from one code per
# image: the autoencoder from e(x), the VAE from the mean μ(x) of q(z | x)
# (what `reconstruct` does for either). We print two errors on the test set:
# the Bernoulli log-likelihood of the binary test image at that code, and the
# squared error between the decoded pixel probabilities and the grey-valued
# test image.

# %%
def reconstruction_error(model) -> tuple[float, float]:
    """Mean log p(x | code) of the binary test copy, and squared error against the grey images."""
    with torch.no_grad():
        code, _ = model.encode(test_binary)
        likelihood = model.decode(code)
        log_likelihood = likelihood.log_prob(test_binary).mean().item()
        squared = (likelihood.mean - data.test_x).pow(2).sum(-1).mean().item()
    return log_likelihood, squared


errors = {name: reconstruction_error(model) for name, model in
          (("VAE", vae), ("autoencoder", autoencoder))}
for name, (log_likelihood, squared) in errors.items():
    print(f"{name:<12} log p(x | one code) {log_likelihood:8.2f} nats per image; "
          f"squared error {squared:6.2f} per image")
final = elbo_terms(vae, test_binary, num_samples=10 if SMOKE else 100)
reconstruction, kl = final["reconstruction"], final["kl"]
print(f"VAE test ELBO (K = {reconstruction.num_samples}): {reconstruction.mean - kl.mean:.2f} "
      f"= reconstruction E_q[log p(x | z)] {reconstruction.mean:.2f} "
      f"(± {reconstruction.mean_stderr:.2f}) - KL {kl.mean:.2f} (± {kl.mean_stderr:.2f})")

chosen = torch.cat([torch.nonzero(test_labels == digit).flatten()[:2] for digit in range(10)])
chosen = chosen.reshape(10, 2).T.flatten().to(device)          # two rows, 0..9 in each
rows = [("test digit", data.test_x[chosen]),
        ("autoencoder: g(e(x))", autoencoder.reconstruct(test_binary[chosen])),
        ("VAE: mean of p(x | μ(x))", vae.reconstruct(test_binary[chosen]))]
figure, axes = plt.subplots(3, 1, figsize=(8, 6.4), layout="constrained")
for axis, (title, images) in zip(axes, rows):
    axis.imshow(image_grid(images.cpu(), (height, width), num_columns=10),
                cmap="gray_r", vmin=0, vmax=1)
    axis.set_title(title)
    axis.set_axis_off()
figure.suptitle("Twenty test digits through a 2-D code")
figure.savefig(OUT / "reconstructions.png", dpi=110)
print(f"wrote {OUT / 'reconstructions.png'}")

# %% [markdown]
# Both reconstruct through a 2-number bottleneck, so both give blurry,
# "typical" digits and turn some digits into a neighbouring class. The
# autoencoder does so less often (look at the 2s and 6s, which the VAE turns
# into 8-like blobs), and it is the better compressor on both numbers above.
# If reconstruction were the goal, the VAE's extra machinery would be a
# cost, not a gain.
#
# ## Two code spaces
#
# Each training digit's code (for the VAE, the mean μ(x)) is a point in the
# plane, coloured by its label. The circle of radius 2 around the origin
# holds 86% of the N(0, I) prior's mass: where a VAE samples its codes.

# %%
with torch.no_grad():
    train_codes = {"VAE": vae.encode(train_binary)[0].cpu(),
                   "autoencoder": autoencoder.encode(train_binary)[0].cpu()}
for name, codes in train_codes.items():
    low, high = codes.min(0).values, codes.max(0).values
    print(f"{name:<12} training codes: mean {codes.mean(0).numpy().round(2)}, "
          f"standard deviation {codes.std(0).numpy().round(2)}, "
          f"range z[0] [{low[0]:.1f}, {high[0]:.1f}], z[1] [{low[1]:.1f}, {high[1]:.1f}]")


def draw_codes(axis, codes: torch.Tensor, size: float = 5, alpha: float = 0.6):
    """Scatter codes coloured by their digit label; returns the scatter for a colour bar."""
    return axis.scatter(codes[:, 0], codes[:, 1], c=train_labels, cmap="tab10", vmin=-0.5,
                        vmax=9.5, s=size, alpha=alpha, linewidths=0)


figure, axes = plt.subplots(1, 2, figsize=(12, 5.4), layout="constrained")
for axis, (name, codes) in zip(axes, train_codes.items()):
    points = draw_codes(axis, codes)
    axis.add_patch(Circle((0, 0), 2.0, fill=False, color="k", lw=1.2, ls="--",
                          label="|z| = 2 (86% of N(0, I))"))
    axis.set_aspect("equal")
    axis.set_xlabel("z[0]")
    axis.set_ylabel("z[1]")
    axis.set_title(f"{name}: codes of {len(codes)} training digits")
    axis.legend(loc="upper right", fontsize=8)
colorbar = figure.colorbar(points, ax=axes, ticks=range(10))
colorbar.set_label("digit label")
figure.savefig(OUT / "latent_maps.png", dpi=110)
print(f"wrote {OUT / 'latent_maps.png'}")

# %% [markdown]
# The VAE's codes form a roughly round cloud centred near the origin, with a
# standard deviation a little above 1 and a few classes (0, 1, 7) reaching
# out to about 4. The KL term, ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²) per image,
# charges for every code moved away from 0 and for every σ far from 1, so
# the codes as a whole are pulled towards the prior N(0, I).
#
# The autoencoder's codes spread over a region four to six times wider, off
# centre, in arms that radiate from a crowded middle. Nothing in its loss
# sets that scale: multiply every code by 10 and divide the decoder's
# first-layer weights by 10, and every reconstruction stays exactly the same.
# The cell below does that to a copy of the trained autoencoder. Where the
# codes end up, and how far they spread, is left to the initialization and
# the optimizer.

# %%
stretched = copy.deepcopy(autoencoder)
with torch.no_grad():
    stretched.encoder.net[-1].weight.mul_(10.0)
    stretched.encoder.net[-1].bias.mul_(10.0)
    stretched.decoder.net[0].weight.div_(10.0)
    before = autoencoder.decode(autoencoder.encode(test_binary)[0]).log_prob(test_binary).mean()
    stretched_codes = stretched.encode(test_binary)[0]
    after = stretched.decode(stretched_codes).log_prob(test_binary).mean()
print(f"codes x 10: test log p(x | code) {before.item():.4f} before, {after.item():.4f} after; "
      f"the codes' standard deviation went from "
      f"{autoencoder.encode(test_binary)[0].std(0).detach().cpu().numpy().round(2)} to "
      f"{stretched_codes.std(0).cpu().numpy().round(2)}")

# %% [markdown]
# ## Making new digits: decode random codes
#
# A VAE generates by decoding z ~ N(0, I). Try the same with the autoencoder
# and two things can go wrong: its codes may not live where N(0, I) puts its
# draws, and, wherever they live, the gaps between them hold codes the
# decoder has never been trained on. We decode 64 draws from each of three
# recipes:
#
# 1. **VAE, z ~ N(0, I)**: the model's own prior;
# 2. **autoencoder, z ~ N(0, I)**: the same recipe, which the autoencoder
#    never agreed to;
# 3. **autoencoder, z ~ N(m, S)**: a Gaussian fitted to its training codes
#    (their mean m and covariance S), the obvious repair for the scale.
#
# To see *where* draws fall, we give every draw the label of its nearest
# training code (a rough "which digit is this" that needs no classifier) and
# call a draw **in a hole** when its 5th-nearest training code is farther
# away than that distance is for 99% of the training codes themselves. The
# threshold is measured in each model's own code space, so it adapts to the
# autoencoder's scale. As a calibration, held-out *test* codes should fall
# in a hole only about 1% of the time.

# %%
NEIGHBOURS = 5
num_draws = 500 if SMOKE else 10_000


def hole_score(points: torch.Tensor, codes: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Distance from each point to its 5th-nearest training code, in units of the threshold."""
    distances = torch.cdist(points, codes).topk(NEIGHBOURS, largest=False).values[..., -1]
    return distances / threshold


thresholds = {}
for name, codes in train_codes.items():
    distances = torch.cdist(codes, codes)
    distances.fill_diagonal_(float("inf"))                      # a code is not its own neighbour
    kth = distances.topk(NEIGHBOURS, largest=False).values[:, -1]
    thresholds[name] = torch.quantile(kth, 0.99)
    print(f"{name:<12} hole threshold: 5th-nearest-code distance {thresholds[name]:.3f}")

torch.manual_seed(1)
mean_code = train_codes["autoencoder"].mean(0)
fitted = torch.distributions.MultivariateNormal(mean_code, torch.cov(train_codes["autoencoder"].T))
recipes = {
    "VAE, z ~ N(0, I)": ("VAE", torch.randn(num_draws, 2)),
    "autoencoder, z ~ N(0, I)": ("autoencoder", torch.randn(num_draws, 2)),
    "autoencoder, z ~ N(m, S) fitted": ("autoencoder", fitted.sample((num_draws,))),
}
with torch.no_grad():
    test_codes = {"VAE": vae.encode(test_binary)[0].cpu(),
                  "autoencoder": autoencoder.encode(test_binary)[0].cpu()}
for name, codes in test_codes.items():
    share = (hole_score(codes, train_codes[name], thresholds[name]) > 1).float().mean()
    print(f"calibration, {name} test codes in a hole: {100 * share:.1f}%")
in_hole, nearest_labels = {}, {}
for recipe, (name, z) in recipes.items():
    in_hole[recipe] = hole_score(z, train_codes[name], thresholds[name]) > 1
    nearest_labels[recipe] = train_labels[torch.cdist(z, train_codes[name]).argmin(-1)]
    counts = torch.bincount(nearest_labels[recipe], minlength=10)
    print(f"{recipe:<33} in a hole: {100 * in_hole[recipe].float().mean():5.1f}%;  "
          f"share of draws by nearest code's digit (0..9, %): "
          f"{(100 * counts / num_draws).round().int().tolist()}")

# %%
models = {"VAE": vae, "autoencoder": autoencoder}
figure, axes = plt.subplots(1, 3, figsize=(15, 5.6), layout="constrained")
shown = 64
for axis, (recipe, (name, z)) in zip(axes, recipes.items()):
    with torch.no_grad():
        images = models[name].decode(z[:shown].to(device)).mean.cpu()
    axis.imshow(image_grid(images, (height, width), num_columns=8), cmap="gray_r", vmin=0, vmax=1)
    for i in torch.nonzero(in_hole[recipe][:shown]).flatten().tolist():
        top, left = (i // 8) * (height + 2), (i % 8) * (width + 2)
        axis.add_patch(Rectangle((left - 1.5, top - 1.5), width + 2, height + 2, fill=False,
                                 edgecolor="red", lw=1.5))
    holes = int(in_hole[recipe][:shown].sum())
    axis.set_title(f"{recipe}\n({holes} of {shown} in a hole, framed red)", fontsize=10)
    axis.set_axis_off()
figure.suptitle("Decoded random codes: the first 64 draws of each recipe")
figure.savefig(OUT / "samples.png", dpi=110)
print(f"wrote {OUT / 'samples.png'}")

# %%
figure, axes = plt.subplots(1, 3, figsize=(15, 5.2), layout="constrained")
for axis, (recipe, (name, z)) in zip(axes, recipes.items()):
    draw_codes(axis, train_codes[name], size=3, alpha=0.35)
    plotted = z[:1000]
    holes = in_hole[recipe][:1000]
    axis.scatter(plotted[~holes, 0], plotted[~holes, 1], s=4, color="k", alpha=0.5,
                 label="draw near training codes")
    axis.scatter(plotted[holes, 0], plotted[holes, 1], s=14, color="red", marker="x",
                 label="draw in a hole")
    axis.set_aspect("equal")
    axis.set_xlabel("z[0]")
    axis.set_ylabel("z[1]")
    axis.set_title(f"{recipe}: 1,000 draws", fontsize=10)
    axis.legend(loc="upper right", fontsize=8, markerscale=1.5)
figure.suptitle("Where the random codes fall among the training codes (coloured by digit)")
figure.savefig(OUT / "sample_locations.png", dpi=110)
print(f"wrote {OUT / 'sample_locations.png'}")

# %% [markdown]
# Read the three recipes against each other:
#
# * **VAE with its prior.** About 3% of the draws land in a hole (held-out
#   codes: about 1%), and the nearest-code digits cover all ten classes:
#   the prior and the encoder's codes were trained to agree, which is what
#   the KL term is for. The decoded draws are blurry digits of many kinds,
#   and even the ones framed red are clean 1s and 7s.
# * **Autoencoder with N(0, I).** No draw falls in a hole, but only because
#   the disc of radius 2 is a small patch in the crowded middle of a code
#   cloud whose standard deviation is 6 to 8. Every draw comes from that one
#   patch: four classes (2, 3, 5, 8) take about nine draws in ten, and 1s, 7s
#   and 9s essentially never appear. Had training left the codes away from
#   the origin, the same recipe would put every draw in empty space.
# * **Autoencoder with a fitted Gaussian.** Matching the scale brings back
#   all ten classes, but a Gaussian is a poor description of this cloud: it
#   is symmetric, the cloud is lopsided with a sharp edge on one side and
#   long arms on the other. About 10% of the draws, three times the VAE's
#   share, land in a hole, most of them beyond the sharp edge, and there the
#   decoder, never trained on such codes, paints ink blots instead of
#   digits. A better fit of the codes (a mixture, a flow) would be a second
#   model bolted on afterwards; a VAE learns its codes and their
#   distribution together.
#
# ## The decoded code planes and their holes
#
# The same question asked of a grid instead of random draws: decode a
# 15 × 15 grid spanning the middle 99% of each model's training codes and
# mark the tiles whose code lies in a hole.

# %%
num_steps = 15
figure, axes = plt.subplots(1, 2, figsize=(13, 6.8), layout="constrained")
for axis, (name, codes) in zip(axes, train_codes.items()):
    low = torch.quantile(codes, 0.005, dim=0)
    high = torch.quantile(codes, 0.995, dim=0)
    z0 = torch.linspace(float(low[0]), float(high[0]), num_steps)
    z1 = torch.linspace(float(high[1]), float(low[1]), num_steps)       # top row: largest z[1]
    rows_z1, columns_z0 = torch.meshgrid(z1, z0, indexing="ij")
    grid_codes = torch.stack([columns_z0.flatten(), rows_z1.flatten()], dim=-1)
    grid_holes = hole_score(grid_codes, codes, thresholds[name]) > 1
    with torch.no_grad():
        plane = models[name].decode(grid_codes.to(device)).mean.cpu()
    axis.imshow(image_grid(plane, (height, width), num_columns=num_steps),
                cmap="gray_r", vmin=0, vmax=1)
    for i in torch.nonzero(grid_holes).flatten().tolist():
        top, left = (i // num_steps) * (height + 2), (i % num_steps) * (width + 2)
        axis.add_patch(Rectangle((left - 1, top - 1), width + 1, height + 1, facecolor="red",
                                 alpha=0.25, edgecolor="none"))
    ticks = range(0, num_steps, 7)
    centres = [(width + 2) * i + width / 2 for i in ticks]
    axis.set_xticks(centres, [f"{z0[i]:.1f}" for i in ticks])
    axis.set_yticks(centres, [f"{z1[i]:.1f}" for i in ticks])
    axis.set_xlabel("z[0]")
    axis.set_ylabel("z[1]")
    share = grid_holes.float().mean()
    axis.set_title(f"{name}: decoded grid over its codes' range\n"
                   f"({100 * share:.0f}% of tiles in a hole, shaded red)", fontsize=10)
    print(f"{name:<12} grid z[0] [{low[0]:.1f}, {high[0]:.1f}], z[1] [{low[1]:.1f}, "
          f"{high[1]:.1f}]: {100 * share:.1f}% of {num_steps}x{num_steps} tiles in a hole")
figure.savefig(OUT / "decoded_planes.png", dpi=110)
print(f"wrote {OUT / 'decoded_planes.png'}")

# %% [markdown]
# A rectangle around any cloud of points has empty corners, so both planes
# have about a third of their tiles shaded. What differs is what the
# decoders make of those codes. The VAE's decoder carries each nearby class
# on into the empty corners: bolder, sometimes smudged 7s, 1s and 0s, still
# digit-like. The autoencoder's decoder does the same far out along its
# arms, but along the sharp edge of its cloud (the left column of its
# plane) it produces the ink blots seen among the samples. One reason for
# the difference: the VAE's decoder is trained on noisy codes z ~ q(z | x),
# which spill a little around every encoder mean, so it has learned a
# neighbourhood of each code, not only the point; the autoencoder's decoder
# has only ever seen the codes themselves.
#
# ## Interpolating between two digits
#
# As in tutorial 3: take for each class the test digit whose code lies
# closest to its class's centre, encode two of them, and decode 12 codes on
# the straight line between. Below the strips, the hole score of each code on
# the line (its 5th-nearest-training-code distance over the threshold; above
# 1 is a hole) shows whether the path stays among real codes.

# %%
def typical(codes: torch.Tensor, digit: int) -> int:
    """Index of the test digit of this class whose code is nearest its class's mean code."""
    members = torch.nonzero(test_labels == digit).flatten()
    distances = (codes[members] - codes[members].mean(0)).norm(dim=-1)
    return int(members[distances.argmin()])


pairs = [(1, 0), (7, 3)]
t = torch.linspace(0, 1, 12)
figure = plt.figure(figsize=(12, 8.5), layout="constrained")
grid = figure.add_gridspec(2 * len(pairs) + 1, 1, height_ratios=[1] * 2 * len(pairs) + [1.6])
curve_axis = figure.add_subplot(grid[-1])
path_means = {}
for row, (digit_a, digit_b) in enumerate(pairs):
    for column, (name, model) in enumerate(models.items()):
        codes = test_codes[name]
        index_a, index_b = typical(codes, digit_a), typical(codes, digit_b)
        path = (1 - t[:, None]) * codes[index_a] + t[:, None] * codes[index_b]
        score = hole_score(path, train_codes[name], thresholds[name])
        with torch.no_grad():
            decoded = model.decode(path.to(device)).mean.cpu()
        strip = torch.cat([data.test_x[[index_a]].cpu(), decoded, data.test_x[[index_b]].cpu()])
        axis = figure.add_subplot(grid[2 * row + column])
        axis.imshow(image_grid(strip, (height, width), num_columns=len(strip)),
                    cmap="gray_r", vmin=0, vmax=1)
        axis.set_axis_off()
        axis.set_title(f"{name}: {digit_a} → {digit_b}  (left, right: the two test digits)",
                       fontsize=9)
        curve_axis.plot(t, score, color=f"C{column}", marker="o", ms=3,
                        ls="-" if row == 0 else ":", label=f"{name}, {digit_a} → {digit_b}")
        print(f"{name:<12} {digit_a} -> {digit_b}: test images {index_a} and {index_b}, hole "
              f"score along the line: max {score.max():.2f}, "
              f"{int((score > 1).sum())} of {len(t)} codes in a hole")
curve_axis.axhline(1.0, color="red", lw=1, label="hole threshold")
curve_axis.set_xlabel("t  (code = (1 − t) · code of A + t · code of B)")
curve_axis.set_ylabel("hole score")
curve_axis.set_ylim(0, None)
curve_axis.legend(loc="upper right", fontsize=8, ncol=3)
figure.suptitle("Straight lines between two digits' codes, decoded")
figure.savefig(OUT / "interpolation.png", dpi=110)
print(f"wrote {OUT / 'interpolation.png'}")

# %% [markdown]
# Two pairs are anecdotes. For a number, draw 1,000 random pairs of test
# digits of different classes and count the straight lines on which at
# least one of the 12 codes lies in a hole.

# %%
generator = torch.Generator().manual_seed(2)
num_pairs = 100 if SMOKE else 1000
first = torch.randint(len(test_labels), (4 * num_pairs,), generator=generator)
second = torch.randint(len(test_labels), (4 * num_pairs,), generator=generator)
different = test_labels[first] != test_labels[second]
first, second = first[different][:num_pairs], second[different][:num_pairs]
for name in models:
    codes = test_codes[name]
    lines = (1 - t[:, None, None]) * codes[first] + t[:, None, None] * codes[second]
    scores = hole_score(lines.reshape(-1, 2), train_codes[name], thresholds[name])
    touches = (scores.reshape(len(t), -1) > 1).any(0)
    print(f"{name:<12} {len(first)} random lines between test digits of different classes: "
          f"{100 * touches.float().mean():.1f}% pass through a hole, "
          f"{100 * (scores > 1).float().mean():.1f}% of all their codes")

# %% [markdown]
# Here the usual story, that an autoencoder's interpolations fall into gaps
# while a VAE's stay smooth, does not show. Both decoded strips change
# gradually, through the classes that lie between the two ends in the code
# map, and random lines through the autoencoder's code space touch a hole
# *less* often than those through the VAE's. In two dimensions the
# autoencoder's 4,500 codes fill a connected star whose arms meet in the
# middle, and a straight line between two real digits runs through that
# middle; its empty regions lie outside the arms, where sampling, not
# interpolation, sends codes. What separates the two models in this
# tutorial is generation: which codes one should decode to get new digits.
#
# ## What to take away
#
# * An autoencoder is a VAE with the noise and the prior taken out: a
#   point-mass q and a flat p(z) make the ELBO equal to the reconstruction,
#   and the same SVI loop trains it.
# * Without the KL term it reconstructs better (about 6 nats per image
#   here), but its codes sit at a scale and in a shape that nothing in its
#   loss controls.
# * So it comes with no way to make new data: N(0, I) draws explore one
#   small patch of its code space and give a few classes only, and a
#   Gaussian fitted afterwards sends three times as many draws as the VAE's
#   prior into empty regions, where its decoder paints ink blots.
# * The VAE's KL term keeps its codes where its prior samples, and its noisy
#   codes teach the decoder the space around each code, so "decode
#   z ~ p(z)" is a generator that comes with the model.
# * Straight-line interpolation between real digits, often named as the
#   autoencoder's weak point, is not where the two differ in this 2-D
#   example: both paths stay among the codes of real digits.
