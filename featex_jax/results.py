"""Results of an evaluation: per-section scores -> official metrics -> results.json and the table.

The metrics are those of the official evaluator (featex_jax/dcase_metrics.py); this module
applies them to every section, keeps what was scored beside them, and presents them: a
JSON file that holds every figure with its definition, and a plain-text table for the
terminal and the logs.
"""

import dataclasses
import os

import numpy as np

from featex_jax import dcase_metrics
from featex_jax import files


@dataclasses.dataclass(frozen=True)
class SectionScores:
  """Scores of one (machine type, section) test set, and what is known about its clips.

  is_anomaly/is_target are None for an unlabelled set (evaluation clips without ground
  truth): its submission files are still written, its metrics are not computed.
  """

  machine: str
  section: str  # two digits, "00"; an int or "section_00" is accepted
  file_names: tuple
  scores: np.ndarray
  decisions: np.ndarray
  is_anomaly: np.ndarray | None = None
  is_target: np.ndarray | None = None
  threshold: float | None = None

  def __post_init__(self):
    normalised = dict(
      section=section_id(self.section),
      file_names=tuple(os.path.basename(str(f)) for f in self.file_names),
      scores=np.asarray(self.scores),
      decisions=np.asarray(self.decisions),
    )
    for field in ("is_anomaly", "is_target"):
      if getattr(self, field) is not None:
        normalised[field] = np.asarray(getattr(self, field))
    for field, value in normalised.items():
      object.__setattr__(self, field, value)  # frozen: normalise once, at construction

  @property
  def name(self):
    return f"{self.machine} section {self.section}"


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """Scores, per-section metrics (None: unlabelled) and summary figures of a whole test set."""

  sections: tuple
  metrics: dict  # (machine, section) -> dcase_metrics.SectionMetrics | None
  summary: dict  # dcase_metrics.summarise(...), plus "max_fpr" and "official_score_ci95"
  members: tuple = ()  # of an ensemble: MemberResult of each model evaluated alone


@dataclasses.dataclass(frozen=True)
class MemberResult:
  """One model of an ensemble, evaluated alone (its own centres, scores and thresholds)."""

  workdir: str
  checkpoint_step: int
  summary: dict  # as Evaluation.summary


def section_id(section):
  """'00' from 0, '0', '00' or 'section_00': the two-digit id in file names."""
  text = str(section)
  if text.startswith("section_"):
    text = text[len("section_") :]
  if not text.isdigit():
    raise ValueError(f"section must be a number such as 0, '00' or 'section_00', got {section!r}")
  return f"{int(text):02d}"


def compute(sections, max_fpr=dcase_metrics.MAX_FPR, ci95=True, members=()):
  """Metrics of every section and the summary; `ci95` adds the evaluator's jackknife
  "official score ci95" (one AUC per labelled clip: seconds for a DCASE-sized set)."""
  sections = tuple(sections)
  results = {}
  for s in sections:
    results[(s.machine, s.section)] = dcase_metrics.section_metrics(
      s.scores, s.is_anomaly, s.is_target, s.decisions, max_fpr=max_fpr, name=s.name
    )
  summary = dcase_metrics.summarise(results)
  summary["max_fpr"] = max_fpr
  labelled = [s for s in sections if s.is_anomaly is not None]
  summary["official_score_ci95"] = None
  if ci95 and labelled:
    summary["official_score_ci95"] = dcase_metrics.official_score_ci95(
      np.concatenate([s.is_anomaly for s in labelled]), np.concatenate([s.scores for s in labelled]), max_fpr=max_fpr
    )
  return Evaluation(sections=sections, metrics=results, summary=summary, members=tuple(members))


DEFINITIONS = {
  "auc": "AUC on all clips of the section",
  "auc_source": "official: source-domain normal clips + ALL anomalous clips of the section",
  "auc_target": "official: target-domain normal clips + ALL anomalous clips of the section",
  "pauc": "official: all clips of the section, up to summary.max_fpr (official 0.1), "
  "McClish-corrected (sklearn roc_auc_score)",
  "precision/recall/f1_<domain>": "official: decisions of the domain's own clips",
  "official_score": "harmonic mean over all sections of every AUC(source), AUC(target) and pAUC",
  "hmean*/amean*": "the evaluator's harmonic/arithmetic mean rows (AUC over both domains' values)",
  "authors_*": "authors' script: each domain's own normals and own anomalies only (not official)",
}


# The figures runs are compared by (per machine type and over all sections), as
# (name, path into a dcase_metrics.summarise group, path into its "authors" group).
HEADLINE_FIGURES = (
  ("auc_source", ("hmean_source", "auc")),
  ("auc_target", ("hmean_target", "auc")),
  ("pauc", ("hmean", "pauc")),
  ("authors_auc_source", ("authors_auc_source",)),
  ("authors_pauc_source", ("authors_pauc_source",)),
  ("authors_auc_target", ("authors_auc_target",)),
  ("authors_pauc_target", ("authors_pauc_target",)),
  ("authors_auc", ("auc",)),
  ("authors_pauc", ("pauc",)),
)


def headline_figures(summary):
  """{"official_score": x, "groups": {machine | "all": {figure: x}}} of one evaluation summary."""
  groups = {}
  for group in [*summary["machines"], "all"]:
    official = summary["all"] if group == "all" else summary["machines"][group]
    authors = summary["authors"]["all"] if group == "all" else summary["authors"]["machines"][group]
    groups[group] = {}
    for name, path in HEADLINE_FIGURES:
      value = authors if name.startswith("authors_") else official
      for key in path:
        value = value[key]
      groups[group][name] = value
  return {"official_score": summary["official_score"], "groups": groups}


def mean_std(values):
  """{"mean", "std", "values"} over runs; std is NumPy's default population std (ddof=0)."""
  values = [v for v in values if v is not None]
  if not values:
    return {"mean": None, "std": None, "values": []}
  return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": [float(v) for v in values]}


def member_statistics(members):
  """Mean +- std over the members evaluated alone of every headline figure: how the paper
  reports K independent runs (its ensemble figures are the averaged-score evaluation)."""
  figures = [headline_figures(m.summary) for m in members if m.summary.get("official_score") is not None]
  if not figures:
    return None
  groups = figures[0]["groups"]
  return {
    "n_runs": len(figures),
    "std": "population (ddof=0)",
    "official_score": mean_std(f["official_score"] for f in figures),
    "groups": {g: {name: mean_std(f["groups"][g][name] for f in figures) for name in groups[g]} for g in groups},
  }


def results_dict(evaluation, metadata=None):
  """Everything results.json holds: run metadata, definitions, summary (of the ensemble when
  there are several members), every section, and each member evaluated alone."""
  sections = []
  for s in evaluation.sections:
    m = evaluation.metrics[(s.machine, s.section)]
    sections.append(
      {
        "machine": s.machine,
        "section": s.section,
        "n_clips": len(s.file_names),
        "threshold": s.threshold,
        "n_decided_anomalous": int(np.sum(s.decisions)),
        "metrics_computed": m is not None,
        "metrics": None if m is None else dataclasses.asdict(m),
      }
    )
  result = {
    "metadata": dict(metadata or {}),
    "definitions": DEFINITIONS,
    "summary": evaluation.summary,
    "sections": sections,
  }
  if evaluation.members:
    result["members"] = [dataclasses.asdict(m) for m in evaluation.members]
    result["member_statistics"] = member_statistics(evaluation.members)
  return result


def write_results(path, evaluation, metadata=None):
  files.write_json(path, results_dict(evaluation, metadata))


def format_table(evaluation):
  """A plain-text report for the terminal and logs; figures in percent."""
  labelled = [(s, evaluation.metrics[(s.machine, s.section)]) for s in evaluation.sections]
  labelled = [(s, m) for s, m in labelled if m is not None]
  unlabelled = [s.name for s in evaluation.sections if evaluation.metrics[(s.machine, s.section)] is None]
  blocks = []
  if labelled and evaluation.members:
    blocks.append(_members_block(evaluation.members))
    blocks.append(f"=== Ensemble of the {len(evaluation.members)} models (anomaly scores averaged) ===\n")
  if labelled:
    blocks += [
      _sections_block(labelled, evaluation.summary["max_fpr"]),
      _means_block(evaluation.summary, len(labelled)),
      _authors_block(evaluation.summary["authors"]),
    ]
  if unlabelled:
    blocks.append(
      f"Metrics not computed (no ground truth) for {len(unlabelled)} section(s): " + ", ".join(unlabelled) + "\n"
    )
  return "\n".join(blocks)


def _members_block(members):
  """Each model evaluated alone, and mean +- std over them: the paper's way of reporting runs."""
  stats = member_statistics(members)
  rows = [[str(k), _pct(m.summary["official_score"]), m.workdir] for k, m in enumerate(members)]
  text = (
    f"=== The {len(members)} models, each evaluated alone (the paper reports these as mean +- std) ===\n"
    + _grid(["member", "official", "run"], rows)
    + "\n\n"
  )
  keys = ("auc_source", "auc_target", "pauc", "authors_auc_source", "authors_auc_target", "authors_pauc")
  header = ["machine", "AUC-S", "AUC-T", "pAUC", "authors AUC-S", "authors AUC-T", "authors pAUC"]
  rows = [[group] + [_pct_std(figures[k]) for k in keys] for group, figures in stats["groups"].items()]
  official = stats["official_score"]
  return (
    text + "Mean +- std over the models (%, population std); AUC-S/AUC-T/pAUC official, authors' "
    "per-domain figures beside them\n" + _grid(header, rows) + "\n\n"
    f"Official score, mean +- std over {stats['n_runs']} models: {_pct_std(official)}\n"
  )


def _pct_std(figure):
  if figure["mean"] is None:
    return "n/a"
  return f"{100 * figure['mean']:.2f} +- {100 * figure['std']:.2f}"


def _sections_block(labelled, max_fpr):
  header = ["machine", "sec", "AUC-S", "AUC-T", "pAUC", "AUC", "P-S", "P-T", "R-S", "R-T", "F1-S", "F1-T"]
  keys = (
    "auc_source",
    "auc_target",
    "pauc",
    "auc",
    "precision_source",
    "precision_target",
    "recall_source",
    "recall_target",
    "f1_source",
    "f1_target",
  )
  rows = [[s.machine, s.section] + [_pct(getattr(m, k)) for k in keys] for s, m in labelled]
  return (
    "Official DCASE metrics per section (%). AUC-S/AUC-T: the domain's normals + all anomalies;\n"
    f"pAUC: all clips, max FPR {max_fpr:g}; P/R/F1: decisions of each domain's clips.\n" + _grid(header, rows) + "\n"
  )


def _means_block(summary, n_sections):
  header = ["machine", "AUC-S", "AUC-T", "AUC", "pAUC", "F1-S", "F1-T", "F1"]
  groups = list(summary["machines"].items()) + [("all", summary["all"])]
  rows = []
  for machine, group in groups:
    hm, src, tgt = group["hmean"], group["hmean_source"], group["hmean_target"]
    rows.append(
      [machine] + [_pct(v) for v in (src["auc"], tgt["auc"], hm["auc"], hm["pauc"], src["f1"], tgt["f1"], hm["f1"])]
    )
  text = (
    "Harmonic means per machine type and over all sections (%)\n" + _grid(header, rows) + "\n\n"
    f"Official score: {_pct(summary['official_score'])} (harmonic mean of {3 * n_sections} "
    "values: AUC-S, AUC-T and pAUC of every section)\n"
  )
  if summary.get("official_score_ci95") is not None:
    text += (
      f"Official score ci95 (the evaluator's jackknife): +/-{100 * summary['official_score_ci95']:.4f}"
      " percentage points\n"
    )
  return text


def _authors_block(authors):
  header = ["machine", "AUC-S", "pAUC-S", "AUC-T", "pAUC-T", "AUC", "pAUC"]
  keys = ("authors_auc_source", "authors_pauc_source", "authors_auc_target", "authors_pauc_target", "auc", "pauc")
  groups = list(authors["machines"].items()) + [("all", authors["all"])]
  rows = [[machine] + [_pct(group[k]) for k in keys] for machine, group in groups]
  return (
    "Authors' per-domain figures (%), NOT the official definition: each domain's own normals "
    "and own anomalies;\nharmonic means over sections\n" + _grid(header, rows) + "\n"
  )


def _pct(value):
  return "n/a" if value is None else f"{100 * value:.2f}"


def _grid(header, rows):
  """Left-aligned text columns separated by two spaces: readable in a terminal and a log."""
  widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
  line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
  return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
