"""Plots of an evaluation: ROC curves and score histograms per section (PNG, matplotlib)."""

import os

import numpy as np

from featex_jax import dcase_metrics
from featex_jax import files


def write_plots(out_dir, evaluation, max_fpr=dcase_metrics.MAX_FPR):
  """ROC curves and score histograms, two PNGs per labelled section; returns the paths."""
  paths = []
  for s in evaluation.sections:
    if s.is_anomaly is None:
      continue
    stem = f"{s.machine}_section_{s.section}"
    roc_path = os.path.join(out_dir, f"roc_{stem}.png")
    plot_roc(roc_path, s.scores, s.is_anomaly, s.is_target, title=s.name, max_fpr=max_fpr)
    histogram_path = os.path.join(out_dir, f"histogram_{stem}.png")
    plot_histograms(histogram_path, s.scores, s.is_anomaly, s.is_target, threshold=s.threshold, title=s.name)
    paths += [roc_path, histogram_path]
  return paths


def plot_roc(path, scores, is_anomaly, is_target, title="", max_fpr=dcase_metrics.MAX_FPR):
  """ROC curves of the official source and target subsets and of all clips; the pAUC range shaded."""
  from sklearn.metrics import roc_auc_score
  from sklearn.metrics import roc_curve

  scores = np.asarray(scores)
  is_anomaly, is_target = np.asarray(is_anomaly, bool), np.asarray(is_target, bool)
  fig, ax = _figure(1)
  ax = ax[0]
  ax.axvspan(0, max_fpr, color="0.9", label=f"pAUC range (FPR <= {max_fpr:g})")
  subsets = (
    ("source", ~is_target | is_anomaly, "tab:blue"),
    ("target", is_target | is_anomaly, "tab:orange"),
    ("all clips", np.ones_like(is_anomaly), "0.3"),
  )
  for label, keep, colour in subsets:
    fpr, tpr, _ = roc_curve(is_anomaly[keep], scores[keep])
    auc = roc_auc_score(is_anomaly[keep], scores[keep])
    ax.plot(fpr, tpr, color=colour, label=f"{label}: AUC {100 * auc:.1f}%")
  ax.plot([0, 1], [0, 1], ":", color="0.6")
  ax.set(
    xlabel="false positive rate",
    ylabel="true positive rate",
    xlim=(0, 1),
    ylim=(0, 1.01),
    title=f"{title}: ROC\nsource, target: the domain's normals + all anomalies",
  )
  ax.legend(loc="lower right")
  _save(fig, path)


def plot_histograms(path, scores, is_anomaly, is_target, threshold=None, title=""):
  """Score histograms, normal vs anomalous clips, one panel per domain; the threshold marked."""
  scores = np.asarray(scores)
  is_anomaly, is_target = np.asarray(is_anomaly, bool), np.asarray(is_target, bool)
  bins = np.histogram_bin_edges(scores, bins=30)
  fig, axes = _figure(2)
  for ax, (domain, in_domain) in zip(axes, (("source", ~is_target), ("target", is_target))):
    for label, keep, colour in (
      ("normal", in_domain & ~is_anomaly, "tab:blue"),
      ("anomaly", in_domain & is_anomaly, "tab:red"),
    ):
      ax.hist(scores[keep], bins=bins, alpha=0.6, color=colour, label=f"{label} ({keep.sum()})")
    if threshold is not None:
      ax.axvline(threshold, color="k", linestyle="--", label="decision threshold")
    ax.set(xlabel="anomaly score", ylabel="clips", title=f"{title}: {domain} domain")
    ax.legend()
  _save(fig, path)


def _figure(panels):
  """A figure outside pyplot (no global state, no display needed) with `panels` axes side by side."""
  from matplotlib.figure import Figure

  fig = Figure(figsize=(5.5 * panels, 4.5), layout="constrained")
  return fig, fig.subplots(1, panels, squeeze=False)[0]


def _save(fig, path):
  with files.atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=100)
