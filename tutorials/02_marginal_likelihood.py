# %% [markdown]
# # 2. The marginal likelihood and why it is intractable
#
# *Run time: about 45 seconds on an idle 2-core CPU (measured: 46 s; `PPL_VAE_SMOKE=1`: seconds).*
#
# A latent variable model assigns each data point the probability (density)
#
# $$p(x) = \int p(x \mid z)\, p(z)\, dz,$$
#
# the *marginal likelihood* or *evidence*: how likely the two-step story of
# tutorial 1 (draw z from the prior, then x from the decoder) is to produce
# exactly this x, whichever code it went through. It is the number training
# should maximize, and the number the posterior
# p(z | x) = p(x | z) p(z) / p(x) divides by. Both densities under the
# integral are easy to evaluate at any z, yet the integral itself has no
# closed form once p(x | z) runs through a neural network, and
# numerical integration fails too: a grid of 10 points per axis in 20
# dimensions is 10^20 decoder calls. The only general tool left is Monte
# Carlo, and this tutorial (the text's Exercise 3) shows where it works and
# where it breaks:
#
# 1. on probabilistic PCA, where log p(x) is known exactly, we compare two
#    Monte Carlo estimators with the truth;
# 2. we watch the simplest one fall apart as the latent dimension grows;
# 3. on a VAE trained on real digits, where no exact answer exists, only the
#    estimators are left, and they disagree by tens of nats.

# %% tags=["hide-input"]
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyro
import pyro.distributions as dist
import torch

from ppl_vae import VAE, LinearGaussian, SVIConfig, load_dataset, resolve_device, train
from ppl_vae.data import evaluation_data
from ppl_vae.evaluation.quoting import quote
from ppl_vae.inference import elbo, elbo_terms, iwae, naive_prior
from ppl_vae.inference.defensive import defensive_mixture
from ppl_vae.inference.local_vi import fit_flow_posterior, fit_local_gaussian
from ppl_vae.inference.psis import pareto_k_threshold

SMOKE = os.environ.get("PPL_VAE_SMOKE") == "1"
OUT = Path(__file__).resolve().parent / ("outputs/smoke" if SMOKE else "outputs") / "02_marginal_likelihood"
OUT.mkdir(parents=True, exist_ok=True)
device = resolve_device("auto")
pyro.set_rng_seed(0)

# %% [markdown]
# ## Two Monte Carlo estimators of p(x)
#
# **Naive (prior) Monte Carlo.** p(x) is an average of p(x | z) over the
# prior, so draw z_1, ..., z_K from p(z) and average:
#
# $$\hat p(x) = \frac{1}{K} \sum_{k=1}^{K} p(x \mid z_k), \qquad z_k \sim p(z).$$
#
# **Importance sampling.** Draw instead from a proposal q(z | x) that knows
# about x, and correct each draw by its weight w_k = p(x, z_k) / q(z_k | x):
#
# $$\hat p(x) = \frac{1}{K} \sum_{k=1}^{K} w_k, \qquad w_k = \frac{p(x, z_k)}{q(z_k \mid x)}, \qquad z_k \sim q(z \mid x).$$
#
# Both are unbiased for p(x) for every K. We report their logarithms
# (`naive_prior` and `iwae` in `ppl_vae.inference`); by Jensen's inequality
# the log of an unbiased estimate is biased *downwards*, so on average the
# log-estimates sit below log p(x) and approach it as K grows. The second one
# is the importance-weighted (IWAE) bound of Burda et al.; with K = 1 its
# expectation is the ELBO.
#
# Probabilistic PCA (z ~ N(0, I), x | z ~ N(W z + μ, σ² I)) is a latent
# variable model whose evidence is Gaussian, p(x) = N(μ, W Wᵀ + σ² I), and
# whose posterior p(z | x) is Gaussian too. So we can check every estimate
# against the truth. We fit it by maximum likelihood (closed form) to data
# drawn from a known pPCA model with 20 observed and 3 latent dimensions,
# in double precision so that rounding does not blur the comparison.

# %%
small = load_dataset("linear-gaussian", seed=0, dtype=torch.float64, num_points=2000,
                     data_dim=20, latent_dim=3).to(device)
ppca = LinearGaussian.fit_maximum_likelihood(small.train_x, latent_dim=3)
points = small.test_x[:3]
with torch.no_grad():
    exact = ppca.log_marginal(points)
    exact_posterior = ppca.posterior(points)
print(f"pPCA fit: data_dim {ppca.data_dim}, latent_dim {ppca.latent_dim}, "
      f"noise scale {ppca.noise_scale.item():.3f}")
print("exact log p(x) of the three test points:", exact.cpu().numpy().round(4))

# %% [markdown]
# ## Three proposals for the same integral
#
# We compare three ways of choosing the z's:
#
# * the prior p(z) (the naive estimator);
# * the exact posterior p(z | x): `fit_maximum_likelihood` already sets the
#   pPCA guide to it (`set_guide_to_posterior()`), so `iwae(ppca, x, K)`
#   samples from it;
# * a deliberately worse guide: the exact posterior shifted by 1.5 posterior
#   standard deviations in every coordinate and made twice as wide. It is a
#   small Pyro program with the same site `"z"` inside a `"data"` plate, so
#   `iwae` takes it as its `guide`.
#
# For K = 1, 10, ..., 10,000 each estimator gives one log-estimate per point
# with its Monte Carlo standard error (a delta-method error, undefined for
# K = 1). Where the weights' Pareto k̂ (explained at the end) says the error
# cannot be trusted, the estimate reports it as `inf`, drawn without a bar.

# %%
ppca.set_guide_to_posterior()
SHIFT, WIDEN = 1.5, 2.0


def worse_guide(x):
    """q(z | x): the exact posterior moved by SHIFT standard deviations and WIDEN times wider."""
    posterior = ppca.posterior(x)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.MultivariateNormal(posterior.loc + SHIFT * posterior.stddev,
                                                 scale_tril=WIDEN * posterior.scale_tril))


sample_sizes = [1, 10, 100] if SMOKE else [1, 10, 100, 1_000, 10_000]
estimators = {
    "naive: z ~ prior": lambda x, k: naive_prior(ppca, x, k),
    "IS: z ~ shifted, widened posterior": lambda x, k: iwae(ppca, x, k, guide=worse_guide),
    "IS: z ~ exact posterior": lambda x, k: iwae(ppca, x, k),
}
results = {name: [estimate(points, k) for k in sample_sizes]
           for name, estimate in estimators.items()}
for name, per_k in results.items():
    print(name)
    for k, estimate in zip(sample_sizes, per_k):
        error = (estimate.per_point - exact).cpu().numpy()
        stderr = ", ".join(f"{v:.1e}" for v in estimate.stderr.tolist())
        print(f"  K={k:>6}: log p-hat {estimate.per_point.cpu().numpy().round(4)}  "
              f"± [{stderr}]  (minus exact: {error.round(4)})")

# %%
markers = {"naive: z ~ prior": "o", "IS: z ~ shifted, widened posterior": "s",
           "IS: z ~ exact posterior": "^"}
figure, axes = plt.subplots(1, len(points), figsize=(13, 4.2), layout="constrained")
for i, axis in enumerate(axes):
    bottom = float(exact[i]) - 9
    for j, (name, per_k) in enumerate(results.items()):
        k = np.array(sample_sizes) * 1.18 ** (j - 1)  # offsets so that bars do not overlap
        values = np.array([float(e.per_point[i]) for e in per_k])
        errors = np.array([float(e.stderr[i]) for e in per_k])
        line = axis.errorbar(k, values, yerr=np.where(np.isfinite(errors), errors, 0.0), marker=markers[name], capsize=3,
                             label=name)
        for k_j, value in zip(k, values):  # name the values that fall below the frame
            if value < bottom:
                axis.annotate(f"{value:.0f}", (k_j, bottom), xytext=(0, 3 + 10 * j),
                              textcoords="offset points", ha="center", fontsize=7,
                              color=line.lines[0].get_color(),
                              bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    axis.axhline(float(exact[i]), color="black", linestyle="--", label="exact log p(x)")
    axis.set_xscale("log")
    axis.set_xlabel("number of samples K")
    axis.set_title(f"test point {i}: exact log p(x) = {float(exact[i]):.2f}")
    axis.set_ylim(bottom, float(exact[i]) + 3)
axes[0].set_ylabel("estimate of log p(x) (nats)")
handles, labels = axes[0].get_legend_handles_labels()
figure.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=9)
figure.suptitle("pPCA (D = 20, L = 3): Monte Carlo estimates of log p(x) against the exact value "
                "(bars: ±1 standard error)")
figure.savefig(OUT / "ppca_estimates_vs_k.png", dpi=110)
print(f"wrote {OUT / 'ppca_estimates_vs_k.png'}")

# %% [markdown]
# What the figure shows:
#
# * **The exact posterior is exact with one sample.** When q(z | x) = p(z | x),
#   every weight is the same number:
#
#       w = p(x, z) / p(z | x) = p(x) p(z | x) / p(z | x) = p(x),
#
#   whatever z was drawn. The estimator has zero variance; its standard
#   errors above are 1e-15 or smaller, pure rounding error. This is the ideal an encoder
#   aims for, and the reason the posterior and the evidence are the same
#   problem: knowing one gives the other.
# * **A reasonable guide needs few samples.** The shifted, widened guide puts
#   its draws where the posterior is, only with the wrong proportions; the
#   weights then vary moderately, and a hundred draws or so pin log p(x)
#   down to a few tenths of a nat. Wider than the target is the safe
#   direction: a proposal narrower than the posterior can miss part of it and
#   produce rare, huge weights.
# * **The prior is the worst proposal.** Most prior draws land where the
#   posterior has almost no mass, so p(x | z_k) is tiny for almost all k and
#   the average is carried by the few that happen to land near the posterior.
#   For small K that lucky draw is usually absent and the log-estimate lies
#   far below the truth (values below the figure's frame are written at its
#   bottom edge). With only 3 latent dimensions, K = 10,000 is enough for
#   points 0 and 1, but not yet for point 2.
# * **The standard error can lie.** It is computed from the same K weights,
#   so it cannot see the draws that never happened. When one weight
#   dominates, the delta-method error comes out close to 1 nat whatever the
#   true error is: the naive estimate of point 2 at K = 10 is 200 nats off,
#   and the delta method says ±1. A small standard error is evidence of
#   accuracy only when the proposal covers the posterior, which is what the
#   Pareto k̂ of the last section checks; with too few draws to check it
#   (K = 1, 10) or a failed check, `ppl_vae` reports the error as `inf`.
#
# A useful rule of thumb (Chatterjee and Diaconis, 2018) says importance
# sampling needs about K ≈ exp(KL(target ‖ proposal)) draws. For the naive
# estimator the target is the posterior and the proposal the prior, and
# KL(p(z | x) ‖ p(z)) is the number of nats the data point tells us about z.

# %%
prior = dist.MultivariateNormal(torch.zeros(3, dtype=torch.float64, device=device),
                                torch.eye(3, dtype=torch.float64, device=device))
with torch.no_grad():
    information = torch.distributions.kl_divergence(exact_posterior, prior)
print("KL(p(z|x) || p(z)) of the three points (nats):", information.cpu().numpy().round(2))
print("rule-of-thumb K for the naive estimator, exp(KL):",
      [f"{v:.0f}" for v in information.exp().tolist()])

# %% [markdown]
# ## Why it gets hard: the latent dimension
#
# The KL between posterior and prior adds up over latent dimensions: each
# dimension the data pins down contributes its share. So the number of prior
# draws needed grows *exponentially* with the latent dimension. To see it, we
# draw pPCA data with D = 25 observed dimensions and L = 1, 2, 5, 10 latent
# ones, fit each, and run the naive estimator with a fixed K = 1,000 many
# times on the same 20 test points. For each latent dimension we report
#
# * the bias, exact log p(x) minus the average log p̂(x) over the repeats
#   (how far the estimator is from the truth, typically);
# * the standard deviation of log p̂(x) across repeats;
# * the rule-of-thumb log K, the exact KL(p(z | x) ‖ p(z)), averaged over the
#   points.

# %%
latent_dims = [1, 2, 5] if SMOKE else [1, 2, 5, 10]
num_points, num_repeats, fixed_k = (5, 10, 100) if SMOKE else (20, 200, 1_000)
spread_rows = []
for latent_dim in latent_dims:
    data_l = load_dataset("linear-gaussian", seed=0, dtype=torch.float64, num_points=2000,
                          data_dim=25, latent_dim=latent_dim).to(device)
    model_l = LinearGaussian.fit_maximum_likelihood(data_l.train_x, latent_dim)
    x_l = data_l.test_x[:num_points]
    repeated = naive_prior(model_l, x_l.repeat(num_repeats, 1), fixed_k)
    estimates = repeated.per_point.reshape(num_repeats, num_points)
    with torch.no_grad():
        truth = model_l.log_marginal(x_l)
        prior_l = dist.MultivariateNormal(x_l.new_zeros(latent_dim),
                                          torch.eye(latent_dim, dtype=x_l.dtype, device=device))
        kl = torch.distributions.kl_divergence(model_l.posterior(x_l), prior_l)
    errors = (estimates - truth).cpu()
    spread_rows.append({
        "latent_dim": latent_dim,
        "errors": errors.flatten().numpy(),
        "bias": float((truth - estimates.mean(0)).mean()),
        "std": float(estimates.std(0).mean()),
        "kl": float(kl.mean()),
    })
print(f"naive estimator, K = {fixed_k}, {num_repeats} repeats on {num_points} points, D = 25")
print(f"{'latent_dim':>10} {'bias (nats)':>12} {'std (nats)':>11} {'KL = log K needed':>18}"
      f" {'K needed':>10}")
for row in spread_rows:
    print(f"{row['latent_dim']:>10} {row['bias']:>12.3f} {row['std']:>11.3f} {row['kl']:>18.2f}"
          f" {math.exp(row['kl']):>10.2g}")

# %%
figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
left.boxplot([row["errors"] for row in spread_rows], showfliers=False)
left.set_xticks(range(1, len(spread_rows) + 1), [str(row["latent_dim"]) for row in spread_rows])
left.axhline(0, color="black", linestyle="--", linewidth=1)
left.set_xlabel("latent dimension L")
left.set_ylabel("log p-hat(x) − exact log p(x) (nats)")
left.set_title(f"Errors of the naive estimate (K = {fixed_k}), all repeats and points")
dims = [row["latent_dim"] for row in spread_rows]
right.plot(dims, [row["bias"] for row in spread_rows], marker="o",
           label="bias: exact − mean log p-hat")
right.plot(dims, [row["std"] for row in spread_rows], marker="s",
           label="std of log p-hat over repeats")
right.plot(dims, [row["kl"] for row in spread_rows], marker="^", linestyle=":",
           label="KL(p(z|x) || p(z)) ≈ log K needed")
right.axhline(math.log(fixed_k), color="gray", linestyle="--", linewidth=1,
              label=f"log K used = {math.log(fixed_k):.1f}")
right.set_yscale("log")
right.set_xticks(dims)
right.set_xlabel("latent dimension L")
right.set_ylabel("nats (log scale)")
right.set_title("Bias and spread grow with the latent dimension")
right.legend(fontsize=8)
figure.suptitle(f"Naive Monte Carlo on pPCA data, D = 25: {num_repeats} repeats on each of "
                f"{num_points} test points")
figure.savefig(OUT / "naive_vs_latent_dim.png", dpi=110)
print(f"wrote {OUT / 'naive_vs_latent_dim.png'}")

# %% [markdown]
# With one or two latent dimensions, 1,000 prior draws are plenty: the bias is
# a fraction of a nat. Once the KL passes log K (the dashed line), the
# estimator has not yet seen a single draw from the region that matters; it
# returns the best of K poor guesses, and its bias jumps to tens or hundreds
# of nats. Its *spread* across repeats is then smaller than its bias, so
# repeating the estimate would give a confident, consistent, wrong answer.
# The rule-of-thumb column says how many draws would fix it, and that number
# multiplies by roughly the same factor with every latent dimension added.

# %% [markdown]
# ## The same on a VAE trained on digits
#
# For a VAE there is no exact log p(x) to compare with, only the estimators.
# We train a VAE with a 10-dimensional latent code on `mnist5k`
# (dynamically binarized) and evaluate 50 test digits from the fixed binary
# evaluation copy (`evaluation_data`). For each K we compute
#
# * the naive estimate, z ~ p(z);
# * the ELBO averaged over K draws from the encoder q(z | x): its expectation
#   does not depend on K, only its noise does;
# * the IWAE bound with K draws from the encoder.
#
# The last two are lower bounds on log p(x) in expectation, with
# ELBO ≤ IWAE_K ≤ IWAE_{K+1} ≤ log p(x).

# %%
digits = load_dataset("digits" if SMOKE else "mnist5k").to(device)
height, width = digits.image_shape
vae = VAE(digits.data_dim, latent_dim=10, hidden_dims=(400,)).to(device)
config = SVIConfig(epochs=1 if SMOKE else 80, binarize="dynamic", seed=0)
result = train(vae, digits.train_x, config, test_x=digits.test_x)
print(f"trained {config.epochs} epochs in {result.history[-1]['wall_time']:.1f} s; "
      f"test ELBO {result.final_test_elbo:.2f} nats per image")

test_images = evaluation_data(digits.test_x, "dynamic", config.seed)[:50]
vae_sizes = [1, 10, 100] if SMOKE else [1, 10, 100, 1_000, 5_000]
vae_results = {"naive": [], "ELBO": [], "IWAE": []}
for k in vae_sizes:
    vae_results["naive"].append(naive_prior(vae, test_images, k))
    vae_results["ELBO"].append(elbo(vae, test_images, k))
    vae_results["IWAE"].append(iwae(vae, test_images, k))
def delta_mean_stderr(estimate):
    """The delta-method error of the average, whatever k̂ says (see the last section)."""
    errors = estimate.stderr if estimate.delta_stderr is None else estimate.delta_stderr
    return float(errors.pow(2).sum().sqrt() / errors.numel())


print(f"averages over {len(test_images)} test digits (nats per image, ± Monte Carlo "
      "standard error; [n]: digits whose weights' Pareto k̂ says their error cannot be trusted)")
print(f"{'K':>6} {'naive':>22} {'ELBO':>16} {'IWAE':>22}")
for i, k in enumerate(vae_sizes):
    cells = []
    for name in ("naive", "ELBO", "IWAE"):
        estimate = vae_results[name][i]
        flagged = f" [{int(estimate.flagged.sum()):>2}]" if estimate.pareto_k is not None else ""
        cells.append(f"{estimate.mean:>9.2f} ± {delta_mean_stderr(estimate):<5.2f}{flagged}")
    print(f"{k:>6} " + " ".join(cells))
best_iwae = vae_results["IWAE"][-1].per_point
for i, k in enumerate(vae_sizes):
    iwae_k = vae_results["IWAE"][i].per_point
    below_iwae = {name: int((vae_results[name][i].per_point <= iwae_k).sum())
                  for name in ("naive", "ELBO")}
    print(f"K={k:>5}: digits with ELBO <= IWAE: {below_iwae['ELBO']} of {len(test_images)}; "
          f"with naive <= IWAE: {below_iwae['naive']} of {len(test_images)}")

# %% [markdown]
# How many prior draws would the naive estimator need? By the rule of thumb,
# about exp(KL(p(z | x) ‖ p(z))). We do not know the true posterior, but the
# encoder approximates it, and the ELBO's KL term KL(q(z | x) ‖ p(z)) gives
# the order of magnitude.

# %%
kl_term = elbo_terms(vae, test_images, 100 if SMOKE else 1_000)["kl"].per_point
print(f"KL(q(z|x) || p(z)) over the 50 digits: mean {float(kl_term.mean()):.1f} nats "
      f"(min {float(kl_term.min()):.1f}, max {float(kl_term.max()):.1f})")
print(f"rule-of-thumb prior draws needed, exp(KL): median {float(kl_term.median().exp()):.2g}, "
      f"max {float(kl_term.max().exp()):.2g}")

# %%
shown = [0, 1, 2, 3, 4, 5]
styles = {"naive": ("o", "tab:red"), "ELBO": ("s", "tab:blue"), "IWAE": ("^", "tab:green")}
figure, grid = plt.subplots(2, 6, figsize=(14, 7), layout="constrained",
                            gridspec_kw={"width_ratios": [1, 4] * 3})
axes = grid[:, 1::2]
for picture, index in zip(grid[:, 0::2].flat, shown):
    picture.imshow(test_images[index].reshape(height, width).cpu(), cmap="gray_r", vmin=0, vmax=1)
    picture.set_axis_off()
for axis, index in zip(axes.flat, shown):
    for name, per_k in vae_results.items():
        marker, colour = styles[name]
        values = [float(e.per_point[index]) for e in per_k]
        errors = np.array([float(e.stderr[index]) for e in per_k])
        errors = np.where(np.isfinite(errors), errors, 0.0)  # no bar where k̂ flags the error
        axis.errorbar(vae_sizes, values, yerr=errors, marker=marker, color=colour, capsize=3,
                      label=name)
    axis.set_xscale("log")
    axis.set_title(f"test digit {index}")
    axis.set_xlabel("number of samples K")
for axis in axes[:, 0]:
    axis.set_ylabel("estimate of log p(x) (nats)")
axes[0, 0].legend(fontsize=8)
figure.suptitle("VAE (latent_dim 10) on binarized test digits: naive prior estimate, "
                "ELBO and IWAE bound against K")
figure.savefig(OUT / "vae_estimates_per_image.png", dpi=110)
print(f"wrote {OUT / 'vae_estimates_per_image.png'}")
for index in shown:
    print(f"digit {index}: " + "; ".join(
        f"{name} " + " ".join(f"{float(e.per_point[index]):.1f}" for e in per_k)
        for name, per_k in vae_results.items()) + f"  (K = {vae_sizes})")

# %%
figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.5), layout="constrained")
for axis, names in ((left, ("naive", "ELBO", "IWAE")), (middle, ("ELBO", "IWAE"))):
    for name in names:
        marker, colour = styles[name]
        per_k = vae_results[name]
        axis.errorbar(vae_sizes, [e.mean for e in per_k],
                      yerr=np.nan_to_num([delta_mean_stderr(e) for e in per_k]),
                      marker=marker, color=colour, capsize=3, label=name)
    axis.set_xscale("log")
    axis.set_xlabel("number of samples K")
    axis.set_ylabel(f"average over {len(test_images)} digits (nats)")
    axis.legend()
left.set_title("Average estimate of log p(x)")
middle.set_title("Zoom: the two bounds that use the encoder")
gaps = {"IWAE − naive": (best_iwae - vae_results["naive"][-1].per_point).cpu().numpy(),
        "IWAE − ELBO": (best_iwae - vae_results["ELBO"][-1].per_point).cpu().numpy()}
right.hist(list(gaps.values()), bins=20, label=list(gaps.keys()), color=["tab:red", "tab:blue"])
right.set_xlabel(f"gap at K = {vae_sizes[-1]} (nats)")
right.set_ylabel("number of digits")
right.set_title("Per-digit gaps below the IWAE bound")
right.legend()
figure.suptitle("VAE on 50 binarized test digits")
figure.savefig(OUT / "vae_estimates_mean.png", dpi=110)
print(f"wrote {OUT / 'vae_estimates_mean.png'}")
for name, values in gaps.items():
    print(f"{name} at K = {vae_sizes[-1]}: mean {values.mean():.2f}, min {values.min():.2f}, "
          f"max {values.max():.2f} nats")

# %% [markdown]
# The VAE repeats the pPCA story, with the prior as the failing proposal:
#
# * The **naive estimate** climbs steeply at first and then ever more slowly
#   (each factor of 10 in K buys fewer nats than the one before), and at
#   K = 5,000 it is still tens of nats below the IWAE bound, for every digit
#   and by up to about a hundred nats for some. Since the IWAE bound is itself
#   (in expectation) below log p(x), the naive estimate is at least that far
#   from the truth. The KL printed above says why: each digit carries roughly
#   10 to 25 nats of information about its code, so the prior would need on
#   the order of exp(KL), tens of millions to billions of draws *per digit*,
#   to land a few of them where the posterior lives. A VAE with more
#   latent dimensions, or a sharper decoder, needs exponentially more still.
# * The **ELBO** stays flat in K: averaging more draws of log w only makes it
#   less noisy, it does not tighten the bound. At K = 1 the ELBO and IWAE
#   columns are the same estimator (one draw of log w), and their difference
#   is noise; from K = 10 on the IWAE bound lies above the ELBO for every
#   digit, or nearly every one (the counts are printed above).
# * The **IWAE bound** rises with K, by ever smaller steps (middle panel),
#   because the encoder is a good proposal: close to the posterior, though
#   not equal to it (for the exact posterior the curve would be flat at
#   log p(x), as in the pPCA figure). The few nats between the ELBO and the
#   IWAE bound are a lower bound on how far the encoder is from the true
#   posterior, measured as KL(q(z | x) ‖ p(z | x)) = log p(x) − ELBO.
#   The bracketed counts give a warning, though: for most digits the encoder's
#   weights have a Pareto k̂ above 0.7 even at K = 5,000 (the last section
#   explains k̂). The bound is still climbing, and its small ± is the
#   delta-method error, which cannot see the large weights not yet drawn.
#
# This is why the integral is called intractable: both densities under it are
# cheap to evaluate, but the mass of p(x | z) p(z) sits in a tiny region of a
# large space that blind sampling does not find. A VAE solves the search by
# learning an encoder q(z | x) that points at the region, and the ELBO and
# IWAE bounds use it. The next tutorials build on that idea.

# %% [markdown]
# ## Which estimate to trust: the Pareto k̂ of the weights
#
# Every estimate above comes with a standard error computed from the same K
# weights, and the pPCA section showed how that error can lie: it cannot see
# the huge weights that were never drawn. Pareto-smoothed importance sampling
# (Vehtari, Simpson, Gelman, Yao and Gabry, 2024) gives the check. Fit a
# generalized Pareto distribution to the largest M = min(K/5, 3√K) weights;
# its shape k̂ says how heavy their tail is:
#
# * k̂ < 0.5: the weights have a finite variance, the central limit theorem
#   applies, the estimate and its error are fine;
# * 0.5 ≤ k̂ ≤ 0.7: infinite variance in theory, but in practice the estimate
#   converges; use it with care;
# * k̂ > 0.7: the estimate is ruled by rare draws, converges too slowly to
#   use, and its standard error means nothing. `ppl_vae` flags such points
#   and reports their error as `inf` (for K below about 2,000 the threshold
#   is the paper's stricter 1 − 1/log10 K).
#
# `iwae` and `naive_prior` compute k̂ and the effective sample size
# ESS = (Σ w)² / Σ w² per point from the same streamed draws, without keeping
# all K weights. Here one digit is scored with four proposals: the prior, the
# encoder, q* (a Gaussian fitted to this digit alone, `fit_local_gaussian`)
# and a flow posterior started at q* (`fit_flow_posterior`); and, fifth, a
# *defensive mixture* of q*, q* twice as wide, the encoder and the prior
# (Hesterberg 1995), whose weights p(x, z) / q_mix(z) ≤ p(x | z) / 0.2 are
# bounded whatever the posterior looks like. We take the test digit whose
# encoder weights have the heaviest tail.

# %%
scored_k = vae_sizes[-1]
digit = int(vae_results["IWAE"][-1].pareto_k.argmax())
one = test_images[digit:digit + 1]
fit_steps = 60 if SMOKE else 3000
q_star = fit_local_gaussian(vae, one, max_steps=fit_steps, seed=0).posterior
flow = fit_flow_posterior(vae, one, start=q_star, max_steps=fit_steps, seed=0, num_particles=8).posterior
pyro.set_rng_seed(1)
proposals = {
    "prior (naive)": naive_prior(vae, one, scored_k),
    "encoder q(z|x)": iwae(vae, one, scored_k),
    "q* (Gaussian for this digit)": iwae(vae, one, scored_k, guide=q_star),
    "flow posterior": iwae(vae, one, scored_k, guide=flow),
    "defensive mixture": iwae(vae, one, scored_k,
                              guide=defensive_mixture(vae, one, q_star.loc.detach(), q_star.scale.detach())),
}
print(f"test digit {digit}, K = {scored_k} draws per proposal; "
      f"trust needs k̂ <= {pareto_k_threshold(scored_k):.2f}")
print(f"{'proposal':<30}{'log p-hat':>11}{'delta-method ±':>16}{'k̂':>7}{'ESS':>8}  verdict")
for name, estimate in proposals.items():
    k_hat = float(estimate.pareto_k[0])
    verdict = "flagged: do not trust" if bool(estimate.flagged[0]) else (
        "trust" if k_hat < 0.5 else "usable with care")
    print(f"{name:<30}{float(estimate.per_point[0]):>11.3f}{float(estimate.delta_stderr[0]):>16.3f}"
          f"{k_hat:>7.2f}{float(estimate.ess[0]):>8.0f}  {verdict}")

# The numbers the text below quotes, from this run.
flow_estimate = float(proposals["flow posterior"].per_point[0])
quote("scored_k", scored_k)
for key, name in (("prior", "prior (naive)"), ("encoder", "encoder q(z|x)"),
                  ("q_star", "q* (Gaussian for this digit)"), ("flow", "flow posterior"),
                  ("defensive", "defensive mixture")):
    estimate = proposals[name]
    quote(f"{key}_k", float(estimate.pareto_k[0]))
    quote(f"{key}_ess", float(estimate.ess[0]))
    quote(f"{key}_se", float(estimate.delta_stderr[0]))
    quote(f"{key}_deficit", flow_estimate - float(estimate.per_point[0]))
quote("q_star_vs_flow", abs(float(proposals["q* (Gaussian for this digit)"].per_point[0]) - flow_estimate))
quote("defensive_vs_flow", abs(float(proposals["defensive mixture"].per_point[0]) - flow_estimate))

# %% [markdown]
# How to read the table (the numbers in this list are this run's own):
#
# * The **prior**'s weights have k̂ = {glue:text}`prior_k:.1f` and an ESS of
#   {glue:text}`prior_ess:.0f` draws, and its log p̂(x) lies
#   {glue:text}`prior_deficit:.1f` nats below the flow's. Where k̂ is above
#   0.7, as it is at full size, its delta-method error (here
#   ±{glue:text}`prior_se:.2f`) is meaningless, and k̂ says so without knowing
#   the answer.
# * The **encoder**, on this digit chosen for its heavy tail, has k̂ =
#   {glue:text}`encoder_k:.2f` and an ESS of {glue:text}`encoder_ess:.0f` of
#   {glue:text}`scored_k`: its log p̂(x) lies {glue:text}`encoder_deficit:.2f`
#   nats below the flow's, with ±{glue:text}`encoder_se:.2f`. Where the
#   encoder's q is narrower than the posterior in some direction, the rare
#   draws out there carry weights the average has not seen yet, and k̂ flags it.
# * **q\*** and the **flow**, fitted to this digit alone, differ by
#   {glue:text}`q_star_vs_flow:.2f` nats, with ESSs of {glue:text}`q_star_ess:.0f`
#   and {glue:text}`flow_ess:.0f` and k̂ of {glue:text}`q_star_k:.2f` and
#   {glue:text}`flow_k:.2f`. A Gaussian fitted by KL(q ‖ p) is a little too
#   narrow, so its weights' tail is heavier than the ESS suggests.
# * The **defensive mixture** differs from the flow by
#   {glue:text}`defensive_vs_flow:.2f` nats. Its weights are bounded by
#   construction, p(x, z) / q_mix(z) ≤ 5 p(x | z), so it can never be badly
#   wrong; but in 10 dimensions the bound is far above p(x) and its k̂
#   ({glue:text}`defensive_k:.2f`) need not be small: bounded weights are a
#   guarantee of convergence, not of speed. It pays for its safety with a
#   smaller ESS ({glue:text}`defensive_ess:.0f`), because part of its draws
#   come from the prior and the wide component.
#
# The rule `compare_posteriors` (tutorial 4) follows per data point: among
# the proposals with k̂ ≤ 0.7, the defensive mixture included, take the
# estimate with the smallest standard error, unless another proposal's
# estimate lies far above it. k̂ has a blind spot that this cross-check
# covers: a proposal sitting in one of two posterior modes has perfectly
# tame weights (small k̂, large ESS), because it never visits the other
# mode, and its estimate misses that mode's mass. Every proposal estimates
# the same p(x) without bias, so one estimate far above another is the
# sign. Points left without a trustworthy estimate are flagged. A test
# checks the result against log p(x) computed exactly by quadrature on a
# 2-D latent space: every unflagged estimate lies within four of its
# reported standard errors of the truth.

# %% [markdown]
# ## Annealed importance sampling: an error bar where IWAE has none
#
# On a latent space of 10 or 20 dimensions the encoder's weights are often
# flagged on most digits, and more samples do not help once k̂ > 1: the
# weights then have no finite mean to settle on. *Annealed importance
# sampling* (Neal, 2001) does not ask one proposal to cover the posterior.
# Each chain starts at a draw from the encoder's q(z | x) and walks through a
# sequence of distributions
#
#     f_t(z) ∝ q(z | x)^(1 − β_t) · p(x, z)^(β_t),    0 = β_0 < β_1 < … < β_T = 1,
#
# taking a few Hamiltonian Monte Carlo steps at each temperature and
# collecting the weight increments (β_t − β_{t−1}) · [log p(x, z) − log q(z | x)]
# along the way. The exponential of a chain's summed weight is an unbiased
# estimate of p(x), so the log of the chains' average is a lower bound in
# expectation, like IWAE, but with T small steps the weights of different
# chains differ by a fraction of a nat and the error bar over the chains can
# be trusted. `ais(model, x)` runs every chain of every digit together, one
# batched gradient per leapfrog step.

# %%
from ppl_vae.inference.ais import AISConfig, ais, bdmc

ais_temperatures = [2, 4] if SMOKE else [10, 100, 300]
iwae_best = vae_results["IWAE"][-1]
print(f"{len(test_images)} test digits; IWAE K = {vae_sizes[-1]}: {iwae_best.mean:.3f} nats, "
      f"k̂ flagged on {int(iwae_best.flagged.sum())} digits")
for temperatures in ais_temperatures:
    annealed = ais(vae, test_images, config=AISConfig(num_temperatures=temperatures))
    above = annealed.per_point - iwae_best.per_point
    print(f"AIS, T = {temperatures:>4}: {annealed.mean:.3f} ± {delta_mean_stderr(annealed):.3f} nats; "
          f"error bar trusted on {int((~annealed.flagged).sum())} of {len(test_images)} digits; "
          f"AIS - IWAE per digit: mean {float(above.mean()):+.3f}, max {float(above.max()):+.3f}")

# %% [markdown]
# With enough temperatures AIS lands above the IWAE bound on most digits,
# and by more than its error bar: the encoder's IWAE with thousands of
# samples was still short of log p(x).
#
# ## Bidirectional Monte Carlo: a sandwich around log p(x)
#
# AIS is still a lower bound. How far below log p(x) does it stay? On data
# *simulated from the model* we know more than usual: the z that produced
# each x is an exact draw from p(z | x). Started there, the same annealing
# run backwards (from β = 1 to 0) estimates 1 / p(x) without bias, which
# gives an *upper* bound in expectation (Grosse, Ghahramani & Adams, 2015).
# The two bounds sandwich log p(x), and their gap bounds the error the
# forward run makes with that schedule on data like these (Wu et al., 2017,
# used this to show how far published IWAE numbers of VAEs and GANs were
# off). `bdmc(model, x)` simulates one digit per row of `x` and runs both.

# %%
simulated_rows = test_images[:4 if SMOKE else 30]
sandwich = []
for temperatures in ais_temperatures:
    run = bdmc(vae, simulated_rows, config=AISConfig(num_temperatures=temperatures))
    sandwich.append(run)
    print(f"T = {temperatures:>4}: lower {run.lower.mean:.3f}, upper {run.upper.mean:.3f}, "
          f"gap {run.mean_gap:.3f} nats per digit (largest {float(run.gap.max()):.3f})")

figure, axis = plt.subplots(figsize=(6, 4))
axis.plot(ais_temperatures, [run.lower.mean for run in sandwich], marker="o",
          label="forward AIS (lower bound)")
axis.plot(ais_temperatures, [run.upper.mean for run in sandwich], marker="s",
          label="reverse AIS (upper bound)")
axis.set_xscale("log")
axis.set_xlabel("temperatures T")
axis.set_ylabel("log p(x), nats per simulated digit")
axis.set_title("Bidirectional Monte Carlo on digits simulated from the VAE")
axis.legend()
figure.tight_layout()
figure.savefig(OUT / "bdmc_sandwich.png", dpi=110)
print(f"wrote {OUT / 'bdmc_sandwich.png'}")

# %% [markdown]
# The two curves close in on each other as T grows: the upper bound falls,
# the lower bound rises, and where they meet is log p(x). The gap at the
# schedule you use is the error bar on AIS's *bias*, which no single run
# can show; `ppl-vae evaluate --ais --bdmc 100` prints both for a trained
# model, and says how many temperatures would narrow a wide gap.
