"""Evaluation of trained models: convergence diagnostics, posterior comparisons, representation metrics, plots.

Everything here reads a trained model or the output of an inference algorithm;
nothing in :mod:`ppl_vae.inference` or :mod:`ppl_vae.models` imports it.
"""

from ppl_vae.evaluation.anomaly import ROC, anomaly_roc
from ppl_vae.evaluation.compare import CompareConfig, Comparison, compare_posteriors
from ppl_vae.evaluation.diagnostics import (
    ConvergenceReport,
    check_convergence,
    plot_pair,
    plot_trace,
    to_inference_data,
)
from ppl_vae.evaluation.plots import image_grid, plot_posterior_comparison, save_image_grid
from ppl_vae.evaluation.representation import (
    PCA,
    ActiveUnits,
    MutualInformationGap,
    active_units,
    correlation_matrix,
    fit_pca,
    gaussian_kl,
    kl_per_dimension,
    linear_probe,
    mutual_information_gap,
    quantize_gaussian,
    stratified_subset,
    traversal_codes,
)

__all__ = [
    "PCA",
    "ROC",
    "ActiveUnits",
    "CompareConfig",
    "Comparison",
    "ConvergenceReport",
    "MutualInformationGap",
    "active_units",
    "anomaly_roc",
    "check_convergence",
    "compare_posteriors",
    "correlation_matrix",
    "fit_pca",
    "gaussian_kl",
    "image_grid",
    "kl_per_dimension",
    "linear_probe",
    "mutual_information_gap",
    "plot_pair",
    "plot_posterior_comparison",
    "plot_trace",
    "quantize_gaussian",
    "save_image_grid",
    "stratified_subset",
    "to_inference_data",
    "traversal_codes",
]
