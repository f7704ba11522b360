# %% [markdown]
# # 4. MCMC against VI
#
# *Run time: about 1.3 minutes on an idle 2-core CPU (measured: 78 s; `PPL_VAE_SMOKE=1`: seconds).*
#
# A VAE never computes the posterior p(z | x). Its encoder outputs a Gaussian
# q(z | x) = N(mu(x), diag sigma(x)^2) and training only asks that Gaussian to
# make the ELBO large. How close does it get to the real thing? For a model
# with a 2-dimensional latent space we can answer that without guessing:
# Markov chain Monte Carlo (here NUTS, the No-U-Turn Sampler) draws samples
# from the exact posterior of a trained model, and we can lay the encoder's
# Gaussian over those samples.
#
# This tutorial
#
# 1. trains a VAE with a 2-D latent code on real MNIST digits;
# 2. samples p(z | x) for 12 test digits with NUTS and checks that the chains
#    converged (R-hat, effective sample size);
# 3. compares two variational answers with those samples: the encoder and
#    q*, the best Gaussian for each digit on its own;
# 4. splits the encoder's shortfall into the *approximation gap* and the
#    *amortization gap* of Cremer, Li and Duvenaud (2018).

# %% tags=["hide-input"]
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
from ppl_vae.evaluation import CompareConfig, check_convergence, compare_posteriors
from ppl_vae.evaluation.diagnostics import plot_pair, plot_trace
from ppl_vae.evaluation.plots import plot_posterior_comparison
from ppl_vae.inference import NUTSConfig, elbo, iwae, posterior_moments, sample_posterior

SMOKE = os.environ.get("PPL_VAE_SMOKE") == "1"
OUT = Path(__file__).resolve().parent / ("outputs/smoke" if SMOKE else "outputs") / "04_mcmc_vs_vi"
OUT.mkdir(parents=True, exist_ok=True)
device = resolve_device("auto")
pyro.set_rng_seed(0)

# %% [markdown]
# ## A VAE with a 2-D latent code
#
# Two latent dimensions are few for MNIST (the model's log-likelihood is
# much worse than with 20 or 50), but they are what makes this tutorial
# possible: NUTS is cheap in two dimensions, and every posterior can be
# drawn on paper as a cloud of points in the plane. Training uses dynamic
# binarization (a fresh 0/1 draw of every image each epoch), so every
# number below is a log-probability of binary images, in nats.

# %%
data = load_dataset("digits" if SMOKE else "mnist5k").to(device)
height, width = data.image_shape
vae = VAE(data.data_dim, latent_dim=2, hidden_dims=(400,)).to(device)
config = SVIConfig(epochs=2 if SMOKE else 100, binarize="dynamic", seed=0)
result = train(vae, data.train_x, config, test_x=data.test_x)
print(f"trained {config.epochs} epochs in {result.history[-1]['wall_time']:.1f} s; "
      f"test ELBO {result.final_test_elbo:.1f} nats per image")

# %% [markdown]
# ## Which digits to look at
#
# NUTS is exact but slow, so we run it on 12 test digits. Eight are simply
# the first eight of the test set: typical digits. The other four are picked
# because the encoder handles them badly. That is cheap to find out: for
# every test digit, log p(x) − ELBO[encoder] = KL(q(z | x) || p(z | x)), and
# the IWAE bound with the encoder as proposal (K = 100) already sits much
# closer to log p(x) than the ELBO does, so IWAE − ELBO is a cheap lower
# estimate of how far the encoder's Gaussian is from the true posterior.
# Keep in mind that these four make the averages below larger than the
# average over the whole test set would be; we report the two groups
# separately too.
#
# The test digits are binarized once with `evaluation_data`, the same fixed
# copy that the test ELBO above was computed on.

# %%
test_x = evaluation_data(data.test_x, "dynamic", 0)
probe_samples = 10 if SMOKE else 100
with torch.no_grad():
    probe_gap = (iwae(vae, test_x, probe_samples).per_point
                 - elbo(vae, test_x, probe_samples).per_point).cpu()
num_typical, num_hard = (2, 1) if SMOKE else (8, 4)
typical = list(range(num_typical))
ranked = [int(i) for i in probe_gap.argsort(descending=True) if int(i) not in typical]
hard = ranked[:num_hard]
index = typical + hard
x = test_x[index]
for name, rows in (("typical", typical), ("hard", hard)):
    print(f"{name} test digits {rows}: IWAE(K={probe_samples}) - ELBO = "
          + ", ".join(f"{v:.2f}" for v in probe_gap[rows].tolist()) + " nats")
print(f"median over all {len(test_x)} test digits: {probe_gap.median():.2f} nats")

# %% [markdown]
# ## NUTS on p(z | x), with the decoder held fixed
#
# A trained VAE is a fixed generative model: prior p(z) = N(0, I) and decoder
# p(x | z) with its weights θ frozen. For that model Bayes' rule gives the
# posterior exactly, up to its normalizer:
#
# $$p(z \mid x) \propto p(z)\, p(x \mid z) = \exp\big(\log p(x, z)\big).$$
#
# "The decoder held fixed" means that we sample only z, for given weights,
# and never change the weights. (Treating θ as unknown too would be fully
# Bayesian deep learning, a different and far harder problem.) The encoder
# plays no role in this target: it only supplies starting points for the
# chains. So the NUTS draws are the ground truth that every variational q
# of *this* model is trying to match, and their quality is limited only by
# whether the chains have converged, which we can check.
#
# NUTS is Hamiltonian Monte Carlo that picks its own trajectory length: it
# follows the gradient of log p(x, z) and stops a trajectory when it starts
# to turn back. `sample_posterior` runs 4 chains, each started at a random,
# deliberately spread-out point around the encoder's mean, 500 warm-up steps
# to tune the step size, then 1,000 kept draws. Given the decoder the 12
# posteriors are independent, so each chain of each digit is its own NUTS
# chain, with its own step size, mass matrix and trajectory lengths; the
# default scheme (`"batched"`) advances all 48 of them together, one
# leapfrog step each per batched gradient of the decoder. That is the same
# algorithm as 48 separate Pyro NUTS runs at a fraction of the Python
# overhead (`benchmarks/nuts_schemes.py` measures how much).

# %%
nuts_config = (NUTSConfig(num_samples=60, warmup_steps=60, num_chains=2) if SMOKE
               else NUTSConfig(num_samples=1000, warmup_steps=500, num_chains=4))
nuts = sample_posterior(vae, x, nuts_config, point_index=index)
print(f"NUTS: {nuts_config.num_chains} chains x {nuts_config.num_samples} draws "
      f"(after {nuts_config.warmup_steps} warm-up steps) for {len(index)} digits "
      f"in {nuts.wall_time:.1f} s")
print(f"draws tensor (chain, draw, point, latent): {tuple(nuts.samples.shape)}")
stats = nuts.sample_stats
print(f"step size {stats['step_size'][:, 0, 0].cpu().numpy().round(3).tolist()} (per chain), "
      f"mean leapfrog steps per draw {stats['num_steps'].double().mean():.1f}, "
      f"mean acceptance {stats['acceptance_rate'].mean():.2f}, "
      f"divergent draws {int(stats['diverging'][:, :, 0].sum())}")

# %% [markdown]
# ## Did the chains converge?
#
# MCMC draws are only worth something if the chains have forgotten where they
# started and explored the whole posterior. Two numbers from ArviZ check that
# for every digit and latent coordinate:
#
# * **R-hat** compares the spread within each chain with the spread between
#   chains (the rank-normalized, split version of Vehtari et al., 2021). If
#   all chains sample the same distribution, R-hat is 1; a chain stuck in
#   another region pushes it up. We require R-hat ≤ 1.01.
# * **Effective sample size (ESS)**: successive draws of a chain are
#   correlated, so 4,000 draws carry the information of fewer independent
#   ones. *Bulk* ESS measures that for the centre of the distribution (means,
#   medians), *tail* ESS for its 5% and 95% quantiles. We require at least
#   100 per chain (400 here), enough for R-hat and the Monte Carlo errors to
#   be reliable themselves.
#
# A *divergence* is a trajectory whose energy blew up, a sign that the
# sampler missed a region of sharp curvature; there should be none. A point
# failing any check is flagged, and every number after this cell should then
# be read with suspicion.

# %%
idata = nuts.to_inference_data()
report = check_convergence(idata)
print(report.table())
if report.converged:
    print("NUTS converged on every digit: R-hat <= 1.01, bulk and tail ESS >= "
          f"{100 * nuts_config.num_chains}, no divergences")
else:
    print("WARNING: NUTS did NOT converge on every digit; the comparison below is not trustworthy "
          "for these points:")
    for reason in report.reasons:
        print(f"  {reason}")

# %% [markdown]
# What does a flagged point mean? Usually that the chains disagree about
# where the posterior is: R-hat well above 1 and a tiny bulk ESS are the
# signature of chains sitting in different places. For a VAE the common
# cause is a posterior with two (or more) separate modes, e.g. a scribble
# that the decoder can explain as two different digits, with a valley of low
# probability in between. NUTS follows gradients, so a chain rarely crosses
# such a valley, and running it longer helps little; more chains, one run
# per point, or tempering would. The cell below prints each chain's mean
# for the digit shown in the figures that follow (a flagged digit if there
# is one): for a multimodal posterior the chains' means differ by far more
# than the posterior's width.

# %%
flagged = [point for point, bad in zip(index, report.flagged) if bad]
showcase = flagged[0] if flagged else hard[0]
column = index.index(showcase)
chain_means = nuts.samples[:, :, column].mean(1).cpu()
chain_sds = nuts.samples[:, :, column].std(1).cpu()
print(f"digit {showcase} ({'flagged' if flagged else 'the hardest for the encoder'}):")
for chain, (m, sd) in enumerate(zip(chain_means, chain_sds)):
    print(f"  chain {chain}: mean z = ({m[0]:.2f}, {m[1]:.2f}), sd = ({sd[0]:.3f}, {sd[1]:.3f})")

# %% [markdown]
# The trace figure shows, for a digit that passed the checks and for the
# digit above, each chain's density of each latent
# coordinate (left; converged chains lie on top of each other) and the rank
# histograms (right): all draws of all chains are ranked together, and each
# chain's ranks should spread evenly, giving flat bars. A chain that sits
# higher or lower than the others shows up as a sloped histogram.

# %%
trace_path = OUT / "nuts_trace.png"
calm = next((point for point, bad in zip(index, report.flagged) if not bad), index[0])
plot_trace(idata, trace_path, points=list(dict.fromkeys([calm, showcase])), max_points=2)
print(f"wrote {trace_path}")

# %% [markdown]
# The pair plot shows one posterior in full: the joint density of (z[0], z[1])
# with its two marginals, for the same digit. A
# posterior that is curved, skewed or has two modes cannot be matched by any
# Gaussian, however well it is fitted.

# %%
mean, covariance = posterior_moments(nuts)
pair_path = OUT / "nuts_pair.png"
plot_pair(idata, pair_path, point=showcase)
sd = covariance[column].diagonal().sqrt()
print(f"digit {showcase}, all chains pooled: posterior mean ({mean[column, 0]:.2f}, "
      f"{mean[column, 1]:.2f}), sd ({sd[0]:.3f}, {sd[1]:.3f}), "
      f"correlation {covariance[column, 0, 1] / sd.prod():.2f}")
print(f"wrote {pair_path}")

# %% [markdown]
# ## Two variational posteriors against NUTS
#
# `compare_posteriors` fits, on the same 12 digits and with the same NUTS
# settings (it runs NUTS again; with the same seed it draws the same chains):
#
# * **encoder**: the amortized q(z | x), nothing to fit;
# * **q\* (local_gaussian)**: a free diagonal Gaussian per digit, started at
#   the encoder's output and optimized on that digit's ELBO until it stops
#   improving. It is the best a diagonal Gaussian can do for that digit.
#
# (Adding `"flow"` to `methods` also fits q* bent by spline flows, a family
# that can follow curved and multimodal posteriors; tutorial 7 does that and
# compares the flow with NUTS.)
#
# For each it reports the ELBO (1,000 samples per digit), the IWAE bound
# (2,000 importance samples), and three distances from the NUTS draws: the
# error of the posterior mean in posterior standard deviations, the ratio of
# standard deviations (below 1: too narrow), and the energy distance between
# the two samples (0 when they come from the same distribution). The
# estimate log p̂(x) used below is the IWAE bound of the method whose
# importance weights vary least.

# %%
compare_config = CompareConfig(
    elbo_samples=50 if SMOKE else 1000,
    iwae_samples=100 if SMOKE else 2000,
    nuts=nuts_config,
    methods=("encoder", "local_gaussian"),
    fit_max_steps=100 if SMOKE else 3000,
)
comparison = compare_posteriors(vae, x, compare_config, point_index=index)
print(comparison.table())
print(f"its NUTS draws equal the ones above: {torch.equal(comparison.nuts.samples, nuts.samples)}")

comparison_path = OUT / "posterior_comparison.png"
plot_posterior_comparison(comparison, vae, x, (height, width), comparison_path,
                          num_points=len(index))
print(f"wrote {comparison_path}")

# %% [markdown]
# In the figure each panel is one digit (its image in the corner). Grey dots
# are NUTS draws of p(z | x); the red ellipses (1 and 2 standard deviations)
# are the encoder's Gaussian, the blue ones q*. Each panel has its own axis
# range, so compare shapes and positions within a panel, not across them.
# Where red and blue coincide the encoder is as good as a Gaussian can be;
# where blue fits the grey cloud but red does not, the encoder is at fault,
# not the Gaussian family. Typical for VI: q* is often somewhat
# narrower than the cloud, because the ELBO punishes putting mass where the
# posterior has none far more than missing some of it. For a digit whose
# posterior has two modes, q* picks one of them and ignores the other: no
# single Gaussian can do better under the ELBO.

# %% [markdown]
# ## The gap decomposition
#
# For every digit, the encoder's ELBO is below log p(x), and the shortfall
# splits into two parts (Cremer et al., 2018):
#
# $$\log p(x) - \mathrm{ELBO}[\text{encoder}]
#   = \underbrace{\log p(x) - \mathrm{ELBO}[q^*]}_{\text{approximation gap}}
#   + \underbrace{\mathrm{ELBO}[q^*] - \mathrm{ELBO}[\text{encoder}]}_{\text{amortization gap}}$$
#
# * The **approximation gap** is what even the best Gaussian loses: the true
#   posterior is not a diagonal Gaussian. Only a richer family (a flow, a
#   mixture) can close it.
# * The **amortization gap** is the price of sharing one encoder network
#   among all digits: instead of optimizing q for this digit, the encoder
#   predicts it from x in one forward pass, and for some digits the
#   prediction is off. A bigger or better-trained encoder, or a few steps of
#   per-digit refinement, closes it.
#
# log p(x) itself is unknown; we use log p̂(x), the IWAE bound with 2,000
# samples: a lower bound, usually very close to log p(x) in two dimensions.
# The gaps use no NUTS draws at all, only ELBO and IWAE estimates. NUTS
# still matters for them: a digit that NUTS flags often has a posterior with
# several modes, and an IWAE estimate whose proposal covers only one of them
# can miss the others' mass, making log p̂(x), and with it the approximation
# gap, too small. `compare_posteriors` therefore picks log p̂(x) digit by
# digit: among the proposals whose importance weights pass the Pareto k̂
# check (tutorial 2), a defensive mixture with bounded weights included, the
# estimate with the smallest error, unless another proposal's estimate lies
# far above it (the sign of a missed mode); digits left without one are
# flagged.
#
# Each gap below comes with two numbers kept apart: the Monte Carlo error of
# its average (the noise of the ELBO and IWAE estimates themselves) and the
# spread across digits (how much the gap varies from digit to digit, not an
# error bar).
#
# For scale: Cremer et al. report an approximation gap of about 1.4 nats and
# an amortization gap of about 1.3 nats per image for a VAE with a 50-D
# latent space on binarized MNIST. A 2-D model is a different regime: each
# image pins its code down to a small region of the plane, where the
# posterior is usually close to a Gaussian, while the encoder has to map
# 784 pixels onto a crowded plane in one pass, so small errors of its
# output move q far away in units of the narrow posterior. The numbers here
# are therefore not comparable with theirs, and there is no reason for the
# two gaps to be of similar size.

# %%
per_point = comparison.per_point
log_px = np.array(per_point["log_px"])
elbo_q_star = np.array(per_point["local_gaussian_elbo"])
elbo_encoder = np.array(per_point["encoder_elbo"])
approximation = log_px - elbo_q_star
amortization = elbo_q_star - elbo_encoder
print(f"log p(x) per digit from the trustworthy IWAE bound with the smallest error, from: "
      f"{comparison.log_px_method}; flagged digits: {comparison.flagged_points or 'none'}")
for name, gap in comparison.gaps.items():
    print(f"{name} gap over all {len(index)} digits: {gap['mean']:.3f} nats "
          f"(Monte Carlo error {gap['mc_stderr']:.3f}; spread across digits: sd {gap['spread']:.3f})")
for name, rows in (("typical", slice(0, num_typical)), ("hard", slice(num_typical, None))):
    print(f"{name:>8} digits: approximation {approximation[rows].mean():.3f}, "
          f"amortization {amortization[rows].mean():.3f} nats (mean)")
print(f"{'digit':>6}{'log p(x)':>10}{'ELBO q*':>10}{'ELBO enc':>10}{'approx':>9}{'amort':>9}")
for k, point in enumerate(index):
    print(f"{point:>6}{log_px[k]:>10.2f}{elbo_q_star[k]:>10.2f}{elbo_encoder[k]:>10.2f}"
          f"{approximation[k]:>9.3f}{amortization[k]:>9.3f}")
if "flow_elbo" in per_point:
    flow_gain = np.array(per_point["flow_elbo"]) - elbo_q_star
    print(f"the flow's ELBO minus q*'s, mean over the digits: {flow_gain.mean():.3f} nats "
          f"(the approximation gap it could close: {approximation.mean():.3f})")
if not comparison.converged:
    print("WARNING: NUTS did not converge on every digit (see above); treat these gaps with care")

# %% [markdown]
# The bar chart shows both gaps for each digit. In the top panel they are
# stacked: blue is the approximation gap, orange the amortization gap on top
# of it, and the whole bar is the encoder's total shortfall
# log p̂(x) − ELBO[encoder]. When one gap is much smaller than the other it
# disappears in that panel, so the bottom panel shows the approximation gap
# alone on its own scale. Left of the dotted line are the typical digits,
# right of it the ones picked as hard for the encoder. Tiny negative values
# are Monte Carlo noise around zero.

# %%
positions = np.arange(len(index))
figure, (top, bottom) = plt.subplots(2, 1, figsize=(max(7.0, 0.75 * len(index) + 3), 6.6),
                                     sharex=True, height_ratios=(2, 1), layout="constrained")
top.bar(positions, approximation, color="tab:blue", label="approximation gap\nlog p(x) − ELBO[q*]")
top.bar(positions, amortization, bottom=np.maximum(approximation, 0), color="tab:orange",
        label="amortization gap\nELBO[q*] − ELBO[encoder]")
top.set_ylabel("gap (nats)")
top.set_title("The encoder's gap to log p(x), split per digit (Cremer et al., 2018)")
top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
bottom.bar(positions, approximation, color="tab:blue")
bottom.set_ylabel("approximation\ngap (nats)")
bottom.set_title("the approximation gap alone, on its own scale", fontsize="medium")
for axis in (top, bottom):
    axis.axhline(0, color="black", linewidth=0.8)
    axis.axvline(num_typical - 0.5, color="0.5", linestyle="dotted")
    low, high = axis.get_ylim()
    axis.set_ylim(low, high + 0.15 * (high - low))
for position, text, align in ((num_typical - 0.6, "typical", "right"),
                              (num_typical - 0.4, "hard for the encoder", "left")):
    top.text(position, 0.97, text, ha=align, va="top", color="0.3",
             transform=top.get_xaxis_transform())
bottom.set_xticks(positions, [str(p) for p in index])
bottom.set_xlim(-0.6, len(index) - 0.4)
bottom.set_xlabel("test digit (index in the test set; image below)", labelpad=52)
for k in range(len(index)):
    thumbnail = bottom.inset_axes([k - 0.4, -0.55, 0.8, 0.36], transform=bottom.get_xaxis_transform())
    thumbnail.imshow(x[k].cpu().reshape(height, width), cmap="gray_r", vmin=0, vmax=1)
    thumbnail.set_axis_off()
gaps_path = OUT / "gaps_per_digit.png"
figure.savefig(gaps_path, dpi=110)
print(f"wrote {gaps_path}")
