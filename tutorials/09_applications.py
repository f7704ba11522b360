# %% [markdown]
# # 9. Applications: anomalies, features and codes
#
# *Run time: about 1.6 minutes on an idle 2-core CPU (measured: 94 s; `PPL_VAE_SMOKE=1`: seconds).*
#
# A trained VAE is more than a sampler. Each of its three parts answers a
# practical question:
#
# | part | what it gives | application |
# | --- | --- | --- |
# | the density p_θ(x) (estimated by IWAE) | how probable an input is | **anomaly detection**: flag inputs the model finds improbable |
# | the encoder mean μ_φ(x) | a short vector that summarizes x, learned without labels | **representation learning**: a classifier trained on few labels |
# | the code z with its KL cost | a description of x in a few bits | **compression**: store codes instead of pixels |
#
# Generating new digits, the fourth classic use, is the subject of tutorial 1
# (ancestral sampling z ~ p(z), x ~ p_θ(x | z)) and of the decoded latent plane
# in tutorial 3; it is not repeated here.
#
# This tutorial trains four VAEs with a 20-dimensional latent space on
# `mnist5k`, each for 100 epochs:
#
# 1. one on every training digit *except the 7s*, to see whether a held-out
#    class, and digits corrupted in five ways, stand out by their low
#    log p(x) (ROC curves and their areas, ELBO against IWAE as the score);
# 2. three on all digits with the KL weight β = 0.25, 1 and 4. The β = 1
#    model (the plain ELBO) supplies the features for a linear probe,
#    compared with raw pixels and PCA when 10, 100, 1,000 or all 4,500 labels
#    are known; all three trace the trade-off between the bits a code costs
#    and how well the image comes back, and the β = 1 codes are then
#    quantized to real bits and compared with PCA.

# %% tags=["hide-input"]
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch

from ppl_vae import VAE, SVIConfig, load_dataset, resolve_device, train
from ppl_vae.data import evaluation_data
from ppl_vae.data.corruptions import flip_pixels, mirror_images, paste_patch, shift_images
from ppl_vae.evaluation import gaussian_kl
from ppl_vae.evaluation.anomaly import anomaly_roc
from ppl_vae.evaluation.plots import image_grid
from ppl_vae.evaluation.representation import (
    fit_pca,
    linear_probe,
    quantize_gaussian,
    stratified_subset,
)
from ppl_vae.inference import elbo, elbo_terms, iwae

SMOKE = os.environ.get("PPL_VAE_SMOKE") == "1"
OUT = Path(__file__).resolve().parent / ("outputs/smoke" if SMOKE else "outputs") / "09_applications"
OUT.mkdir(parents=True, exist_ok=True)
device = resolve_device("auto")
pyro.set_rng_seed(0)
LN2 = math.log(2)

# %% [markdown]
# ## The data
#
# `mnist5k` has 4,500 training and 500 test digits, 450 and 50 of each class.
# As in the other tutorials, the models train on `binarize="dynamic"` copies
# (a fresh black-and-white draw of every image each epoch), and everything
# that is scored by a log-probability uses one fixed, seeded binary copy
# (`evaluation_data`). The digit 7 plays the unknown class.

# %%
data = load_dataset("digits" if SMOKE else "mnist5k").to(device)
height, width = data.image_shape
HELD_OUT = 7
EPOCHS = 2 if SMOKE else 100
LATENT_DIM = 20
test_binary = evaluation_data(data.test_x, "dynamic", 0)
seen_train = data.train_y != HELD_OUT
seen_test = data.test_y != HELD_OUT
print(f"{len(data.train_x)} training and {len(data.test_x)} test images of {height}x{width} "
      f"pixels; held-out class {HELD_OUT}: {int((~seen_train).sum())} training and "
      f"{int((~seen_test).sum())} test images")

# %% [markdown]
# ## Four models
#
# All four have the same architecture (784-400-20 encoder, mirrored decoder,
# Bernoulli pixels). The first never sees a 7. The other three see all
# digits; their β multiplies the KL term during training only: β < 1 lets the
# encoder spend more nats on each code, β > 1 makes codes expensive. Every
# score below is the ordinary, unweighted ELBO or IWAE of the trained model.

# %%
def fit(train_x: torch.Tensor, beta: float) -> VAE:
    """A 20-D VAE trained by SVI on ``train_x`` with KL weight ``beta``."""
    vae = VAE(data.data_dim, latent_dim=LATENT_DIM, hidden_dims=(400,)).to(device)
    config = SVIConfig(epochs=EPOCHS, binarize="dynamic", beta=beta, seed=0)
    result = train(vae, train_x, config, progress=False)
    vae.eval()
    print(f"  beta = {beta:<4}: {len(train_x)} training images, {EPOCHS} epochs in "
          f"{result.history[-1]['wall_time']:.1f} s, last train objective "
          f"{result.history[-1]['train_elbo']:.1f} nats")
    return vae


print(f"VAE without the {HELD_OUT}s:")
vae_seen = fit(data.train_x[seen_train], beta=1.0)
BETAS = (0.25, 1.0, 4.0)
print("VAEs on all digits:")
vaes = {beta: fit(data.train_x, beta) for beta in BETAS}
vae = vaes[1.0]

# %% [markdown]
# ## 1. Anomaly detection by log-likelihood
#
# A model fitted to normal data spreads its probability over what it has
# seen. An input unlike that data should receive a low p(x), so the rule is:
# flag x when log p(x) falls below a threshold. Every threshold flags some
# share of the anomalies (the true positive rate) and some share of the
# normal inputs (the false positive rate); the ROC curve plots one against
# the other as the threshold moves, and its area (AUC) is the chance that a
# random anomaly scores below a random normal input: 1 is perfect, 0.5 is
# guessing.
#
# The normal inputs are the 450 test digits of the nine classes the first
# model saw. Six kinds of anomaly:
#
# * **held-out class**: all 500 images of 7s (the 50 test ones and the 450
#   training ones, which that model never saw either);
# * five corruptions of the 450 normal test digits: 3% of the pixels
#   flipped, colours inverted, a 7 × 7 square of ink pasted at a random
#   place, the digit moved 4 pixels to the right, the digit mirrored.
#
# Two scores for each: log p(x) estimated by IWAE with K = 200 importance
# samples, and the ELBO (averaged over 10 samples of z), the cheaper bound
# that the training loss already computes.

# %%
side = min(height, width)
generator = torch.Generator(device=device).manual_seed(0)
normal = test_binary[seen_test]
anomalies = {
    f"held-out {HELD_OUT}s": torch.cat([test_binary[~seen_test],
                                        evaluation_data(data.train_x[~seen_train], "dynamic", 1)]),
    "3% pixels flipped": flip_pixels(normal, 0.03, generator=generator),
    "inverted": 1 - normal,
    f"{side // 4}x{side // 4} ink square": paste_patch(normal, (height, width), side // 4,
                                                        generator=generator),
    f"moved {side // 7} px right": shift_images(normal, (height, width), right=side // 7),
    "mirrored": mirror_images(normal, (height, width)),
}
IWAE_SAMPLES = 20 if SMOKE else 200
ELBO_SAMPLES = 10


def scores(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """log p(x) by IWAE and the ELBO under the model without the held-out class."""
    return {"IWAE": iwae(vae_seen, x, IWAE_SAMPLES).per_point.cpu(),
            "ELBO": elbo(vae_seen, x, ELBO_SAMPLES).per_point.cpu()}


normal_scores = scores(normal)
anomaly_scores = {name: scores(x) for name, x in anomalies.items()}
rocs = {name: {score: anomaly_roc(normal_scores[score], values[score]) for score in values}
        for name, values in anomaly_scores.items()}
print(f"{'group':<22}{'count':>6}{'ink pixels':>11}{'log p(x)':>10}{'IWAE - ELBO':>13}"
      f"{'AUC (IWAE)':>12}{'AUC (ELBO)':>12}")
for name, x in {"normal test digits": normal, **anomalies}.items():
    values = anomaly_scores.get(name, normal_scores)
    aucs = (f"{rocs[name]['IWAE'].auc:>12.3f}{rocs[name]['ELBO'].auc:>12.3f}" if name in rocs
            else "")
    print(f"{name:<22}{len(x):>6}{float(x.sum(-1).mean()):>11.1f}{values['IWAE'].mean():>10.1f}"
          f"{(values['IWAE'] - values['ELBO']).mean():>13.2f}" + aucs)
print("(ink pixels, log p(x) and IWAE - ELBO: means over the group, in pixels and nats)")

# %% [markdown]
# First the inputs themselves: one row per kind, the first ten of each.

# %%
rows = {"normal test digits": normal, **anomalies}
figure, axes = plt.subplots(len(rows), 1, figsize=(7.5, 1.05 * len(rows) + 0.4),
                            layout="constrained")
for axis, (name, images) in zip(axes, rows.items()):
    axis.imshow(image_grid(images[:10].cpu(), (height, width), num_columns=10),
                cmap="gray_r", vmin=0, vmax=1)
    axis.set_title(name, fontsize="medium")
    axis.set_axis_off()
figure.suptitle(f"Normal digits and the six kinds of anomaly (model trained without {HELD_OUT}s)")
figure.savefig(OUT / "anomaly_inputs.png", dpi=110)
print(f"wrote {OUT / 'anomaly_inputs.png'}")

# %% [markdown]
# The ROC curves. Left: the held-out class. Right: the corruptions (IWAE
# solid, ELBO dashed). Flipped pixels and inverted colours cost hundreds or
# thousands of nats and are caught without a single false alarm. A square of
# ink or a shifted digit is caught most of the time. A mirrored digit is
# harder, since 0, 1 and 8 look much the same in a mirror.
#
# The held-out 7s are the surprise: an AUC close to 0.5, almost guessing.
# The table shows why: a 7 is a light digit (fewer ink pixels than the
# average normal digit), a single bar and a stroke, and the model of the
# other nine classes, which knows 1s and 9s, gives such images a log p(x)
# like that of a normal digit. Likelihood measures how cheaply the model
# can describe an image, and a 7 is cheap to describe.
#
# ELBO and IWAE rank almost identically: the ELBO is just log p(x) minus the
# encoder's gap KL(q || p(z | x)), which is a few nats for every input. That
# gap is somewhat larger on inputs the encoder has never seen (the column
# IWAE − ELBO), so the ELBO even does a shade better here, at a twentieth of
# the cost.

# %%
figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), layout="constrained")
held_out_name = f"held-out {HELD_OUT}s"
for score, style in (("IWAE", "-"), ("ELBO", "--")):
    roc = rocs[held_out_name][score]
    left.plot(roc.false_positive_rate, roc.true_positive_rate, style, color="C0",
              label=f"{score}: AUC {roc.auc:.3f}")
for color, name in enumerate(name for name in anomalies if name != held_out_name):
    for score, style in (("IWAE", "-"), ("ELBO", "--")):
        roc = rocs[name][score]
        right.plot(roc.false_positive_rate, roc.true_positive_rate, style, color=f"C{color + 1}",
                   label=f"{name}: AUC {roc.auc:.3f}" if score == "IWAE" else None)
for axis, title in ((left, f"held-out class {HELD_OUT} against the other nine"),
                    (right, "corrupted test digits (solid: IWAE, dashed: ELBO)")):
    axis.plot([0, 1], [0, 1], ":", color="0.5", label="chance (AUC 0.5)")
    axis.set_xlabel("false positive rate (normal digits flagged)")
    axis.set_ylabel("true positive rate (anomalies flagged)")
    axis.set_xlim(-0.01, 1.01)
    axis.set_ylim(-0.01, 1.01)
    axis.set_aspect("equal")
    axis.set_title(title, fontsize="medium")
    axis.legend(loc="lower right", fontsize=8)
figure.suptitle("Flagging inputs with low log p(x): ROC curves")
figure.savefig(OUT / "anomaly_roc.png", dpi=110)
print(f"wrote {OUT / 'anomaly_roc.png'}")

# %% [markdown]
# ## The catch: simple images are probable
#
# A high likelihood does not mean "looks like a training digit". The Bernoulli
# likelihood is a product over 784 pixels, and background pixels, which the
# model predicts almost perfectly, are cheap. An image with little ink has
# few expensive pixels, so the thin 1s are the most probable digits, and an
# image with *no* digit at all, a blank page, can be more probable still. A
# detector that flags only low-likelihood inputs would let a blank image
# through. This is a known weakness of likelihood-based anomaly detection
# (Nalisnick et al., 2019, "Do deep generative models know what they don't
# know?"; their striking case is a model of CIFAR-10 giving house numbers
# from SVHN higher likelihoods than its own test images); common remedies
# compare log p(x) against a second, generic model of image complexity, or
# test whether x is *typical* rather than merely probable.
#
# Below, the left panel shows −log p(x) for every group on a log scale,
# with the blank image and a single vertical stroke of ink marked; the right
# panel plots log p(x) of the normal test digits against their number of ink
# pixels.

# %%
blank = torch.zeros(1, data.data_dim, device=device)
stroke = blank.clone()
stroke.view(-1, height, width)[0, height // 5: height - height // 5, width // 2] = 1.0
simple = {"blank image": blank, "one vertical stroke": stroke}
simple_log_p = {name: float(iwae(vae_seen, x, IWAE_SAMPLES).per_point) for name, x in simple.items()}
normal_log_p = normal_scores["IWAE"]
ink = normal.sum(-1).cpu()
correlation = float(np.corrcoef(ink.numpy(), normal_log_p.numpy())[0, 1])
for name, value in simple_log_p.items():
    above = float((normal_log_p < value).double().mean())
    print(f"{name}: log p(x) = {value:.1f} nats, higher than {100 * above:.1f}% of the normal "
          f"test digits")
print(f"highest log p(x) of a normal test digit: {normal_log_p.max():.1f} nats")
print(f"correlation of log p(x) with the number of ink pixels over the normal test digits: "
      f"{correlation:.2f}")

figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained",
                                     width_ratios=(1.25, 1))
groups = {"normal test digits": normal_log_p,
          **{name: values["IWAE"] for name, values in anomaly_scores.items()}}
positions = np.arange(len(groups))[::-1]
jitter = np.random.default_rng(0)
for position, values in zip(positions, groups.values()):
    left.scatter(-values.numpy(), position + jitter.uniform(-0.25, 0.25, len(values)), s=4,
                 alpha=0.4, color="C0")
    left.plot([-values.median()] * 2, [position - 0.35, position + 0.35], color="k")
left.set_yticks(positions, list(groups))
left.set_xscale("log")
for (name, value), style in zip(simple_log_p.items(), (":", "--")):
    left.axvline(-value, color="C3", linestyle=style, label=f"{name}: {-value:.1f}")
left.set_xlabel("−log p(x) in nats (IWAE, K = %d; log scale; right = less probable)" % IWAE_SAMPLES)
left.legend(loc="lower right", fontsize=8)
left.set_title("how improbable each group is (one dot per image, bar: median)",
               fontsize="medium")
digit_labels = data.test_y[seen_test].cpu()
points = right.scatter(ink, normal_log_p, c=digit_labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=10)
figure.colorbar(points, ax=right, ticks=range(10), label="digit label")
right.set_xlabel("ink pixels in the binary image")
right.set_ylabel("log p(x) in nats")
right.set_title(f"normal test digits: log p(x) against ink (correlation {correlation:.2f})",
                fontsize="medium")
figure.suptitle("log p(x) under the model without 7s")
figure.savefig(OUT / "anomaly_scores.png", dpi=110)
print(f"wrote {OUT / 'anomaly_scores.png'}")

# %% [markdown]
# The same effect, seen on the data: the 20 most and the 20 least probable
# of all 500 test images (the 7s included), by IWAE under the model without
# 7s. The top 20 are all 1s, the digits with the least ink; the bottom holds
# heavy, wide or oddly drawn digits, and a few 7s.

# %%
all_log_p = iwae(vae_seen, test_binary, IWAE_SAMPLES).per_point.cpu()
order = all_log_p.argsort(descending=True)
ends = {"most probable": order[:20], "least probable": order.flip(0)[:20]}
figure, axes = plt.subplots(2, 1, figsize=(8, 4.6), layout="constrained")
for axis, (name, rows) in zip(axes, ends.items()):
    axis.imshow(image_grid(test_binary[rows.to(device)].cpu(), (height, width), num_columns=10),
                cmap="gray_r", vmin=0, vmax=1)
    axis.set_title(f"the 20 {name} test images: log p(x) from {all_log_p[rows].max():.1f} "
                   f"to {all_log_p[rows].min():.1f} nats", fontsize="medium")
    axis.set_axis_off()
    print(f"{name}: labels {data.test_y.cpu()[rows].tolist()}")
    print(f"  log p(x): {', '.join(f'{v:.1f}' for v in all_log_p[rows].tolist())}")
figure.suptitle(f"Ranking the test set by log p(x) (model trained without {HELD_OUT}s)")
figure.savefig(OUT / "likely_unlikely.png", dpi=110)
print(f"wrote {OUT / 'likely_unlikely.png'}")

# %% [markdown]
# ## 2. Representation learning: a linear probe with few labels
#
# The encoder was trained without a single label, yet the latent map of
# tutorial 3 showed codes of one class gathering together. How much of the
# class do the 20 encoder means μ_φ(x) hold, in a form a *linear* classifier
# can read? The usual test is a probe: fit a logistic regression on the
# features of a few labelled training images and measure its accuracy on the
# 500 test images. Three feature sets, all computed from the grey-value
# images without labels:
#
# * **raw pixels** (784 numbers);
# * **PCA, 20 components**: the best linear 20-number summary, fitted on all
#   4,500 training images;
# * **VAE, 20 encoder means** of the β = 1 model.
#
# The labelled images are 1, 10, 100 or all 450 per class (10 to 4,500
# labels), drawn at random ten times for 10 and 100 labels and five times
# for 1,000; every probe uses the same subsets, standardizes its features and
# fits `LogisticRegression(C=1)`.

# %%
pca = fit_pca(data.train_x, LATENT_DIM)
with torch.no_grad():
    features = {
        "raw pixels": (data.train_x, data.test_x),
        f"PCA, {LATENT_DIM} components": (pca.project(data.train_x), pca.project(data.test_x)),
        f"VAE, {LATENT_DIM} encoder means": (vae.encode(data.train_x)[0], vae.encode(data.test_x)[0]),
    }
per_class_counts = (1, 10) if SMOKE else (1, 10, 100, 450)
num_classes = int(data.train_y.max()) + 1
repeats = {count: 1 if count * num_classes >= len(data.train_x) else
           (2 if SMOKE else (10 if count <= 10 else 5)) for count in per_class_counts}
accuracy = {name: {} for name in features}
for count in per_class_counts:
    subsets = [stratified_subset(data.train_y, count, seed) for seed in range(repeats[count])]
    for name, (train_features, test_features) in features.items():
        accuracy[name][count] = [
            linear_probe(train_features[subset], data.train_y[subset], test_features, data.test_y)
            for subset in subsets]
print(f"{'test accuracy (%)':<26}" + "".join(f"{f'{c * num_classes} labels':>15}"
                                             for c in per_class_counts))
for name, values in accuracy.items():
    print(f"{name:<26}" + "".join(
        f"{100 * np.mean(v):>9.1f} ± {100 * np.std(v):<4.1f}" for v in values.values()))
print(f"(mean ± standard deviation over {', '.join(str(repeats[c]) for c in per_class_counts)} "
      f"random labelled subsets)")
vae_name, pixel_name, pca_name = (f"VAE, {LATENT_DIM} encoder means", "raw pixels",
                                  f"PCA, {LATENT_DIM} components")
for other in (pixel_name, pca_name):
    differences = []
    for count in per_class_counts:
        paired = 100 * (np.array(accuracy[vae_name][count]) - np.array(accuracy[other][count]))
        stderr = paired.std(ddof=1) / math.sqrt(len(paired)) if len(paired) > 1 else float("nan")
        differences.append(f"{paired.mean():+.1f} ± {stderr:.1f}")
    print(f"VAE minus {other}, same subsets (points): " + ", ".join(differences)
          + " (± standard error)")

figure, axis = plt.subplots(figsize=(7, 4.6), layout="constrained")
labels_axis = [count * num_classes for count in per_class_counts]
for name, values in accuracy.items():
    means = [100 * np.mean(v) for v in values.values()]
    spreads = [100 * np.std(v) for v in values.values()]
    axis.errorbar(labels_axis, means, yerr=spreads, marker="o", capsize=3, label=name)
axis.set_xscale("log")
axis.set_xticks(labels_axis, [str(n) for n in labels_axis])
axis.set_xlabel("labelled training images (the same number per class)")
axis.set_ylabel("test accuracy (%)")
axis.set_title("A logistic-regression probe on three kinds of features")
axis.legend(loc="lower right")
axis.grid(alpha=0.3)
figure.savefig(OUT / "probe_accuracy.png", dpi=110)
print(f"wrote {OUT / 'probe_accuracy.png'}")

# %% [markdown]
# (The error bars are the standard deviation over the random labelled
# subsets.) The three curves lie almost on top of each other. The VAE's 20
# numbers are worth as much to a linear classifier as all 784 pixels, at
# every number of labels: a forty-fold shorter description of each image that
# loses none of what the probe can use. The paired differences, computed on
# the same labelled subsets, give the VAE a lead of a few points with 10
# labels, over the pixels and over PCA, two to four standard errors wide; the
# lead shrinks to a point or so at 100 labels, and at 1,000 the pixels are a
# little ahead: a head start with very few labels, and no more. The ELBO
# rewards codes from which the *pixels* can be rebuilt; that the classes come
# out separated is a side effect. The 2-D latent map of tutorial 3 gives a
# picture of why a linear probe cannot use all of it: the clusters are curved
# and touch each other, so the borders between classes are not straight.
#
# ## 3. Compression: bits in the code against the quality of the image
#
# ### The rate and the distortion
#
# Divide the two terms of the negative ELBO by ln 2 and each becomes a number
# of bits per image:
#
# $$\frac{-\mathrm{ELBO}}{\ln 2}
#   = \underbrace{\frac{\mathrm{KL}\big(q(z \mid x) \,\|\, p(z)\big)}{\ln 2}}_{\text{rate } R}
#   + \underbrace{\mathbb{E}_q\big[-\log_2 p(x \mid z)\big]}_{\text{distortion } D}$$
#
# The rate is what the code costs: with *bits-back coding* (Hinton and van
# Camp, 1993; Townsend et al., 2019) a sender can transmit z drawn from
# q(z | x) for a net cost of KL bits on average. The distortion is what the
# pixels still cost once the receiver knows z. Their sum is the length of a
# lossless code for the binary image, 784 bits without a model. β moves a
# model along the line R + D: β > 1 buys cheaper codes with worse
# reconstructions, β < 1 the reverse (Alemi et al., 2018, "Fixing a broken
# ELBO"). The grey lines in the figure mark constant totals R + D.

# %%
rate_distortion = {}
for beta, model in vaes.items():
    with torch.no_grad():
        loc, scale = model.encode(test_binary)
        terms = elbo_terms(model, test_binary, ELBO_SAMPLES)
        log_p = iwae(model, test_binary, IWAE_SAMPLES).per_point
    rate = float((gaussian_kl(loc, scale) / LN2).sum(-1).mean())
    distortion = -terms["reconstruction"].mean / LN2
    rate_distortion[beta] = (rate, distortion, float(-log_p.mean() / LN2))
print(f"{'beta':>5}{'rate R (bits)':>15}{'distortion D':>14}{'R + D':>9}{'-log2 p(x)':>12}")
for beta, (rate, distortion, ideal) in rate_distortion.items():
    print(f"{beta:>5}{rate:>15.1f}{distortion:>14.1f}{rate + distortion:>9.1f}{ideal:>12.1f}")
print(f"raw binary image: {data.data_dim} bits")

figure, axis = plt.subplots(figsize=(6.8, 5), layout="constrained")
rates = [r for r, _, _ in rate_distortion.values()]
distortions = [d for _, d, _ in rate_distortion.values()]
axis.plot(rates, distortions, "o-", color="C0")
for beta, (rate, distortion, _) in rate_distortion.items():
    axis.annotate(f"β = {beta:g}\nR + D = {rate + distortion:.0f}", (rate, distortion),
                  textcoords="offset points", xytext=(8, 6), fontsize=9)
low, high = 0, max(rates) * 1.35
span = np.linspace(low, high, 2)
for total in np.arange(100, 400, 20):
    axis.plot(span, total - span, color="0.85", linewidth=0.8, zorder=0)
axis.set_xlim(low, high)
axis.set_ylim(min(distortions) * 0.85, max(distortions) * 1.1)
axis.set_xlabel("rate R = KL(q(z | x) || p(z)) / ln 2  (bits per image)")
axis.set_ylabel("distortion D = E_q[−log₂ p(x | z)]  (bits per image)")
axis.set_title("Rate against distortion on the test set\n(grey: lines of constant R + D, "
               "20 bits apart)", fontsize="medium")
figure.savefig(OUT / "rate_distortion.png", dpi=110)
print(f"wrote {OUT / 'rate_distortion.png'}")

# %% [markdown]
# Each model's R + D is a fifth to a quarter of the 784 raw bits: that is how
# well these binary digits could be compressed losslessly with bits-back
# coding, and −log₂ p(x) (the IWAE estimate) is lower still, the ideal code
# length under the model. The β = 1 model, trained on exactly
# R + D, has the smallest total; the other two give up total length for a
# cheaper code (β = 4) or a sharper image (β = 0.25).
#
# ### Real bits: quantizing the code
#
# Bits-back coding needs the sender to draw z at random and a careful
# entropy coder. The plainest lossy code instead stores the encoder mean
# μ_φ(x) rounded to a few bits per coordinate, and the receiver decodes that.
# Only *active* coordinates are worth storing: the KL term can switch a
# coordinate off (its μ is then the same for every image and the decoder
# ignores it), so we keep the coordinates whose average rate exceeds 0.1 bit
# and set the others to 0. Each kept coordinate is quantized with b bits into
# 2^b bins of equal probability under a Gaussian with that coordinate's
# spread over the training codes (`quantize_gaussian`), so every bin is used
# about equally often and b bits per coordinate is also about what an
# entropy coder would need. The code then costs b bits times the number of
# kept coordinates.
#
# The quality is measured as wrong pixels (decoder mean thresholded at 0.5,
# against the binary test image) and as −log₂ p(x | ẑ), the bits a lossless
# coder would still need for the pixels once the quantized code ẑ is known;
# code plus pixels is then a complete, two-part lossless code. PCA gets the
# same treatment with as many components as the VAE keeps coordinates (its
# coefficients quantized the same way, its reconstruction thresholded at 0.5).

# %%
train_binary = evaluation_data(data.train_x, "dynamic", 2)
with torch.no_grad():
    train_loc, train_scale = vae.encode(train_binary)
    test_loc, _ = vae.encode(test_binary)
coordinate_rate = (gaussian_kl(train_loc, train_scale) / LN2).mean(0)
active = coordinate_rate > 0.1
active[coordinate_rate.argmax()] = True                      # keep at least one
num_active = int(active.sum())
code_scale = train_loc[:, active].std(0)
pca_active = fit_pca(data.train_x, num_active)
pca_test = pca_active.project(test_binary)
pca_scale = pca_active.project(train_binary).std(0)
print(f"active coordinates (average rate > 0.1 bit): {num_active} of {LATENT_DIM}; "
      f"their rates range from {coordinate_rate[active].min():.2f} to "
      f"{coordinate_rate[active].max():.2f} bits")


def decode_code(code: torch.Tensor) -> torch.distributions.Distribution:
    """p(x | z) with the kept coordinates set to ``code`` and the rest to 0."""
    z = code.new_zeros(len(code), LATENT_DIM)
    z[:, active] = code
    return vae.decode(z)


def wrong_pixels(mean: torch.Tensor) -> float:
    """Average number of pixels per test image where the thresholded ``mean`` is wrong."""
    return float(((mean > 0.5).to(test_binary.dtype) != test_binary).sum(-1).double().mean())


BITS = tuple(range(1, 9))
quantized = {"VAE": {}, "PCA": {}}
with torch.no_grad():
    for b in BITS:
        _, code = quantize_gaussian(test_loc[:, active], b, code_scale)
        likelihood = decode_code(code)
        quantized["VAE"][b] = {"bits": b * num_active, "wrong": wrong_pixels(likelihood.mean),
                               "pixel_bits": float(-likelihood.log_prob(test_binary).mean() / LN2),
                               "code": code}
        _, coefficients = quantize_gaussian(pca_test, b, pca_scale)
        quantized["PCA"][b] = {"bits": b * num_active,
                               "wrong": wrong_pixels(pca_active.reconstruct(coefficients)),
                               "coefficients": coefficients}
    exact = decode_code(test_loc[:, active])
    exact_wrong = wrong_pixels(exact.mean)
    exact_bits = float(-exact.log_prob(test_binary).mean() / LN2)
    pca_exact_wrong = wrong_pixels(pca_active.reconstruct(pca_test))

print(f"{'b':>2}{'code bits':>11}{'VAE wrong px':>14}{'-log2 p(x | z^)':>17}{'code + pixels':>15}"
      f"{'PCA wrong px':>14}")
for b in BITS:
    v = quantized["VAE"][b]
    print(f"{b:>2}{v['bits']:>11}{v['wrong']:>14.1f}{v['pixel_bits']:>17.1f}"
          f"{v['bits'] + v['pixel_bits']:>15.1f}{quantized['PCA'][b]['wrong']:>14.1f}")
print(f"unquantized: VAE {exact_wrong:.1f} wrong pixels, -log2 p(x | mu) = {exact_bits:.1f} bits; "
      f"PCA {pca_exact_wrong:.1f} wrong pixels")
best = min(BITS, key=lambda b: quantized["VAE"][b]["bits"] + quantized["VAE"][b]["pixel_bits"])
best_total = quantized["VAE"][best]["bits"] + quantized["VAE"][best]["pixel_bits"]
print(f"shortest two-part lossless code: b = {best}, {best_total:.1f} bits per image "
      f"(raw: {data.data_dim} bits; bits-back R + D of this model: "
      f"{sum(rate_distortion[1.0][:2]):.1f}; -log2 p(x): {rate_distortion[1.0][2]:.1f})")

# %% [markdown]
# The figure puts the two lossy coders side by side: bits per image (log
# scale) against wrong pixels. The star is the raw binary image: 784 bits,
# no error.

# %%
figure, axis = plt.subplots(figsize=(7.5, 5), layout="constrained")
for name, color in (("VAE", "C0"), ("PCA", "C1")):
    xs = [quantized[name][b]["bits"] for b in BITS]
    ys = [quantized[name][b]["wrong"] for b in BITS]
    axis.plot(xs, ys, "o-", color=color, label=f"{name}, {num_active} coordinates, b = 1 … 8")
    for b, x_value, y_value in zip(BITS, xs, ys):
        if b in (1, 2, 4, 8):
            axis.annotate(f"b={b}", (x_value, y_value), textcoords="offset points",
                          xytext=(4, 5), fontsize=8, color=color)
axis.axhline(exact_wrong, color="C0", linestyle=":", label="VAE, unquantized means")
axis.axhline(pca_exact_wrong, color="C1", linestyle=":", label="PCA, unquantized coefficients")
axis.plot([data.data_dim], [0], "*", color="k", markersize=12,
          label=f"raw binary image ({data.data_dim} bits)")
axis.set_xscale("log")
ticks = sorted({*(num_active * b for b in (1, 2, 4, 8)), data.data_dim})
axis.set_xticks(ticks, [str(t) for t in ticks])
axis.minorticks_off()
axis.set_xlabel("bits per image (log scale)")
axis.set_ylabel(f"wrong pixels per image (of {data.data_dim})")
axis.set_ylim(bottom=-3)
axis.set_title("Lossy codes for binary digits: quantized VAE codes against PCA")
axis.legend(loc="upper right", fontsize=8)
axis.grid(alpha=0.3)
figure.savefig(OUT / "quantization.png", dpi=110)
print(f"wrote {OUT / 'quantization.png'}")

# %% [markdown]
# What those numbers look like: ten test digits, then their VAE decodings at
# 1, 2, 4 and 8 bits per coordinate, then PCA's at 4 and 8.

# %%
shown = [int(torch.nonzero(data.test_y == digit)[0]) for digit in range(10)]
strips = {"binary test digits": test_binary[shown]}
for b in (1, 2, 4, 8):
    strips[f"VAE, {b} bit{'s' if b > 1 else ''} per coordinate "
           f"({quantized['VAE'][b]['bits']} bits per image)"] = \
        decode_code(quantized["VAE"][b]["code"][shown]).mean
for b in (4, 8):
    strips[f"PCA, {b} bits per coordinate ({quantized['PCA'][b]['bits']} bits per image)"] = \
        pca_active.reconstruct(quantized["PCA"][b]["coefficients"][shown]).clamp(0, 1)
figure, axes = plt.subplots(len(strips), 1, figsize=(7.5, 1.05 * len(strips) + 0.4),
                            layout="constrained")
for axis, (name, images) in zip(axes, strips.items()):
    axis.imshow(image_grid(images.detach().cpu(), (height, width), num_columns=10),
                cmap="gray_r", vmin=0, vmax=1)
    axis.set_title(name, fontsize="medium")
    axis.set_axis_off()
figure.suptitle("Decoded from quantized codes")
figure.savefig(OUT / "quantized_reconstructions.png", dpi=110)
print(f"wrote {OUT / 'quantized_reconstructions.png'}")

# %% [markdown]
# Two bits per coordinate (40 bits per image) already give the VAE fewer
# wrong pixels than PCA reaches with eight (160 bits) or with unquantized
# coefficients; from 4 bits on, the VAE's decoding is about as good as from
# the exact means. A linear map of 20 numbers cannot draw sharp strokes,
# while the decoder knows what digits look like: the sender and the receiver
# share the model, and only what is particular to this image travels. The
# two-part lossless code (quantized code, then the pixels under the decoded
# probabilities) is shortest at a coarse quantization and comes within about
# 20 bits of bits-back coding's R + D.
#
# ## What to take away
#
# What the full-size run shows:
#
# * **Anomalies**: a low log p(x) flags corrupted digits well (AUC 0.8 to 1
#   here) but a whole unseen class barely, because the likelihood mostly
#   counts ink: the thin 7s, the thinnest digits and a blank page all look
#   *more* normal than a heavy 8. A low likelihood is evidence of an anomaly;
#   a high one is no evidence of normality. The ELBO ranks as well as IWAE at
#   a fraction of the cost.
# * **Representations**: the 20 encoder means, learned without labels, serve
#   a linear classifier as well as the 784 pixels do, from 10 labels to all
#   of them, with a small lead when labels are very few; they are not the
#   dramatically better features one might hope for, because the ELBO asks
#   for reconstruction, not for separable classes.
# * **Compression**: the KL term is the code's price in bits, and β trades it
#   against reconstruction; a VAE's codes quantized to 2 bits per coordinate
#   reproduce a digit at least as well as PCA at four times the bits.
