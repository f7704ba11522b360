# %% [markdown]
# # 5. Simpler models, exact inference
#
# *Run time: about 30 seconds on an idle 2-core CPU (measured: 29 s; `PPL_VAE_SMOKE=1`: seconds).*
#
# Tutorials 3 and 4 met the intractable posterior of a VAE with two answers:
# approximate it (variational inference) or sample it (MCMC). There is a
# third answer, older than both: choose a model in which Bayes' rule can be
# carried out exactly. This tutorial looks at the two classic ones, on the
# same MNIST digits as before.
#
# * **Probabilistic PCA** (Tipping and Bishop, 1999). The decoder is linear
#   and the noise Gaussian:
#
#   $$z \sim \mathcal{N}(0, I_L), \qquad x \mid z \sim \mathcal{N}(W z + \mu, \sigma^2 I_D)$$
#
#   Everything is Gaussian, so the evidence is a Gaussian too,
#   $p(x) = \mathcal{N}(x; \mu, W W^\top + \sigma^2 I)$, and so is the posterior,
#   $p(z \mid x) = \mathcal{N}(M^{-1} W^\top (x - \mu), \sigma^2 M^{-1})$ with $M = W^\top W + \sigma^2 I$.
#   Even the maximum-likelihood W, μ, σ have a closed form, read off the
#   eigenvectors of the data's covariance.
#
# * **A Gaussian mixture**. The latent is a single label k out of K:
#
#   $$z \sim \mathrm{Categorical}(\pi), \qquad x \mid z = k \sim \mathcal{N}(m_k, \operatorname{diag} s_k^2)$$
#
#   The "integral" over z is a sum of K terms, so p(x) and the posterior
#   p(z = k | x) (the *responsibilities*) are exact. In Pyro this is
#   enumeration: the site `"z"` is marked `enumerate="parallel"` and
#   `TraceEnum_ELBO` sums it out instead of sampling it.
#
# For each model we fit the parameters in closed form (or by an exact
# full-data method) and again by stochastic variational inference (SVI), the
# way a VAE is trained, and check what SVI gets right. The price of
# exactness comes at the end: both models are far less flexible than a VAE.

# %% tags=["hide-input"]
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pyro
import pyro.distributions as dist
import pyro.optim
import torch
from pyro.infer import SVI, TraceEnum_ELBO
from torch.distributions import kl_divergence

from ppl_vae import (
    GaussianMixture,
    LinearGaussian,
    SVIConfig,
    elbo,
    load_dataset,
    resolve_device,
    train,
)
from ppl_vae.evaluation.plots import image_grid

SMOKE = os.environ.get("PPL_VAE_SMOKE") == "1"
OUT = Path(__file__).resolve().parent / ("outputs/smoke" if SMOKE else "outputs") / "05_simpler_models"
OUT.mkdir(parents=True, exist_ok=True)
device = resolve_device("auto")
pyro.set_rng_seed(0)

# %% [markdown]
# ## The data: grey levels, not black and white
#
# Both models here have a Gaussian likelihood, so they describe the grey
# values of the pixels (in [0, 1]) directly; no binarization. A warning about
# the numbers that follow: log p(x) is now the log of a probability *density*
# over 784 continuous values. With a noise scale σ of about 0.16 every pixel
# can contribute a positive amount, so log p(x) is a large *positive* number
# of nats per image. It cannot be compared with the negative Bernoulli
# log-likelihoods of binary images in tutorials 2–4; only numbers computed on
# the same grey-level data can be compared with each other.

# %%
data = load_dataset("digits" if SMOKE else "mnist5k").to(device)
height, width = data.image_shape
train_x, test_x = data.train_x, data.test_x
latent_dim = 20
print(f"{len(train_x)} training and {len(test_x)} test images of {height}x{width} grey "
      f"pixels; latent_dim = {latent_dim}")


def row_of_images(axis: plt.Axes, images: torch.Tensor, title: str, **imshow) -> None:
    """One row of images, without ticks."""
    options = {"cmap": "gray_r", "vmin": 0, "vmax": 1} | imshow
    axis.imshow(image_grid(images.detach().cpu(), (height, width), num_columns=len(images)),
                **options)
    axis.set_title(title, fontsize=10)
    axis.set_axis_off()


# %% [markdown]
# ## Part 1: probabilistic PCA
#
# ### The closed-form maximum-likelihood fit
#
# `LinearGaussian.fit_maximum_likelihood` computes the mean image μ and the
# covariance of the training images, takes its eigenvalues
# λ₁ ≥ λ₂ ≥ … ≥ λ_D and eigenvectors u_i, and sets
#
# $$\sigma^2 = \frac{1}{D - L} \sum_{i=L+1}^{D} \lambda_i, \qquad
#   W = [u_1 \dots u_L]\, \operatorname{diag}\big(\lambda_i - \sigma^2\big)^{1/2}$$
#
# No iterations, no learning rate: one eigendecomposition of a 784 × 784
# matrix. The fit also sets the model's guide q(z | x) to the exact
# posterior, so for this model the ELBO is exactly log p(x): the gap
# KL(q || p(z | x)) is zero. Both are printed below, the ELBO estimated from
# 100 samples of z per test image.

# %%
ml = LinearGaussian.fit_maximum_likelihood(train_x, latent_dim, name="ppca_ml")
with torch.no_grad():
    ml_test_log_px = ml.log_marginal(test_x)
    ml_train_log_px = ml.log_marginal(train_x)
    total_variance = train_x.var(0, unbiased=False).sum()
    kept_variance = ml.decoder.weight.pow(2).sum() + latent_dim * ml.noise_scale.pow(2)
ml_elbo = elbo(ml, test_x, num_samples=100)
print(f"noise scale sigma = {ml.noise_scale.item():.4f}; the {latent_dim} principal directions "
      f"hold {100 * (kept_variance / total_variance).item():.1f}% of the pixel variance")
print(f"closed-form fit: exact log p(x) = {ml_train_log_px.mean().item():.2f} (train), "
      f"{ml_test_log_px.mean().item():.2f} (test) nats per image")
print(f"ELBO of its guide on the test set (K = 100): {ml_elbo.mean:.4f} "
      f"(± {ml_elbo.mean_stderr:.4f}); exact log p(x) - ELBO = "
      f"{ml_test_log_px.mean().item() - ml_elbo.mean:.4f} (zero up to float32 round-off)")

# %% [markdown]
# ### The same model trained by SVI
#
# Now forget the closed form and treat pPCA like a VAE: start from random
# weights and maximize the ELBO by stochastic gradient ascent with `train`,
# on minibatches of 128 images. The guide of `LinearGaussian` is an
# amortized encoder, q(z | x) = N(A x + b, S Sᵀ): a linear map for the mean
# and one full covariance shared by all images. The exact posterior has
# exactly this form (its mean is linear in x, its covariance does not depend
# on x), so the family *contains* the right answer; whether SVI *finds* it is
# what we check.
#
# Because log p(x) is exact for this model, we do not need bounds or
# importance sampling to judge the result: we can compare the SVI model's
# exact test log p(x) with the closed form's, and split its ELBO into
# log p(x) and the KL to its own exact posterior, both computed in closed
# form.

# %%
svi_config = SVIConfig(epochs=2 if SMOKE else 150, learning_rate=3e-3, seed=0)
ppca_svi = LinearGaussian(data.data_dim, latent_dim, name="ppca_svi").to(device)
ppca_result = train(ppca_svi, train_x, svi_config, test_x=test_x)
ppca_history = ppca_result.history
print(f"SVI: {svi_config.epochs} epochs in {ppca_history[-1]['wall_time']:.1f} s; last epoch's "
      f"one-sample test ELBO {ppca_history[-1]['test_elbo']:.2f}")

with torch.no_grad():
    svi_test_log_px = ppca_svi.log_marginal(test_x)
    loc, scale_tril = ppca_svi.encoder(test_x)
    guide_q = dist.MultivariateNormal(loc, scale_tril=scale_tril)
    exact_posterior = ppca_svi.posterior(test_x)
    kl_gap = kl_divergence(guide_q, exact_posterior)
svi_elbo = elbo(ppca_svi, test_x, num_samples=100)
print(f"SVI fit: exact log p(x) = {svi_test_log_px.mean().item():.2f} nats per test image "
      f"(closed form: {ml_test_log_px.mean().item():.2f}); sigma = "
      f"{ppca_svi.noise_scale.item():.4f}")
print(f"ELBO of the SVI encoder (K = 100): {svi_elbo.mean:.2f} (± {svi_elbo.mean_stderr:.2f})")
print(f"exact log p(x) - exact KL(q || p(z | x)) = "
      f"{(svi_test_log_px - kl_gap).mean().item():.2f}; the gap KL: mean "
      f"{kl_gap.mean().item():.2f}, smallest {kl_gap.min().item():.2f}, largest "
      f"{kl_gap.max().item():.2f} nats per image")

# %% [markdown]
# Three things to see in these numbers:
#
# 1. The SVI model's exact log p(x) ends up close to the closed form's, but
#    a little below it: noisy minibatch gradients with a fixed learning rate
#    stop short of the maximum. The closed form is the ceiling for *any*
#    pPCA with 20 latent dimensions on these training images.
# 2. The Monte Carlo ELBO agrees with log p(x) − KL(q || p(z | x)), computed
#    without any sampling: the identity log p(x) = ELBO + KL from tutorial 3,
#    checked to within the Monte Carlo error.
# 3. The KL gap is small but not zero, although the guide family contains
#    the exact posterior. The encoder is still catching up with a decoder
#    that keeps moving. Setting the guide to the exact posterior of the
#    *SVI-trained* decoder closes the gap completely, which shows that the
#    remaining gap is an optimization shortfall, not a limitation of the
#    family:

# %%
trained_encoder = {name: value.clone() for name, value in ppca_svi.encoder.state_dict().items()}
ppca_svi.set_guide_to_posterior()
with torch.no_grad():
    loc, scale_tril = ppca_svi.encoder(test_x)
    closed_gap = kl_divergence(dist.MultivariateNormal(loc, scale_tril=scale_tril),
                               ppca_svi.posterior(test_x))
print(f"after set_guide_to_posterior: KL(q || p(z | x)) averages {closed_gap.mean().item():.1e} "
      f"nats per image (zero up to float32 round-off)")
ppca_svi.encoder.load_state_dict(trained_encoder)     # back to the trained encoder

# %% [markdown]
# ### Training curve
#
# The figure follows the SVI run: the one-sample test ELBO after each epoch
# climbs quickly, then flattens a few nats below the dashed line, the exact
# test log p(x) of the closed-form fit. (On the training images no pPCA with
# 20 latent dimensions can beat the closed form; on the test images it is
# simply the natural target.) The red dot, the SVI model's own exact
# log p(x), sits between the two: the distance from the curve to the dot
# is the KL gap of the encoder, the distance from the dot to the line is
# what the decoder's training left on the table.

# %%
epochs = [record["epoch"] for record in ppca_history]
figure, axis = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
axis.plot(epochs, [r["test_elbo"] for r in ppca_history], color="C0",
          label="SVI: test ELBO (one z per image)")
axis.axhline(ml_test_log_px.mean().item(), color="k", ls="--",
             label="closed form: exact test log p(x)")
axis.plot(epochs[-1], svi_test_log_px.mean().item(), "o", color="C3",
          label="SVI, end: exact test log p(x)")
axis.set_ylim(ml_test_log_px.mean().item() - 120, ml_test_log_px.mean().item() + 20)
axis.set_xlabel("epoch")
axis.set_ylabel("nats per test image (grey-level density)")
axis.set_title("pPCA trained by SVI, against its closed-form maximum")
axis.legend(loc="lower right")
figure.savefig(OUT / "ppca_training.png", dpi=110)
print(f"wrote {OUT / 'ppca_training.png'}")

# %% [markdown]
# ### The encoder's q against the exact posterior
#
# For three test digits, the figure sets the trained encoder's q(z | x) (its
# mean and ±2 standard deviations per coordinate) beside the exact posterior
# p(z | x) of the same SVI-trained decoder, for all 20 latent coordinates.
# The posterior is narrow (a standard deviation of about 0.1 against a
# spread of the means of about 1), since 784 pixels pin 20 numbers down well.
# The encoder's standard deviations match the exact ones almost perfectly;
# its means are off by up to about one posterior standard deviation. Those
# offsets are the KL gap printed above.

# %%
shown = [0, 1, 2]
with torch.no_grad():
    q_loc, q_scale = ppca_svi.encode(test_x[shown])
    exact = ppca_svi.posterior(test_x[shown])
    p_loc, p_scale = exact.loc, exact.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
print(f"test digit {shown[0]}, first 5 coordinates:")
print("  exact posterior mean", p_loc[0, :5].cpu().numpy().round(3),
      " sd", p_scale[0, :5].cpu().numpy().round(3))
print("  encoder q mean      ", q_loc[0, :5].cpu().numpy().round(3),
      " sd", q_scale[0, :5].cpu().numpy().round(3))
print(f"largest |mean difference| over the three digits: "
      f"{(q_loc - p_loc).abs().max().item():.3f}; posterior sd from "
      f"{p_scale.min().item():.3f} to {p_scale.max().item():.3f}")

figure = plt.figure(figsize=(11, 7.5), layout="constrained")
grid = figure.add_gridspec(len(shown), 2, width_ratios=(1, 7))
coordinates = np.arange(latent_dim)
for row, index in enumerate(shown):
    picture = figure.add_subplot(grid[row, 0])
    picture.imshow(test_x[index].reshape(height, width).cpu(), cmap="gray_r", vmin=0, vmax=1)
    picture.set_title(f"test digit {index}", fontsize=10)
    picture.set_axis_off()
    axis = figure.add_subplot(grid[row, 1])
    axis.errorbar(coordinates - 0.15, p_loc[row].cpu(), yerr=2 * p_scale[row].cpu(), fmt="o",
                  ms=4, capsize=2, color="k", label="exact p(z | x): mean ± 2 sd")
    axis.errorbar(coordinates + 0.15, q_loc[row].cpu(), yerr=2 * q_scale[row].cpu(), fmt="x",
                  ms=5, capsize=2, color="C1", label="encoder q(z | x): mean ± 2 sd")
    axis.axhline(0, color="0.8", lw=0.8, zorder=0)
    axis.set_xticks(coordinates)
    axis.set_ylabel("z value")
    if row == len(shown) - 1:
        axis.set_xlabel("latent coordinate j of the SVI-trained model")
    if row == 0:
        axis.legend(loc="upper right", fontsize=8, ncols=2)
        top = max(p_loc.abs().max().item(), q_loc.abs().max().item()) + 0.6
axis_limits = (-top, top + 0.4)
for axis in figure.axes[1::2]:
    axis.set_ylim(*axis_limits)
figure.suptitle("pPCA trained by SVI: the amortized q(z | x) against the exact posterior")
figure.savefig(OUT / "ppca_posteriors.png", dpi=110)
print(f"wrote {OUT / 'ppca_posteriors.png'}")

# %% [markdown]
# ### What the linear model has learned
#
# The columns of W are the directions in image space along which the digits
# vary most. W itself is pinned down only up to a rotation (W R with any
# orthogonal R gives the same p(x), because only W Wᵀ enters it), so the SVI
# run cannot be expected to find the same W. What both fits must share is
# W Wᵀ, and with it its eigenvectors, the principal directions. We compare
# those: the closed form's columns are already orthogonal; for the SVI
# model we take the left singular vectors of its W. Red pixels are added
# and blue ones removed when a coordinate of z grows.

# %%
with torch.no_grad():
    ml_directions = ml.decoder.weight / ml.decoder.weight.norm(dim=0)
    svi_directions, svi_singular_values, _ = torch.linalg.svd(ppca_svi.decoder.weight,
                                                              full_matrices=False)
    signs = torch.sign((ml_directions * svi_directions).sum(0))
    svi_directions = svi_directions * signs
    overlap = torch.linalg.svdvals(ml_directions.T @ svi_directions).clamp(max=1)
    angles = torch.rad2deg(torch.arccos((ml_directions * svi_directions).sum(0).clamp(-1, 1)))
print(f"principal angles between the two {latent_dim}-dimensional subspaces: largest "
      f"{torch.rad2deg(torch.arccos(overlap.min())).item():.1f} degrees, median "
      f"{torch.rad2deg(torch.arccos(overlap.median())).item():.1f} degrees")
print("angle between the i-th principal directions of the two fits (degrees), i = 1..10:",
      angles[:10].cpu().numpy().round(1))

num_shown = 9
figure, axes = plt.subplots(2, 1, figsize=(10, 3.2), layout="constrained")
limit = ml_directions[:, :num_shown].abs().max().item()
row_of_images(axes[0], torch.cat([ml.decoder.loc[None] * limit, ml_directions[:, :num_shown].T]),
              "closed form: mean image μ (rescaled, in red), then principal directions 1 to 9",
              cmap="RdBu_r", vmin=-limit, vmax=limit)
row_of_images(axes[1], torch.cat([ppca_svi.decoder.loc[None] * limit,
                                  svi_directions[:, :num_shown].T]),
              "SVI: mean image μ, then the left singular vectors of its W",
              cmap="RdBu_r", vmin=-limit, vmax=limit)
figure.savefig(OUT / "ppca_directions.png", dpi=110)
print(f"wrote {OUT / 'ppca_directions.png'}")

# %% [markdown]
# The two rows look alike: the first direction is essentially "how much of
# a 0 is there", the next ones add or move strokes. Direction by direction
# the two fits differ by several degrees, more than the subspaces do as a
# whole: directions whose eigenvalues lie close together are poorly
# determined individually and mix among themselves, while the
# 20-dimensional subspace they span is pinned down to within a few degrees.
#
# ### Reconstructions and samples
#
# A reconstruction is the decoded posterior mean, W E[z | x] + μ: the
# projection of the digit onto the 20-dimensional principal subspace. It
# keeps the digit's identity but smears its strokes. The last two rows ask
# the model to *generate*: z from the prior, decoded. The mean W z + μ is a
# ghostly superposition of digits, because a linear map of a Gaussian cannot
# produce a clean 3 or 7; and an actual draw of x adds independent noise of
# standard deviation σ to every pixel, background included. A model that
# is a single Gaussian over images has no way to say "a stroke here or no
# stroke at all".

# %%
labels = data.test_y
one_per_class = torch.stack([torch.nonzero(labels == digit).flatten()[0] for digit in range(10)])
pyro.set_rng_seed(1)
with torch.no_grad():
    originals = test_x[one_per_class]
    ml_reconstructions = ml.reconstruct(originals)
    svi_reconstructions = ppca_svi.reconstruct(originals)
    sample_means = ml.sample(10, mean=True)
    sample_draws = ml.sample(10, mean=False)
print("test digits shown (labels):", labels[one_per_class].tolist())
print(f"mean squared pixel error of the reconstructions: closed form "
      f"{(ml_reconstructions - originals).pow(2).mean().item():.4f}, SVI "
      f"{(svi_reconstructions - originals).pow(2).mean().item():.4f}; sigma^2 = "
      f"{ml.noise_scale.pow(2).item():.4f}")

figure, axes = plt.subplots(5, 1, figsize=(8, 8), layout="constrained")
rows = [(originals, "test digits"),
        (ml_reconstructions, "closed form: reconstruction W E[z | x] + μ"),
        (svi_reconstructions, "SVI: reconstruction from the encoder's mean"),
        (sample_means, "closed form: generated, mean W z + μ with z ~ N(0, I)"),
        (sample_draws, "closed form: generated, a draw x ~ N(W z + μ, σ² I)")]
for axis, (images, title) in zip(axes, rows):
    row_of_images(axis, images, title)
figure.suptitle(f"Probabilistic PCA with {latent_dim} latent dimensions")
figure.savefig(OUT / "ppca_reconstructions.png", dpi=110)
print(f"wrote {OUT / 'ppca_reconstructions.png'}")

# %% [markdown]
# ## Part 2: a Gaussian mixture, with the component summed out
#
# ### Why not on the raw pixels?
#
# A mixture of Gaussians with a diagonal covariance per component cannot be
# fitted to MNIST pixels by maximum likelihood. Many pixels near the border
# are exactly 0 in every training image (counted below), and within a
# cluster many more are; the likelihood of such a pixel grows without bound
# as its standard deviation shrinks to 0, so the "best" fit is degenerate
# (and `GaussianMixture.fit` fails at its first step). pPCA escapes this
# because it has a single noise level σ shared by all pixels.
#
# So we cluster the digits where the linear model has put them: each image
# is replaced by its 20 numbers E[z | x] under the closed-form pPCA of
# Part 1, and the mixture is a model of these *codes*. Its component means
# can still be drawn as images by decoding them, W m_k + μ.

# %%
constant = int((train_x.std(0) == 0).sum())
print(f"{constant} of {data.data_dim} pixels have the same value in every training image")
with torch.no_grad():
    train_codes = ml.posterior(train_x).loc
    test_codes = ml.posterior(test_x).loc
print(f"codes: {tuple(train_codes.shape)} (train), {tuple(test_codes.shape)} (test); standard "
      f"deviation per coordinate from {train_codes.std(0).min().item():.3f} to "
      f"{train_codes.std(0).max().item():.3f}")

# %% [markdown]
# ### Three ways to fit the same mixture
#
# With K = 10 components the model is
# p(c) = Σ_k π_k N(c; m_k, diag s_k²) for a code c. Its exact log-likelihood
# is a log-sum-exp over k, and Pyro computes it for us: `TraceEnum_ELBO`
# of the model with an *empty* guide is exactly −log p(c), because the only
# latent site is summed out rather than sampled. That gives three fits, all
# started from the same k-means++ seeding:
#
# * `.fit`: Adam on the exact log-likelihood of the whole training set at
#   every step (one step = one pass over the data);
# * SVI: the same loss on minibatches of 128 codes (Pyro's `SVI` with
#   `TraceEnum_ELBO`, `num_data` scaling each batch up to the full set),
#   exactly how a VAE is trained, except that no part of the ELBO is
#   sampled;
# * expectation-maximization (EM), which needs the *exact posterior*: the
#   E-step computes the responsibilities r_ik = p(z_i = k | c_i) with
#   `model.posterior` (enumeration again), the M-step sets π, m_k and s_k
#   to the responsibility-weighted frequencies, means and variances. Each
#   iteration cannot lower the log-likelihood.
#
# The first and last are the "closed-form" side: full-data, deterministic,
# converged. For every fit we follow the exact training log-likelihood per
# code against passes over the training data.

# %%
num_components = 10
fit_steps, svi_epochs, em_iterations = (5, 1, 3) if SMOKE else (200, 30, 60)

by_fit = GaussianMixture(latent_dim, num_components, name="mixture_fit").to(device)
fit_history = [-loss for loss in by_fit.fit(train_codes, num_steps=fit_steps,
                                           learning_rate=0.05, seed=0)]
with torch.no_grad():
    fit_history.append(by_fit.log_marginal(train_codes).mean().item())

pyro.set_rng_seed(0)
by_svi = GaussianMixture(latent_dim, num_components, name="mixture_svi").to(device)
by_svi.init_from_data(train_codes)                      # the same k-means++ start as .fit
by_svi.sync_param_store()
svi = SVI(by_svi.model, by_svi.guide, pyro.optim.Adam({"lr": 0.01}),
          TraceEnum_ELBO(max_plate_nesting=1))
with torch.no_grad():
    svi_history = [by_svi.log_marginal(train_codes).mean().item()]
for epoch in range(svi_epochs):
    for batch in torch.randperm(len(train_codes), device=device).split(128):
        svi.step(train_codes[batch], num_data=len(train_codes))
    with torch.no_grad():
        svi_history.append(by_svi.log_marginal(train_codes).mean().item())

pyro.set_rng_seed(0)
by_em = GaussianMixture(latent_dim, num_components, name="mixture_em").to(device)
by_em.init_from_data(train_codes)
em_history = []
with torch.no_grad():
    for iteration in range(em_iterations):
        em_history.append(by_em.log_marginal(train_codes).mean().item())
        responsibilities = by_em.posterior(train_codes).probs            # E-step, (N, K)
        counts = responsibilities.sum(0)                                  # M-step
        means = responsibilities.T @ train_codes / counts[:, None]
        variances = responsibilities.T @ train_codes.pow(2) / counts[:, None] - means.pow(2)
        by_em.components.logits.copy_(counts.log())
        by_em.components.locs.copy_(means)
        by_em.components.log_scales.copy_(0.5 * variances.clamp_min(1e-6).log())
    em_history.append(by_em.log_marginal(train_codes).mean().item())


def purity(assignment: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of points whose component's most common digit label is their own."""
    table = torch.zeros(num_components, 10, device=labels.device)
    table.index_put_((assignment, labels), torch.ones_like(labels, dtype=table.dtype),
                     accumulate=True)
    return (table.max(1).values.sum() / len(labels)).item()


fits = {"fit (Adam, full data)": by_fit, "SVI (minibatch TraceEnum)": by_svi, "EM": by_em}
histories = dict(zip(fits, (fit_history, svi_history, em_history)))
print(f"{'mixture, K = ' + str(num_components):<28}{'passes':>7}{'train log p(c)':>16}"
      f"{'test log p(c)':>15}{'purity train':>14}{'purity test':>13}")
for name, model in fits.items():
    with torch.no_grad():
        test_log_pc = model.log_marginal(test_codes).mean().item()
    print(f"{name:<28}{len(histories[name]) - 1:>7}{histories[name][-1]:>16.3f}"
          f"{test_log_pc:>15.3f}{purity(model.assign(train_codes), data.train_y):>14.3f}"
          f"{purity(model.assign(test_codes), data.test_y):>13.3f}")
with torch.no_grad():
    standard_normal = dist.Normal(0.0, 1.0).log_prob(test_codes).sum(-1).mean().item()
print(f"for scale: the pPCA prior N(0, I) gives the test codes {standard_normal:.3f} nats each")

# %%
figure, axis = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
for (name, history), color in zip(histories.items(), ("C0", "C1", "C2")):
    axis.plot(range(len(history)), history, color=color, label=name)
axis.set_xscale("symlog", linthresh=10)
low = min(min(h[min(len(h) - 1, 3):]) for h in histories.values())
high = max(max(h) for h in histories.values())
axis.set_ylim(low - 0.2 * (high - low) - 0.05, high + 0.1 * (high - low) + 0.05)
axis.set_xlabel("passes over the training codes (symmetric log scale)")
axis.set_ylabel("exact train log p(c) per code (nats)")
axis.set_title(f"Fitting a {num_components}-component mixture: exact log-likelihood")
axis.legend(loc="lower right")
figure.savefig(OUT / "mixture_training.png", dpi=110)
print(f"wrote {OUT / 'mixture_training.png'}")

# %% [markdown]
# All three end within a hundredth of a nat of each other on the training
# codes, about two nats per code above the single Gaussian N(0, I). They
# get there at very different speeds. Full-data Adam takes one small step
# per pass and needs well over a hundred passes. Minibatch SVI takes 36
# steps per pass and is there in about 20. EM has no learning rate at all:
# every iteration jumps to the best parameters for the current exact
# responsibilities, and it too is there within a few dozen passes (its
# plateau and sudden rise is typical: a component slowly "decides" to move
# to another cluster). The three end in different local maxima (a mixture's
# likelihood has many), with different components, which shows in the
# purity: the share of digits whose component is dominated by their own
# class. Without ever seeing a label, the components capture roughly half
# of the class structure; a 10-component mixture is not a digit classifier,
# because digit classes are not Gaussian blobs in the linear code.
#
# ### The components as images
#
# Decoding each component's mean, W m_k + μ, shows what each cluster
# stands for. Components are sorted by their most common digit label; the
# caption gives that label, its share of the component's test digits, and
# the mixing weight π_k. Several components are "averages" of two or three
# similar digits, and some labels own no component at all.

# %%
def component_summary(model: GaussianMixture) -> tuple[torch.Tensor, list[str]]:
    """Order of the components by majority test label, and a caption per component."""
    assignment = model.assign(test_codes)
    weights = model.components.logits.softmax(-1)
    captions, keys = [], []
    for k in range(num_components):
        members = data.test_y[assignment == k]
        if len(members):
            counts = torch.bincount(members, minlength=10)
            label, share = int(counts.argmax()), counts.max().item() / len(members)
            captions.append(f"{label} ({100 * share:.0f}%)\nπ={weights[k].item():.2f}")
        else:
            label = 10
            captions.append(f"none\nπ={weights[k].item():.2f}")
        keys.append(label - weights[k].item())
    order = torch.tensor(keys).argsort()
    return order, [captions[k] for k in order]


figure, axes = plt.subplots(len(fits), 1, figsize=(10, 1.9 * len(fits)), layout="constrained")
for axis, (name, model) in zip(axes, fits.items()):
    order, captions = component_summary(model)
    with torch.no_grad():
        pictures = ml.decoder(model.components.locs[order.to(device)])
    row_of_images(axis, pictures, f"{name}: decoded component means W m_k + μ")
    axis.set_axis_on()
    axis.set_xticks([(width + 2) * i + width / 2 for i in range(num_components)], captions,
                    fontsize=8)
    axis.set_yticks([])
    axis.tick_params(length=0)
    for spine in axis.spines.values():
        spine.set_visible(False)
    print(f"{name}: components by majority label: " + "; ".join(c.replace("\n", " ")
                                                               for c in captions))
figure.savefig(OUT / "mixture_means.png", dpi=110)
print(f"wrote {OUT / 'mixture_means.png'}")

# %% [markdown]
# ### Exact responsibilities
#
# For a test code c, `posterior(c)` returns the exact categorical
# p(z = k | c) = π_k N(c; m_k, s_k²) / Σ_j π_j N(c; m_j, s_j²), computed
# by Pyro's enumeration (`TraceEnum_ELBO.compute_marginals`), not sampled
# and not approximated. From here on we use the EM fit. In 20 dimensions the
# Gaussian densities of the different components differ by orders of
# magnitude, so many digits are assigned with near certainty (the share is
# printed below), though confident is not the same as right: a component
# is a blob in code space, and a 3 that happens to lie in the 0 blob is
# put there without hesitation. The digits that tell us most are those
# whose responsibilities are split: to this model they lie between
# clusters. The figure shows the first four test digits
# and the six with the most uncertain assignment (largest entropy of
# p(z | c)); bars are labelled with each component's majority digit.

# %%
best_name, best = "EM", by_em
with torch.no_grad():
    test_responsibilities = best.posterior(test_codes).probs
entropy = -(test_responsibilities * test_responsibilities.clamp_min(1e-30).log()).sum(-1)
confident = (test_responsibilities.max(-1).values > 0.99).double().mean().item()
print(f"mixture used: {best_name}; {100 * confident:.1f}% of the test digits have "
      f"max_k p(z = k | c) > 0.99")
order, captions = component_summary(best)
majority = [caption.split(" ")[0].split("\n")[0] for caption in captions]
uncertain = [int(i) for i in entropy.argsort(descending=True) if int(i) >= 4][:6]
chosen = [0, 1, 2, 3] + uncertain
figure, axes = plt.subplots(2, len(chosen), figsize=(1.45 * len(chosen), 3.6),
                            height_ratios=(1, 1.3), layout="constrained")
for column, index in enumerate(chosen):
    probabilities = test_responsibilities[index, order.to(device)].cpu()
    shares = [f"{m}:{p:.2f}" for m, p in zip(majority, probabilities.tolist()) if p >= 0.01]
    print(f"test digit {index} (label {int(data.test_y[index])}): p(z | c) = " + ", ".join(shares))
    axes[0, column].imshow(test_x[index].reshape(height, width).cpu(), cmap="gray_r",
                           vmin=0, vmax=1)
    axes[0, column].set_title(f"#{index}, label {int(data.test_y[index])}", fontsize=8)
    axes[0, column].set_axis_off()
    axes[1, column].bar(range(num_components), probabilities,
                        color="C0" if column < 4 else "C3")
    axes[1, column].set_ylim(0, 1.05)
    axes[1, column].set_xticks(range(num_components), majority, fontsize=6)
    axes[1, column].tick_params(axis="y", labelsize=7)
    if column:
        axes[1, column].set_yticklabels([])
axes[1, 0].set_ylabel("p(z = k | c)")
figure.supxlabel("component k, labelled by its majority digit (blue: first four test "
                 "digits; red: the six most uncertain)", fontsize=9)
figure.suptitle(f"Exact posterior over the {num_components} components ({best_name})")
figure.savefig(OUT / "mixture_responsibilities.png", dpi=110)
print(f"wrote {OUT / 'mixture_responsibilities.png'}")

# %% [markdown]
# ## Part 3: what exactness buys, and what it costs
#
# The two models can be joined without losing exactness: keep the pPCA
# decoder, but replace its prior N(0, I) by the fitted mixture,
# z ~ Σ_k π_k N(m_k, diag s_k²). Every component stays Gaussian after the
# linear decoder, so
#
#     p(x) = Σ_k π_k N(x; W m_k + μ, W diag(s_k²) Wᵀ + σ² I),
#
# again exact (a mixture of ten pPCAs that share W). This compares directly
# with pPCA's test log p(x), both being densities of the same grey-level
# test images. The mixture here was fitted to the codes E[z | x], not by
# maximizing this p(x), so it is a fair model but not the best of its kind.

# %%
with torch.no_grad():
    weight, noise_var = ml.decoder.weight, ml.noise_scale.pow(2)
    components = dist.LowRankMultivariateNormal(
        ml.decoder(best.components.locs), weight * best.scales[:, None, :],
        noise_var.expand(data.data_dim))
    log_weights = best.components.logits.log_softmax(-1)
    mixture_prior_log_px = (components.log_prob(test_x[:, None, :]) + log_weights).logsumexp(-1)
results = [
    ("pPCA, closed form", ml_test_log_px.mean().item(), "exact Gaussian"),
    ("pPCA, trained by SVI", svi_test_log_px.mean().item(), "exact Gaussian"),
    (f"pPCA with a {num_components}-component mixture prior", mixture_prior_log_px.mean().item(),
     "exact mixture of Gaussians"),
]
print(f"{'model of the grey-level test images':<46}{'exact log p(x)':>16}   posterior p(z | x)")
for name, value, posterior in results:
    print(f"{name:<46}{value:>16.2f}   {posterior}")
print(f"gain of the mixture prior over pPCA: "
      f"{mixture_prior_log_px.mean().item() - ml_test_log_px.mean().item():.2f} nats per image")

# %% [markdown]
# The clustered prior adds about two nats per image: digits do fall into
# groups, and saying so helps, but the gain is small next to what a
# 784-dimensional density could capture, because both models still see an
# image as a linear combination of 20 templates plus independent pixel
# noise.
#
# | | probabilistic PCA | Gaussian mixture | VAE (tutorials 2–4) |
# | --- | --- | --- | --- |
# | log p(x) | exact, closed form | exact, a sum over K | only bounds and estimates (ELBO, IWAE) |
# | posterior p(z \| x) | exact Gaussian | exact categorical (enumeration) | approximated by q(z \| x), or sampled by MCMC |
# | fitting | one eigendecomposition | EM, or gradients of the exact log p(x) | SVI on the ELBO |
# | the variational gap | zero: q can equal the posterior | none: nothing to approximate | the KL gap of tutorial 4 |
# | what it can express | a linear subspace plus Gaussian noise: blurry reconstructions, ghostly samples | K prototypes: no variation within a cluster beyond independent per-coordinate noise | non-linear variation: strokes, thickness, slant |
# | on raw pixels | works (shared σ) | ill-posed with diagonal variances (constant pixels) | works |
#
# ## What to take away
#
# * Exact inference is available whenever the model keeps the sum or
#   integral over z tractable: Gaussians through linear maps (pPCA), or a
#   small discrete latent that Pyro can enumerate (the mixture).
# * With exact log p(x) and exact posteriors every claim about an
#   inference method can be *checked*: SVI on pPCA lands a little below the
#   closed-form maximum, and its ELBO gap is exactly the KL between its
#   encoder and its own exact posterior.
# * The exact posterior enables algorithms a VAE cannot use: EM fits the
#   mixture with no learning rate, in a few passes.
# * The price is expressiveness. A linear decoder and a handful of clusters
#   describe digits coarsely; the VAE gives up exactness to get a non-linear
#   decoder, and the previous tutorials measured what that costs.
