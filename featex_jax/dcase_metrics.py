"""DCASE2023 Task 2 metrics, as the official evaluator defines them, and the authors' variant.

Mirrors nttcslab/dcase2023_task2_evaluator, dcase2023_task2_evaluator.py (commit
3aa8a9f; the script is unchanged since its first version c850537), function `output_result`:
- AUC (source|target): `roc_auc_score` on the clips with `(y_domain == d) | (y_true != 0)`,
  i.e. the domain's normal clips plus ALL anomalous clips of the section, whatever their
  domain. AUC (all): every clip of the section.
- pAUC: `roc_auc_score(y_true_all, y_pred_all, max_fpr=MAX_FPR)` with MAX_FPR = 0.1 on all
  clips of the section, both domains (sklearn's McClish-corrected partial AUC).
- precision/recall/F1 (source|target): from the decisions of the domain's clips only
  (its normals and its own anomalies), via `confusion_matrix`, with
  precision = tp / max(tp + fp, eps), recall = tp / max(tp + fn, eps),
  F1 = 2 p r / max(p + r, eps), eps = sys.float_info.epsilon. (The evaluator would crash
  in `confusion_matrix(...).ravel()` if a domain's labels and decisions held one class
  only; the counts are taken directly here, identical wherever the evaluator runs.)
- Harmonic means: `scipy.stats.hmean(numpy.maximum(values, eps))`. For a group of sections
  (one machine type, or all), "harmonic mean" takes AUC over the AUC(source) and
  AUC(target) values together, pAUC over the pAUC values, precision/recall/F1 over both
  domains' values; "source/target harmonic mean" keeps the source (target) columns, and
  the pAUC entry of those rows is the hmean of the (domain-independent) pAUC values.
  Arithmetic means likewise, without the epsilon.
- Official score: hmean(maximum([all AUC(source)] + [all AUC(target)] + [all pAUC], eps))
  over all machine types and sections; its arithmetic mean is the paper table's
  "TOTAL score a-mean".
- "official score ci95": mean of the jackknife 95% half-widths of AUC and pAUC computed on
  the clips of ALL sections pooled (`jackknife_estimate`).

The authors' script (ssl4asd, main_statex+featex.py, "EVALUATION SET" block) instead
computes a domain's AUC and pAUC on that domain's own normals and own anomalies, and takes
plain `scipy.stats.hmean`s; those figures are reported under `authors_*` names, for
comparison with the paper only.
"""

import dataclasses
import sys

import numpy as np
import scipy.stats
from sklearn import metrics as skmetrics

MAX_FPR = 0.1
EPSILON = sys.float_info.epsilon
DOMAINS = ("source", "target")
FIGURES = ("auc", "pauc", "precision", "recall", "f1")


@dataclasses.dataclass(frozen=True)
class SectionMetrics:
  """Every figure of one (machine type, section) test set. Fractions in [0, 1]."""

  n_normal_source: int
  n_anomaly_source: int
  n_normal_target: int
  n_anomaly_target: int
  auc: float  # all clips of the section ("AUC (all)")
  auc_source: float  # official: source normals + all anomalies
  auc_target: float  # official: target normals + all anomalies
  pauc: float  # official: all clips, max FPR 0.1
  # From the decisions, each domain's own clips; None when no decisions were given.
  precision_source: float | None = None
  precision_target: float | None = None
  recall_source: float | None = None
  recall_target: float | None = None
  f1_source: float | None = None
  f1_target: float | None = None
  # The authors' per-domain variant: the domain's own normals and own anomalies only.
  # None when the domain has no anomalies of its own.
  authors_auc_source: float | None = None
  authors_pauc_source: float | None = None
  authors_auc_target: float | None = None
  authors_pauc_target: float | None = None


def section_metrics(scores, is_anomaly, is_target, decisions=None, max_fpr=MAX_FPR, name="section"):
  """All metrics of one section, or None when its test clips carry no labels.

  scores: (n,) anomaly scores; is_anomaly: (n,) bool/0-1 or None (unlabelled set);
  is_target: (n,) bool/0-1 domain (the evaluator's ground_truth_domain: 0 source,
  1 target); decisions: (n,) 0/1 or None. `name` labels errors.
  """
  if is_anomaly is None:
    return None
  scores = np.asarray(scores, dtype=np.float64)
  n = len(scores)
  if is_target is None:
    raise ValueError(f"{name}: labels are given but no domains; AUC(source|target) needs both")
  is_anomaly = _as_binary(is_anomaly, n, f"{name}: anomaly labels")
  is_target = _as_binary(is_target, n, f"{name}: domains")
  if not np.all(np.isfinite(scores)):
    raise ValueError(f"{name}: {np.sum(~np.isfinite(scores))} anomaly score(s) are NaN or Inf")
  if not np.any(is_anomaly):
    raise ValueError(f"{name}: no anomalous test clips, AUC and pAUC are undefined")
  in_domain = {"source": ~is_target, "target": is_target}
  for domain in DOMAINS:
    if not np.any(in_domain[domain] & ~is_anomaly):
      raise ValueError(f"{name}: no normal {domain}-domain test clips, AUC({domain}) is undefined")

  figures = dict(
    n_normal_source=int(np.sum(~is_target & ~is_anomaly)),
    n_anomaly_source=int(np.sum(~is_target & is_anomaly)),
    n_normal_target=int(np.sum(is_target & ~is_anomaly)),
    n_anomaly_target=int(np.sum(is_target & is_anomaly)),
    auc=float(skmetrics.roc_auc_score(is_anomaly, scores)),
    pauc=float(skmetrics.roc_auc_score(is_anomaly, scores, max_fpr=max_fpr)),
  )
  if decisions is not None:
    decisions = _as_binary(decisions, n, f"{name}: decisions")
  for domain in DOMAINS:
    official = in_domain[domain] | is_anomaly
    figures[f"auc_{domain}"] = float(skmetrics.roc_auc_score(is_anomaly[official], scores[official]))
    own = in_domain[domain]
    if np.any(own & is_anomaly):
      figures[f"authors_auc_{domain}"] = float(skmetrics.roc_auc_score(is_anomaly[own], scores[own]))
      figures[f"authors_pauc_{domain}"] = float(skmetrics.roc_auc_score(is_anomaly[own], scores[own], max_fpr=max_fpr))
    if decisions is not None:
      precision, recall, f1 = precision_recall_f1(is_anomaly[own], decisions[own])
      figures[f"precision_{domain}"] = precision
      figures[f"recall_{domain}"] = recall
      figures[f"f1_{domain}"] = f1
  return SectionMetrics(**figures)


def precision_recall_f1(is_anomaly, decisions):
  """The evaluator's precision, recall and F1, with its epsilon guards against 0/0."""
  is_anomaly = np.asarray(is_anomaly, dtype=bool)
  decisions = np.asarray(decisions, dtype=bool)
  tp = int(np.sum(is_anomaly & decisions))
  fp = int(np.sum(~is_anomaly & decisions))
  fn = int(np.sum(is_anomaly & ~decisions))
  precision = tp / max(tp + fp, EPSILON)
  recall = tp / max(tp + fn, EPSILON)
  f1 = 2.0 * precision * recall / max(precision + recall, EPSILON)
  return float(precision), float(recall), float(f1)


def hmean(values):
  """The evaluator's harmonic mean: values floored at machine epsilon so a 0 cannot break it."""
  return float(scipy.stats.hmean(np.maximum(np.asarray(values, dtype=np.float64), EPSILON)))


def official_score(sections):
  """hmean over all sections of every AUC(source), AUC(target) and pAUC value together."""
  return hmean(_official_values(sections))


def group_means(sections):
  """The evaluator's summary rows for a group of sections (a machine type, or all).

  Returns {"hmean" | "hmean_source" | "hmean_target" | "amean" | "amean_source" |
  "amean_target": {"auc", "pauc", "precision", "recall", "f1"}}; precision/recall/F1 are
  None when a section has no decisions.
  """
  sections = list(sections)
  rows = {}
  for suffix, domains in (("", DOMAINS), ("_source", ("source",)), ("_target", ("target",))):
    values = {figure: _figure_values(sections, figure, domains) for figure in FIGURES}
    rows["hmean" + suffix] = {f: None if v is None else hmean(v) for f, v in values.items()}
    rows["amean" + suffix] = {f: None if v is None else float(np.mean(v)) for f, v in values.items()}
  return rows


def authors_means(sections):
  """The authors' summary (plain scipy hmean): per-domain AUC/pAUC on own anomalies only,
  and AUC/pAUC over all clips of each section. None where a figure is undefined."""
  sections = list(sections)
  result = {}
  for key in ("authors_auc_source", "authors_pauc_source", "authors_auc_target", "authors_pauc_target", "auc", "pauc"):
    values = [getattr(s, key) for s in sections]
    result[key] = None if any(v is None for v in values) else float(scipy.stats.hmean(values))
  return result


def summarise(section_results):
  """Every summary figure over {(machine, section): SectionMetrics}.

  Sections mapped to None (unlabelled) are left out and listed under "not_computed";
  when none is labelled, the figures are None.
  """
  labelled = {key: m for key, m in section_results.items() if m is not None}
  not_computed = [list(key) for key, m in section_results.items() if m is None]
  if not labelled:
    return {"official_score": None, "not_computed": not_computed}
  by_machine = {}
  for (machine, _), m in labelled.items():
    by_machine.setdefault(machine, []).append(m)
  official = _official_values(labelled.values())
  return {
    "official_score": hmean(official),
    "official_score_amean": float(np.mean(official)),
    "all": group_means(labelled.values()),
    "machines": {machine: group_means(ms) for machine, ms in by_machine.items()},
    "authors": {
      "all": authors_means(labelled.values()),
      "machines": {machine: authors_means(ms) for machine, ms in by_machine.items()},
    },
    "not_computed": not_computed,
  }


def jackknife_ci95(is_anomaly, scores, max_fpr=None):
  """Jackknife estimate and 95% half-width of (p)AUC, as the evaluator's `jackknife_estimate`.

  Leaves out one clip at a time: len(scores) AUC computations, seconds for a few thousand.
  """
  is_anomaly = np.asarray(is_anomaly, dtype=bool)
  scores = np.asarray(scores, dtype=np.float64)
  n = len(scores)

  def statistic(keep):
    return skmetrics.roc_auc_score(is_anomaly[keep], scores[keep], max_fpr=max_fpr)

  theta_hat = statistic(np.ones(n, dtype=bool))
  keep = np.ones(n, dtype=bool)
  thetai_hats = np.empty(n)
  for i in range(n):
    keep[i] = False
    thetai_hats[i] = statistic(keep)
    keep[i] = True
  estimate = float(np.mean(n * theta_hat - (n - 1) * thetai_hats))
  sigma = np.sqrt(np.sum((thetai_hats - thetai_hats.mean()) ** 2) / (n * (n - 1)))
  t_crit = abs(scipy.stats.t.ppf((1 - 0.95) / 2, n - 1))
  return estimate, float(t_crit * sigma)


def official_score_ci95(is_anomaly, scores, max_fpr=MAX_FPR):
  """The evaluator's "official score ci95": mean of the AUC and pAUC jackknife half-widths,
  on the labels and scores of all labelled sections concatenated."""
  _, auc_ci95 = jackknife_ci95(is_anomaly, scores)
  _, pauc_ci95 = jackknife_ci95(is_anomaly, scores, max_fpr=max_fpr)
  return float(np.mean([auc_ci95, pauc_ci95]))


def _official_values(sections):
  sections = list(sections)
  return [s.auc_source for s in sections] + [s.auc_target for s in sections] + [s.pauc for s in sections]


def _figure_values(sections, figure, domains):
  """The evaluator's `performance` row of one figure: source columns, then target columns."""
  if figure == "pauc":
    return [s.pauc for _ in domains for s in sections]
  values = [getattr(s, f"{figure}_{d}") for d in domains for s in sections]
  return None if any(v is None for v in values) else values


def _as_binary(values, n, what):
  values = np.asarray(values)
  if values.shape != (n,):
    raise ValueError(f"{what}: expected {n} values (one per score), got shape {values.shape}")
  if values.dtype != bool and not np.all((values == 0) | (values == 1)):
    raise ValueError(f"{what}: values must be 0/1 or booleans, got {sorted(set(values.tolist()))[:5]}")
  return values.astype(bool)
