"""Evaluation outputs: submission CSVs, evaluation against ground truth, results.json, table, plots.

Submission files follow the DCASE2023 Task 2 format that nttcslab/dcase2023_task2_evaluator
reads (`read_score` in dcase2023_task2_evaluator.py): `anomaly_score_<machine>_section_<ss>_test.csv`
and `decision_result_<machine>_section_<ss>_test.csv`, rows `file_name,value`, no header.
Its ground truth: `ground_truth_data/ground_truth_<machine>_section_<ss>_test.csv` (rows
`file_name,label`, 1 = anomaly), `ground_truth_domain/...` (`file_name,domain`, 0 = source,
1 = target) and optionally `ground_truth_attributes/...` (`file_name,<full name without .wav>`:
a submission may use either name). The evaluator sorts submission and ground-truth rows by
file name and pairs them by position; here they are paired by name, and a mismatch is an
error rather than silently misaligned labels.
"""
import csv
import dataclasses
import os
import re
import shutil
import tempfile

import numpy as np

from featex_jax import files
from featex_jax import metrics
from featex_jax.scoring import short_list

GROUND_TRUTH_FILE = re.compile(r"^ground_truth_(?P<machine>.+)_section_(?P<section>\d+)_test\.csv$")


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
    normalised = dict(section=section_id(self.section),
                      file_names=tuple(os.path.basename(str(f)) for f in self.file_names),
                      scores=np.asarray(self.scores), decisions=np.asarray(self.decisions))
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
  metrics: dict  # (machine, section) -> metrics.SectionMetrics | None
  summary: dict  # metrics.summarise(...), plus "max_fpr" and "official_score_ci95"


def section_id(section):
  """'00' from 0, '0', '00' or 'section_00': the two-digit id in file names."""
  text = str(section)
  if text.startswith("section_"):
    text = text[len("section_"):]
  if not text.isdigit():
    raise ValueError(f"section must be a number such as 0, '00' or 'section_00', got {section!r}")
  return f"{int(text):02d}"


def submission_file_names(machine, section):
  ss = section_id(section)
  return (f"anomaly_score_{machine}_section_{ss}_test.csv",
          f"decision_result_{machine}_section_{ss}_test.csv")


def write_submission(out_dir, machine, section, file_names, scores, decisions):
  """Both submission files of one section (see `write_submissions`)."""
  return write_submissions(out_dir, [SectionScores(machine, section, file_names, scores, decisions)])


def write_submissions(out_dir, sections):
  """All sections' submission files, or none: every section is checked and written into a
  staging folder inside out_dir first, then moved into place by renames. Returns the paths."""
  contents = {}
  for s in sections:
    score_name, decision_name = submission_file_names(s.machine, s.section)
    if score_name in contents:
      raise ValueError(f"{s.name} is given twice")
    score_rows, decision_rows = _submission_rows(s)
    contents[score_name] = score_rows
    contents[decision_name] = decision_rows
  os.makedirs(out_dir, exist_ok=True)
  staging = tempfile.mkdtemp(dir=out_dir, prefix=".submission.")
  try:
    for name, text in contents.items():
      files.write_text(os.path.join(staging, name), text)
    paths = []
    for name in contents:
      path = os.path.join(out_dir, name)
      os.replace(os.path.join(staging, name), path)
      paths.append(path)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return paths


def read_submission(out_dir, machine, section):
  """(file_names, scores, decisions) of one section's submission files, in file order."""
  score_name, decision_name = submission_file_names(machine, section)
  score_names, scores = _read_two_columns(os.path.join(out_dir, score_name), float)
  decision_names, decisions = _read_two_columns(os.path.join(out_dir, decision_name), _decision)
  if sorted(score_names) != sorted(decision_names):
    raise ValueError(f"{out_dir}: {score_name} and {decision_name} list different files")
  order = {n: i for i, n in enumerate(decision_names)}
  decisions = [decisions[order[n]] for n in score_names]
  return score_names, np.array(scores, dtype=np.float64), np.array(decisions, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class GroundTruth:
  """One section's labels from the official evaluator's ground-truth CSVs."""
  file_names: tuple
  is_anomaly: np.ndarray
  is_target: np.ndarray
  aliases: dict  # full file name ("section_00_source_test_normal_...wav") -> listed name


def ground_truth_sections(ground_truth_dir):
  """(machine, section) pairs that ground_truth_dir/ground_truth_data holds, sorted."""
  data_dir = os.path.join(ground_truth_dir, "ground_truth_data")
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f"{data_dir} does not exist: expected the official evaluator's "
                            "ground_truth_data/ folder")
  found = [GROUND_TRUTH_FILE.match(name) for name in sorted(os.listdir(data_dir))]
  sections = sorted((m["machine"], section_id(m["section"])) for m in found if m)
  if not sections:
    raise ValueError(f"{data_dir} holds no ground_truth_<machine>_section_<ss>_test.csv files")
  return sections


def read_ground_truth(ground_truth_dir, machine, section):
  """Labels and domains of one section; the attribute file (name aliases) is optional."""
  name = f"ground_truth_{machine}_section_{section_id(section)}_test.csv"
  data_path = os.path.join(ground_truth_dir, "ground_truth_data", name)
  domain_path = os.path.join(ground_truth_dir, "ground_truth_domain", name)
  label_names, labels = _read_two_columns(data_path, _decision)
  domain_names, domains = _read_two_columns(domain_path, _decision)
  domain_of = dict(zip(domain_names, domains))
  if set(domain_of) != set(label_names):
    raise ValueError(f"{data_path} and {domain_path} list different files")
  aliases = {}
  attributes_path = os.path.join(ground_truth_dir, "ground_truth_attributes", name)
  if os.path.exists(attributes_path):
    listed, full_names = _read_two_columns(attributes_path, str)
    aliases = {f"{full}.wav": short for short, full in zip(listed, full_names)}
  return GroundTruth(file_names=tuple(label_names), is_anomaly=np.array(labels, dtype=bool),
                     is_target=np.array([domain_of[n] for n in label_names], dtype=bool),
                     aliases=aliases)


def attach_ground_truth(section, ground_truth, where="ground truth"):
  """`section` with labels and domains from `ground_truth`, paired by file name."""
  names = [ground_truth.aliases.get(n, n) for n in section.file_names]
  index = {n: i for i, n in enumerate(ground_truth.file_names)}
  missing = sorted(set(ground_truth.file_names) - set(names))
  extra = sorted(set(names) - set(index))
  if missing or extra or len(set(names)) != len(names):
    problems = []
    if extra:
      problems.append(f"{len(extra)} scored file(s) not in the ground truth: {short_list(extra)}")
    if missing:
      problems.append(f"{len(missing)} ground-truth file(s) without a score: {short_list(missing)}")
    if len(set(names)) != len(names):
      problems.append("some files are scored twice")
    raise ValueError(f"{section.name}: {where} does not cover the scored files: " + "; ".join(problems))
  rows = np.array([index[n] for n in names])
  return dataclasses.replace(section, is_anomaly=ground_truth.is_anomaly[rows],
                             is_target=ground_truth.is_target[rows])


def evaluate(sections, max_fpr=metrics.MAX_FPR, ci95=True):
  """Metrics of every section and the summary; `ci95` adds the evaluator's jackknife
  "official score ci95" (one AUC per labelled clip: seconds for a DCASE-sized set)."""
  sections = tuple(sections)
  results = {}
  for s in sections:
    results[(s.machine, s.section)] = metrics.section_metrics(
        s.scores, s.is_anomaly, s.is_target, s.decisions, max_fpr=max_fpr, name=s.name)
  summary = metrics.summarise(results)
  summary["max_fpr"] = max_fpr
  labelled = [s for s in sections if s.is_anomaly is not None]
  summary["official_score_ci95"] = None
  if ci95 and labelled:
    summary["official_score_ci95"] = metrics.official_score_ci95(
        np.concatenate([s.is_anomaly for s in labelled]),
        np.concatenate([s.scores for s in labelled]), max_fpr=max_fpr)
  return Evaluation(sections=sections, metrics=results, summary=summary)


def evaluate_submission(submission_dir, ground_truth_dir, max_fpr=metrics.MAX_FPR, ci95=True):
  """Existing submission files scored against the official ground truth, as the evaluator
  does: every section the ground truth lists must have both files."""
  sections = []
  for machine, section in ground_truth_sections(ground_truth_dir):
    names, scores, decisions = read_submission(submission_dir, machine, section)
    scored = SectionScores(machine, section, names, scores, decisions)
    sections.append(attach_ground_truth(scored, read_ground_truth(ground_truth_dir, machine, section),
                                        where=f"the ground truth in {ground_truth_dir}"))
  return evaluate(sections, max_fpr=max_fpr, ci95=ci95)


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


def results_dict(evaluation, metadata=None):
  """Everything results.json holds: run metadata, definitions, summary, every section."""
  sections = []
  for s in evaluation.sections:
    m = evaluation.metrics[(s.machine, s.section)]
    sections.append({
        "machine": s.machine, "section": s.section, "n_clips": len(s.file_names),
        "threshold": s.threshold, "n_decided_anomalous": int(np.sum(s.decisions)),
        "metrics_computed": m is not None,
        "metrics": None if m is None else dataclasses.asdict(m),
    })
  return {"metadata": dict(metadata or {}), "definitions": DEFINITIONS,
          "summary": evaluation.summary, "sections": sections}


def write_results(path, evaluation, metadata=None):
  files.write_json(path, results_dict(evaluation, metadata))


def format_table(evaluation):
  """A plain-text report for the terminal and logs; figures in percent."""
  labelled = [(s, evaluation.metrics[(s.machine, s.section)]) for s in evaluation.sections]
  labelled = [(s, m) for s, m in labelled if m is not None]
  unlabelled = [s.name for s in evaluation.sections if evaluation.metrics[(s.machine, s.section)] is None]
  blocks = []
  if labelled:
    blocks += [_sections_block(labelled, evaluation.summary["max_fpr"]),
               _means_block(evaluation.summary, len(labelled)),
               _authors_block(evaluation.summary["authors"])]
  if unlabelled:
    blocks.append(f"Metrics not computed (no ground truth) for {len(unlabelled)} section(s): "
                  + ", ".join(unlabelled) + "\n")
  return "\n".join(blocks)


def _sections_block(labelled, max_fpr):
  header = ["machine", "sec", "AUC-S", "AUC-T", "pAUC", "AUC", "P-S", "P-T", "R-S", "R-T", "F1-S", "F1-T"]
  keys = ("auc_source", "auc_target", "pauc", "auc", "precision_source", "precision_target",
          "recall_source", "recall_target", "f1_source", "f1_target")
  rows = [[s.machine, s.section] + [_pct(getattr(m, k)) for k in keys] for s, m in labelled]
  return ("Official DCASE metrics per section (%). AUC-S/AUC-T: the domain's normals + all anomalies;\n"
          f"pAUC: all clips, max FPR {max_fpr:g}; P/R/F1: decisions of each domain's clips.\n"
          + _grid(header, rows) + "\n")


def _means_block(summary, n_sections):
  header = ["machine", "AUC-S", "AUC-T", "AUC", "pAUC", "F1-S", "F1-T", "F1"]
  groups = list(summary["machines"].items()) + [("all", summary["all"])]
  rows = []
  for machine, group in groups:
    hm, src, tgt = group["hmean"], group["hmean_source"], group["hmean_target"]
    rows.append([machine] + [_pct(v) for v in (src["auc"], tgt["auc"], hm["auc"], hm["pauc"],
                                               src["f1"], tgt["f1"], hm["f1"])])
  text = ("Harmonic means per machine type and over all sections (%)\n" + _grid(header, rows) + "\n\n"
          f"Official score: {_pct(summary['official_score'])} (harmonic mean of {3 * n_sections} "
          "values: AUC-S, AUC-T and pAUC of every section)\n")
  if summary.get("official_score_ci95") is not None:
    text += (f"Official score ci95 (the evaluator's jackknife): +/-{100 * summary['official_score_ci95']:.4f}"
             " percentage points\n")
  return text


def _authors_block(authors):
  header = ["machine", "AUC-S", "pAUC-S", "AUC-T", "pAUC-T", "AUC", "pAUC"]
  keys = ("authors_auc_source", "authors_pauc_source", "authors_auc_target", "authors_pauc_target",
          "auc", "pauc")
  groups = list(authors["machines"].items()) + [("all", authors["all"])]
  rows = [[machine] + [_pct(group[k]) for k in keys] for machine, group in groups]
  return ("Authors' per-domain figures (%), NOT the official definition: each domain's own normals "
          "and own anomalies;\nharmonic means over sections\n" + _grid(header, rows) + "\n")


def write_plots(out_dir, evaluation, max_fpr=metrics.MAX_FPR):
  """ROC curves and score histograms, two PNGs per labelled section; returns the paths."""
  paths = []
  for s in evaluation.sections:
    if s.is_anomaly is None:
      continue
    stem = f"{s.machine}_section_{s.section}"
    roc_path = os.path.join(out_dir, f"roc_{stem}.png")
    plot_roc(roc_path, s.scores, s.is_anomaly, s.is_target, title=s.name, max_fpr=max_fpr)
    histogram_path = os.path.join(out_dir, f"histogram_{stem}.png")
    plot_histograms(histogram_path, s.scores, s.is_anomaly, s.is_target, threshold=s.threshold,
                    title=s.name)
    paths += [roc_path, histogram_path]
  return paths


def plot_roc(path, scores, is_anomaly, is_target, title="", max_fpr=metrics.MAX_FPR):
  """ROC curves of the official source and target subsets and of all clips; the pAUC range shaded."""
  from sklearn.metrics import roc_auc_score, roc_curve
  scores = np.asarray(scores)
  is_anomaly, is_target = np.asarray(is_anomaly, bool), np.asarray(is_target, bool)
  fig, ax = _figure(1)
  ax = ax[0]
  ax.axvspan(0, max_fpr, color="0.9", label=f"pAUC range (FPR <= {max_fpr:g})")
  subsets = (("source", ~is_target | is_anomaly, "tab:blue"),
             ("target", is_target | is_anomaly, "tab:orange"),
             ("all clips", np.ones_like(is_anomaly), "0.3"))
  for label, keep, colour in subsets:
    fpr, tpr, _ = roc_curve(is_anomaly[keep], scores[keep])
    auc = roc_auc_score(is_anomaly[keep], scores[keep])
    ax.plot(fpr, tpr, color=colour, label=f"{label}: AUC {100 * auc:.1f}%")
  ax.plot([0, 1], [0, 1], ":", color="0.6")
  ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
         title=f"{title}: ROC\nsource, target: the domain's normals + all anomalies")
  ax.legend(loc="lower right")
  _save(fig, path)


def plot_histograms(path, scores, is_anomaly, is_target, threshold=None, title=""):
  """Score histograms, normal vs anomalous clips, one panel per domain; the threshold marked."""
  scores = np.asarray(scores)
  is_anomaly, is_target = np.asarray(is_anomaly, bool), np.asarray(is_target, bool)
  bins = np.histogram_bin_edges(scores, bins=30)
  fig, axes = _figure(2)
  for ax, (domain, in_domain) in zip(axes, (("source", ~is_target), ("target", is_target))):
    for label, keep, colour in (("normal", in_domain & ~is_anomaly, "tab:blue"),
                                ("anomaly", in_domain & is_anomaly, "tab:red")):
      ax.hist(scores[keep], bins=bins, alpha=0.6, color=colour, label=f"{label} ({keep.sum()})")
    if threshold is not None:
      ax.axvline(threshold, color="k", linestyle="--", label="decision threshold")
    ax.set(xlabel="anomaly score", ylabel="clips", title=f"{title}: {domain} domain")
    ax.legend()
  _save(fig, path)


def _submission_rows(s):
  """Both files' text for one section, after checking everything that could make them wrong."""
  n = len(s.file_names)
  if s.scores.shape != (n,) or s.decisions.shape != (n,):
    raise ValueError(f"{s.name}: {n} file names but scores of shape {s.scores.shape} and "
                     f"decisions of shape {s.decisions.shape}")
  if n == 0:
    raise ValueError(f"{s.name}: no test clips to write")
  if len(set(s.file_names)) != n:
    raise ValueError(f"{s.name}: file names are not unique")
  bad_names = [f for f in s.file_names if not f or any(c in f for c in ',"\r\n')]
  if bad_names:
    raise ValueError(f"{s.name}: file names unusable in a CSV row: {short_list(bad_names)}")
  scores = s.scores if s.scores.dtype.kind == "f" else s.scores.astype(np.float64)
  bad = ~np.isfinite(scores)
  if np.any(bad):
    names = [s.file_names[i] for i in np.flatnonzero(bad)]
    raise ValueError(f"{s.name}: {len(names)} score(s) are NaN or Inf: {short_list(names)}")
  if not np.all((s.decisions == 0) | (s.decisions == 1)):
    raise ValueError(f"{s.name}: decisions must be 0 or 1")
  score_text = "".join(f"{f},{v}\n" for f, v in zip(s.file_names, scores))
  decision_text = "".join(f"{f},{int(d)}\n" for f, d in zip(s.file_names, s.decisions))
  return score_text, decision_text


def _read_two_columns(path, parse):
  """Rows `name,value` of a header-less CSV, with errors that name the file and line."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist")
  names, values = [], []
  with open(path, newline="", encoding="utf-8") as f:
    for line, row in enumerate(csv.reader(f), start=1):
      if not row:
        continue
      if len(row) != 2:
        raise ValueError(f"{path}, line {line}: expected 'file_name,value', got {row!r}")
      try:
        values.append(parse(row[1]))
      except ValueError:
        raise ValueError(f"{path}, line {line}: cannot read value {row[1]!r}") from None
      names.append(row[0])
  if len(set(names)) != len(names):
    raise ValueError(f"{path}: some file names appear more than once")
  return names, values


def _decision(text):
  value = int(float(text))
  if value not in (0, 1) or float(text) != value:
    raise ValueError(text)
  return value


def _figure(panels):
  """A figure outside pyplot (no global state, no display needed) with `panels` axes side by side."""
  from matplotlib.figure import Figure
  fig = Figure(figsize=(5.5 * panels, 4.5), layout="constrained")
  return fig, fig.subplots(1, panels, squeeze=False)[0]


def _save(fig, path):
  with files.atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=100)


def _pct(value):
  return "n/a" if value is None else f"{100 * value:.2f}"


def _grid(header, rows):
  """Left-aligned text columns separated by two spaces: readable in a terminal and a log."""
  widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
  line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
  return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
