# %% [markdown]
# # 8. How many latent dimensions?
#
# *Run time: about 2.4 minutes on an idle 2-core CPU (measured: 146 s; `PPL_VAE_SMOKE=1`: seconds).*
#
# A 28 × 28 digit has 784 pixels, and a VAE squeezes each image through a code
# z of `latent_dim` numbers. Exercise 2 of the text asks why one would pick
# something like 10 to 32 for MNIST, and what is lost on either side. This
# tutorial answers by experiment: it trains the same VAE with six code sizes,
# 2, 4, 8, 16, 32 and 64, and for each one measures
#
# * how good the model is: the test ELBO and the tighter importance-weighted
#   bound (IWAE), both lower bounds on log p(x);
# * how much the code carries: the KL term KL(q(z | x) || p(z)), the number
#   of nats the encoder spends per image, split coordinate by coordinate;
# * how many coordinates are used at all: the *active units* of Burda, Grosse
#   and Salakhutdinov (2016).
#
# Two effects pull in opposite directions. A code that is too small is a
# bottleneck: two numbers cannot say which digit it is *and* how it is
# written, so the reconstructions blur and the bound is poor. A code that is
# too large does not hurt much, but it does not help either: the KL term
# charges for every coordinate that carries information, so the optimizer
# switches the coordinates it does not need off. Their posterior q(z_j | x)
# becomes the prior N(0, 1) for every image (the *collapse* of those units),
# they cost nothing and tell the decoder nothing, and the bound stops rising.

# %% tags=["hide-input"]
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch
from matplotlib.ticker import MaxNLocator

from ppl_vae import VAE, SVIConfig, load_dataset, resolve_device, train
from ppl_vae.data import evaluation_data
from ppl_vae.evaluation.plots import image_grid
from ppl_vae.evaluation.quoting import quote
from ppl_vae.evaluation.representation import active_units, kl_per_dimension
from ppl_vae.inference import elbo_terms, iwae

SMOKE = os.environ.get("PPL_VAE_SMOKE") == "1"
OUT = Path(__file__).resolve().parent / ("outputs/smoke" if SMOKE else "outputs") / "08_latent_dimension"
OUT.mkdir(parents=True, exist_ok=True)
device = resolve_device("auto")
pyro.set_rng_seed(0)

# %% [markdown]
# ## Six VAEs that differ only in the size of the code
#
# Every model has the architecture of the earlier tutorials (784-400-L
# encoder, L-400-784 decoder, Bernoulli pixels) and is trained on `mnist5k`
# with dynamic binarization and the same seed. Only L changes.
#
# To keep the whole tutorial to a few minutes on a laptop CPU, each model
# gets **100 epochs at a step size of 3e-3** (tutorials 3 and 4 use up to
# 200 epochs at 1e-3). The models are not fully converged, and longer
# training would raise the bounds further, but all six get the same budget,
# so the comparison between them is fair.
#
# Training runs in stages of 10 epochs. `train` writes a checkpoint (model,
# optimizer and random state, here to a temporary folder) at the end of each
# stage, and `resume=True` continues from it exactly, so the result is the
# same as one 100-epoch run. Between stages we count the active units
# (defined below), to watch how the model's use of its code changes while it
# trains.

# %%
data = load_dataset("digits" if SMOKE else "mnist5k").to(device)
height, width = data.image_shape
latent_dims = (2, 4, 8) if SMOKE else (2, 4, 8, 16, 32, 64)
config = SVIConfig(epochs=2 if SMOKE else 100, learning_rate=3e-3, binarize="dynamic", seed=0)
stage = 1 if SMOKE else 10
test_x = evaluation_data(data.test_x, config.binarize, config.seed)
print(f"{data.train_x.shape[0]} training and {data.test_x.shape[0]} test images of "
      f"{height}x{width} pixels; latent sizes {latent_dims}, {config.epochs} epochs each")

models: dict[int, VAE] = {}
active_during_training: dict[int, list[tuple[int, int]]] = {}
with tempfile.TemporaryDirectory() as checkpoints:
    for latent_dim in latent_dims:
        pyro.set_rng_seed(0)
        vae = VAE(data.data_dim, latent_dim, hidden_dims=(400,), name=f"vae_z{latent_dim}")
        vae = vae.to(device)
        counts = []
        for epochs in range(stage, config.epochs + 1, stage):
            history = train(vae, data.train_x, replace(config, epochs=epochs),
                            test_x=data.test_x, out_dir=Path(checkpoints) / f"z{latent_dim}",
                            resume=epochs > stage).history
            vae.eval()
            counts.append((epochs, active_units(vae, test_x).count))
        models[latent_dim] = vae
        active_during_training[latent_dim] = counts
        print(f"latent_dim {latent_dim:2d}: trained in {history[-1]['wall_time']:5.1f} s; last "
              f"epoch's one-sample test ELBO {history[-1]['test_elbo']:8.2f}; active units "
              f"after each stage: {[count for _, count in counts]}")

# %% [markdown]
# ## The numbers: bounds, KL and active units
#
# For each model, on the fixed binary copy of the test digits:
#
# * **ELBO** = reconstruction − KL. The reconstruction E_q[log p(x | z)] is
#   averaged over K = 100 draws of z per image (`elbo_terms`); the KL is
#   exact, the sum of the closed-form KL of every coordinate
#   (`kl_per_dimension`, next section). `elbo_terms` also estimates the KL by
#   Monte Carlo, and the two agree within its standard error.
# * **IWAE** with K = 500 importance samples (Burda et al. use 5,000; 500
#   keeps the run short). It is a tighter lower bound on log p(x), so the
#   *gap* IWAE − ELBO is a lower estimate of KL(q(z | x) || p(z | x)), how far
#   the encoder's Gaussian is from the true posterior.
# * **Active units** (`active_units`, after Burda, Grosse and Salakhutdinov,
#   2016): coordinate j counts as active when its posterior mean moves with
#   the input, Var_x(E_q[z_j | x]) > 0.01. The mean of q(z_j | x) is the
#   encoder's μ_j(x), so this is the variance of μ_j over the test digits. An
#   inactive unit has nearly the same q(z_j | x) for every digit, so it tells
#   the decoder nothing about which digit it is looking at.

# %%
num_elbo, num_iwae = (10, 20) if SMOKE else (100, 500)
rows = []
for latent_dim, vae in models.items():
    terms = elbo_terms(vae, test_x, num_elbo)
    bound = iwae(vae, test_x, num_iwae)
    kl_dims = kl_per_dimension(vae, test_x).cpu()
    units = active_units(vae, test_x)
    reconstruction = terms["reconstruction"]
    rows.append({
        "latent_dim": latent_dim, "reconstruction": reconstruction.mean,
        "elbo": reconstruction.mean - float(kl_dims.sum()), "elbo_se": reconstruction.mean_stderr,
        "iwae": bound.mean, "iwae_se": bound.mean_stderr, "kl": float(kl_dims.sum()),
        "mc_kl": terms["kl"].mean, "mc_kl_se": terms["kl"].mean_stderr, "kl_dims": kl_dims,
        "active": units.count, "variances": units.variances.cpu(),
    })

print(f"{'L':>3} {'ELBO':>9} {'IWAE':>9} {'gap':>6} {'recon.':>9} {'KL':>6} "
      f"{'MC KL':>13} {'active':>7}  (active at threshold 0.1 / 0.001)")
for r in rows:
    print(f"{r['latent_dim']:3d} {r['elbo']:9.2f} {r['iwae']:9.2f} {r['iwae'] - r['elbo']:6.2f} "
          f"{r['reconstruction']:9.2f} {r['kl']:6.2f} {r['mc_kl']:6.2f} ± {r['mc_kl_se']:.2f} "
          f"{r['active']:4d}/{r['latent_dim']:<2d}  ({int((r['variances'] > 0.1).sum())} / "
          f"{int((r['variances'] > 0.001).sum())})")
# An IWAE error is inf where Pareto k-hat flags a point: there it cannot be estimated.
iwae_errors = [r["iwae_se"] for r in rows if np.isfinite(r["iwae_se"])]
print(f"Monte Carlo standard errors: ELBO at most {max(r['elbo_se'] for r in rows):.2f}, IWAE at most "
      + (f"{max(iwae_errors):.2f} nats" if iwae_errors else "(none trustworthy)")
      + (f"; the IWAE error of L = {', '.join(str(r['latent_dim']) for r in rows if not np.isfinite(r['iwae_se']))}"
         " cannot be estimated (Pareto k-hat flags some digits)" if len(iwae_errors) < len(rows) else ""))

# The numbers the text below quotes, from this run.
quote("iwae_gains", "; ".join(f"{after['iwae'] - before['iwae']:+.1f} ({before['latent_dim']} → {after['latent_dim']})"
                              for before, after in zip(rows, rows[1:])))
quote("first_dim", rows[0]["latent_dim"])
quote("last_dim", rows[-1]["latent_dim"])
for end, r in (("first", rows[0]), ("last", rows[-1])):
    quote(f"kl_{end}", r["kl"])
    quote(f"reconstruction_{end}", r["reconstruction"])
    quote(f"gap_{end}", r["iwae"] - r["elbo"])
quote("active_counts", ", ".join(f"{r['active']} of {r['latent_dim']}" for r in rows))
quote("best_elbo_dim", max(rows, key=lambda r: r["elbo"])["latent_dim"])
quote("kl_difference", max(abs(r["kl"] - r["mc_kl"]) for r in rows))
quote("kl_stderr", max(r["mc_kl_se"] for r in rows))
inactive = [(r["latent_dim"], r["latent_dim"] - r["active"], float(r["kl_dims"][r["variances"] <= 0.01].sum()))
            for r in rows if r["active"] < r["latent_dim"]]
quote("inactive_kl", "; ".join(f"{count} units of L = {dim}: {kl:.3f} nats" for dim, count, kl in inactive)
      or "nothing, since every model uses all its units here")
quote("most_active", max(r["active"] for r in rows))
quote("largest_counts", ", ".join(f"{count} (epoch {epoch})" for epoch, count in active_during_training[rows[-1]["latent_dim"]]))

# %% [markdown]
# Read the table from the top (every number in this list is this run's own).
#
# * **Each doubling of L** changes the IWAE bound by {glue:md}`iwae_gains` nats.
#   While every unit is active the code is a bottleneck, and a doubling buys
#   many nats; once the gains shrink to a few nats or less, more dimensions
#   have stopped paying: the model has saturated. One training run per size
#   cannot resolve differences of a few tenths of a nat either way.
# * **What the code costs and what it buys.** From L = {glue:text}`first_dim`
#   to L = {glue:text}`last_dim` the KL, the nats the encoder spends per
#   image, goes from {glue:text}`kl_first:.1f` to {glue:text}`kl_last:.1f`, and
#   the reconstruction term from {glue:text}`reconstruction_first:.1f` to
#   {glue:text}`reconstruction_last:.1f`.
# * **Active units** (of all units): {glue:md}`active_counts`. A model with
#   more units than it uses leaves the rest unused: their posteriors have
#   collapsed to the prior (next sections).
# * **The gap IWAE − ELBO** is {glue:text}`gap_first:.1f` nats at the smallest
#   L and {glue:text}`gap_last:.1f` at the largest. A larger code gives the
#   true posterior more room to differ from a diagonal Gaussian, so the gap
#   tends to grow with L. The ELBO itself is highest at L = {glue:text}`best_elbo_dim`.
# * The closed-form KL and the Monte Carlo KL of `elbo_terms` differ by at
#   most {glue:text}`kl_difference:.3f` nats, against standard errors of at
#   most {glue:text}`kl_stderr:.3f`.
#
# ## The trade-off in one picture

# %%
dims = np.array([r["latent_dim"] for r in rows])
figure, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4.3), layout="constrained")
left.errorbar(dims, [r["iwae"] for r in rows], yerr=[2 * r["iwae_se"] for r in rows],
              marker="o", color="C0", label=f"IWAE (K = {num_iwae})")
left.errorbar(dims, [r["elbo"] for r in rows], yerr=[2 * r["elbo_se"] for r in rows],
              marker="s", color="C1", label=f"ELBO (K = {num_elbo})")
left.set_ylabel("test bound on log p(x), nats per image")
left.set_title("Lower bounds on log p(x) (higher is better)")
left.legend(loc="lower right")

middle.plot(dims, dims, "--", color="0.5", lw=2.5, label="y = x: every unit active")
for threshold, style in ((0.001, ":"), (0.01, "o-"), (0.1, ":")):
    counts = [int((r["variances"] > threshold).sum()) for r in rows]
    middle.plot(dims, counts, style, color="C2", lw=2 if threshold == 0.01 else 1,
                alpha=1 if threshold == 0.01 else 0.7,
                label="active units (threshold 0.01)" if threshold == 0.01 else None)
middle.plot([], [], ":", color="C2", alpha=0.7, label="thresholds 0.001 (upper), 0.1 (lower)")
middle.set_yscale("log", base=2)
middle.set_yticks(dims, [str(d) for d in dims])
middle.set_ylabel("number of units")
middle.set_title("Active units: Var_x(E_q[z_j | x]) > threshold")
middle.legend(loc="upper left", fontsize=9)

right.plot(dims, [r["kl"] for r in rows], "o-", color="C3", label="KL(q(z | x) || p(z))")
right.plot(dims, [-r["reconstruction"] for r in rows], "s-", color="C4",
           label="−E_q[log p(x | z)] (reconstruction error)")
right.set_ylabel("nats per image")
right.set_ylim(0, None)
right.set_title("What the code costs and what it buys")
right.legend(loc="upper right")
for axis in (left, middle, right):
    axis.set_xscale("log", base=2)
    axis.set_xticks(dims, [str(d) for d in dims])
    axis.set_xlabel("latent_dim L")
figure.suptitle(f"VAEs with a code of L dimensions on {len(test_x)} test digits "
                f"({config.epochs} epochs each)")
figure.savefig(OUT / "trade_off.png", dpi=110)
print(f"wrote {OUT / 'trade_off.png'}")

# %% [markdown]
# Left: the two bounds against L; the IWAE curve lies above the ELBO
# everywhere (by the gap of the table). Middle, on logarithmic axes: the
# active units follow the line y = x while the model uses every unit and fall
# away from it once units collapse; the dotted lines count with a ten times larger and a ten
# times smaller threshold (discussed below). Right: the rate-distortion view.
# The KL is what the code costs in nats per image, the reconstruction error
# is what it leaves unexplained; once the KL stops rising, so does the
# improvement in reconstruction.
#
# ## Where the nats go: KL per dimension
#
# Because the encoder's Gaussian is diagonal and the prior is N(0, I), the KL
# term splits exactly into one KL per coordinate,
#
# $$\mathrm{KL}\big(q(z \mid x) \,\|\, p(z)\big) = \sum_j \mathrm{KL}\big(q(z_j \mid x) \,\|\, \mathcal{N}(0, 1)\big), \qquad
#   \mathrm{KL}_j = \tfrac12 \big(\mu_j^2 + \sigma_j^2 - 1\big) - \log \sigma_j,$$
#
# and `kl_per_dimension` returns each KL_j averaged over the test set.
# Below, the bars of each model are sorted from largest to smallest and
# coloured by the active-unit test. Where a model has inactive units, its
# bars drop to almost nothing after the active ones; in this run the inactive
# units carry, all together, {glue:md}`inactive_kl`. For those units
# q(z_j | x) is the prior N(0, 1) for every digit, up to a small fraction of
# a nat: the posterior of each such unit has *collapsed* to the prior. The
# decoder learns to ignore them, and they cost nothing in the KL term. The
# models have learned, without being told, that at most
# {glue:text}`most_active` numbers per image are worth their price at this
# training budget.

# %%
columns = 3
num_rows = int(np.ceil(len(rows) / columns))
figure, axes = plt.subplots(num_rows, columns, figsize=(13, 3.3 * num_rows + 0.4),
                            layout="constrained", squeeze=False)
for axis, r in zip(axes.flat, rows):
    order = torch.argsort(r["kl_dims"], descending=True)
    active = (r["variances"] > 0.01)[order].numpy()
    axis.bar(np.arange(1, r["latent_dim"] + 1), r["kl_dims"][order].numpy(),
             color=np.where(active, "C0", "0.65"), width=0.8)
    axis.set_title(f"L = {r['latent_dim']}: KL {r['kl']:.1f} nats, {r['active']} active")
    axis.set_xlabel("unit, sorted by KL")
    axis.set_ylabel("KL_j, nats per image")
    axis.set_xlim(0.3, r["latent_dim"] + 0.7)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
for axis in axes.flat[len(rows):]:
    axis.set_axis_off()
handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("C0", "0.65")]
figure.legend(handles, ["active unit", "inactive unit"], loc="outside lower center", ncols=2)
figure.suptitle("KL(q(z_j | x) || N(0, 1)) per latent coordinate, averaged over the test set")
figure.savefig(OUT / "kl_per_dimension.png", dpi=110)
print(f"wrote {OUT / 'kl_per_dimension.png'}")
for r in rows:
    ranked = r["kl_dims"].sort(descending=True).values
    inactive = r["kl_dims"][r["variances"] <= 0.01]
    print(f"L = {r['latent_dim']:2d}: KL per unit largest {ranked[0]:.2f}, median "
          f"{ranked.median():.3f}, smallest {ranked[-1]:.4f} nats; the "
          f"{r['latent_dim'] - r['active']} inactive units carry {inactive.sum():.3f} nats")

# %% [markdown]
# ## How active is a unit?
#
# The threshold 0.01 is a convention. The scatter below puts every unit of
# every model at its activity Var_x(μ_j(x)) and its KL_j, on log scales.
# Once a model has units to spare, the units form two clouds: working units,
# with means spread over much of the prior's range (activity of order 1) and
# KLs of a nat or more, and collapsed ones, with an activity near 0.01 or
# below and a KL of hundredths of a nat or less. A threshold anywhere in the
# empty band between the clouds gives the same count (the printout below
# gives each model's range). The collapsed units' means still move a little,
# so a threshold far below theirs would call every unit active: after a
# finite training run the collapse is not complete.

# %%
figure, axis = plt.subplots(figsize=(7.5, 5.2), layout="constrained")
for i, r in enumerate(rows):
    axis.scatter(r["variances"].clamp_min(1e-8).numpy(), r["kl_dims"].clamp_min(1e-8).numpy(),
                 s=18, alpha=0.75, color=plt.cm.viridis(0.9 * i / max(1, len(rows) - 1)),
                 label=f"L = {r['latent_dim']}")
axis.axvline(0.01, color="k", ls="--", lw=1, label="threshold 0.01")
axis.set_xscale("log")
axis.set_yscale("log")
axis.set_xlabel("Var_x(E_q[z_j | x])  (activity of unit j)")
axis.set_ylabel("KL_j, nats per image")
axis.set_title("Every latent unit of every model")
axis.legend(loc="upper left", fontsize=8)
figure.savefig(OUT / "unit_activity.png", dpi=110)
print(f"wrote {OUT / 'unit_activity.png'}")
for r in rows:
    print(f"L = {r['latent_dim']:2d}: activity Var_x(mu_j(x)) from "
          f"{r['variances'].min():.2g} to {r['variances'].max():.2g}")

# %% [markdown]
# ## Units switch off while the model trains
#
# The active-unit counts recorded after every stage of training show when
# the extra units go quiet. In a full-length run every unit of every model
# is active early on: the encoder starts by using everything. Then the KL term
# switches off the units the decoder makes least use of. In this run the
# largest model, L = {glue:text}`last_dim`, counts {glue:md}`largest_counts`
# active units after each stage of training; where the count still falls at
# the last stage, the model would probably end lower if trained longer. So
# the active-unit count depends on the training budget as well as on the
# data, and a count from a short run is an upper bound. A small model never
# loses a unit: it has none to spare.

# %%
figure, axis = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
for i, (latent_dim, counts) in enumerate(active_during_training.items()):
    epochs, numbers = zip(*counts)
    color = plt.cm.viridis(0.9 * i / max(1, len(active_during_training) - 1))
    axis.plot(epochs, numbers, "o-", ms=4, color=color, label=f"L = {latent_dim}")
axis.set_ylim(0, None)
axis.set_xlabel("epoch")
axis.set_ylabel("active units (threshold 0.01)")
axis.set_title("Active units of each model during training")
axis.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
figure.savefig(OUT / "active_units_during_training.png", dpi=110)
print(f"wrote {OUT / 'active_units_during_training.png'}")

# %% [markdown]
# ## What the codes keep: reconstructions and samples
#
# The first row holds twenty test digits (two of each class, as the encoder
# sees them); each row below is `reconstruct` of those digits by one model,
# decoding the posterior mean. With L = 2 most digits turn into a blurry
# prototype, often of the wrong class (the 3s, 5s and 2s become 8-like blobs,
# the 4s become 9s). With 4 the class is mostly right but the style is
# averaged away and some classes still mix (3 and 5 turn into 8 and 6). With
# 8 nearly every digit is right, and from 16 on the reconstructions keep the
# individual strokes: the thick second 1, the hooked 7. Between 16, 32 and 64
# the eye sees little difference, as the bound already said.

# %%
labels = data.test_y.cpu()
chosen = torch.cat([torch.nonzero(labels == digit).flatten()[:2] for digit in range(10)])
chosen = chosen.reshape(10, 2).T.flatten()
inputs = test_x[chosen]
strips = [inputs] + [vae.reconstruct(inputs) for vae in models.values()]
names = ["test digit"] + [f"L = {d}" for d in models]
figure, axes = plt.subplots(len(strips), 1, figsize=(9, 0.72 * len(strips) + 0.5),
                            layout="constrained")
for axis, images, name in zip(axes, strips, names):
    axis.imshow(image_grid(images.cpu(), (height, width), num_columns=len(chosen)),
                cmap="gray_r", vmin=0, vmax=1)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_ylabel(name, rotation=0, ha="right", va="center")
figure.suptitle("Reconstructions (mean of p(x | μ(x))) by latent size")
figure.savefig(OUT / "reconstructions.png", dpi=110)
print(f"wrote {OUT / 'reconstructions.png'}; digits {labels[chosen].tolist()}")

# %% [markdown]
# Samples ask the opposite question: does a code drawn from the *prior*
# decode to a digit? Each row decodes 20 draws z ~ N(0, I). The 2-D model
# produces the same few blurry prototypes again and again. With more
# dimensions the samples become more varied, but from L = 16 on many are
# malformed, stroke fragments that are no digit. The decoder has only ever
# been trained on codes drawn from the encoder's posteriors, and with a
# larger code their union covers the prior less evenly, so more prior draws
# land where the decoder has not learned to draw a digit. (Collapsed units
# hardly matter here: the decoder has learned to ignore them.) A better log-likelihood
# does not imply better-looking samples.

# %%
torch.manual_seed(0)
samples = [vae.sample(20) for vae in models.values()]
figure, axes = plt.subplots(len(samples), 1, figsize=(9, 0.72 * len(samples) + 0.5),
                            layout="constrained")
for axis, images, latent_dim in zip(axes, samples, models):
    axis.imshow(image_grid(images.cpu(), (height, width), num_columns=20),
                cmap="gray_r", vmin=0, vmax=1)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_ylabel(f"L = {latent_dim}", rotation=0, ha="right", va="center")
figure.suptitle("Samples: mean of p(x | z) for z ~ N(0, I), by latent size")
figure.savefig(OUT / "samples.png", dpi=110)
print(f"wrote {OUT / 'samples.png'}")

# %% [markdown]
# ## What to take away
#
# What the full-size run (six sizes, 100 epochs each on mnist5k) shows:
#
# * **Too small a code is a bottleneck.** With 2 to 8 dimensions every unit
#   is active and works hard, each doubling of L gains more than 20 nats,
#   and the reconstructions lose the class first and the style second.
# * **Too large a code is wasted, not harmful.** Past about 24 dimensions
#   (for this data and budget) the model switches the extra units off: their
#   posterior collapses to the prior, their KL is about zero, their mean does
#   not move with the input, and the active-unit count stops following L.
#   The ELBO and the IWAE bound level off; what grows is the gap between the
#   ELBO and log p(x), and the compute.
# * **Hence 10 to 32 for MNIST** (Exercise 2): large enough that the
#   bottleneck is gone, small enough not to spend computation on units the
#   KL term will switch off anyway. Counting active units, or sorting the KL
#   per dimension, tells you afterwards how many the model wanted.
# * Collapse takes time: early in training every unit is active, and the
#   count falls for as long as training goes on. A KL warm-up
#   (`SVIConfig.kl_warmup_epochs`) typically keeps a few more units alive.
