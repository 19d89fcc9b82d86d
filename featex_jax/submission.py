"""Submission files in the official DCASE format, and the evaluation of any submission folder.

Submission files follow the DCASE2023 Task 2 format that nttcslab/dcase2023_task2_evaluator
reads (`read_score` in dcase2023_task2_evaluator.py): `anomaly_score_<machine>_section_<ss>_test.csv`
and `decision_result_<machine>_section_<ss>_test.csv`, rows `file_name,value`, no header.
The evaluator sorts submission and ground-truth rows by file name and pairs them by
position; here they are paired by name (a submission may use a clip's listed name or its
development-style name from ground_truth_attributes), and a mismatch is an error rather
than silently misaligned labels.

  python -m featex_jax.submission SUBMISSION_DIR --ground_truth EVALUATOR_DIR [--out results.json]

scores any system's submission folder with this project's (the official) metrics.
"""

import argparse
import csv
import dataclasses
import os
import shutil
import tempfile

import numpy as np

from featex_jax import dcase_metrics
from featex_jax import files
from featex_jax import results
from featex_jax.data import ground_truth as ground_truth_lib
from featex_jax.data.errors import DataError
from featex_jax.errors import listing


def submission_file_names(machine, section):
  ss = results.section_id(section)
  return (f"anomaly_score_{machine}_section_{ss}_test.csv", f"decision_result_{machine}_section_{ss}_test.csv")


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


def evaluate_submission(submission_dir, ground_truth_dir, max_fpr=dcase_metrics.MAX_FPR, ci95=True):
  """Existing submission files scored against the official ground truth, as the evaluator
  does: every section the ground truth lists must have both files."""
  truth = ground_truth_lib.read(ground_truth_dir)
  sections = []
  for (machine, section), table in sorted(truth.items()):
    names, scores, decisions = read_submission(submission_dir, machine, section)
    scored = results.SectionScores(machine, section, names, scores, decisions)
    sections.append(_attach_truth(scored, table, f"the ground truth in {ground_truth_dir}"))
  return results.compute(sections, max_fpr=max_fpr, ci95=ci95)


def _attach_truth(section, table, where):
  """`section` with labels and domains from one section's ground truth, paired by file name."""
  aliases = {truth.original_name: listed for listed, truth in table.items() if truth.original_name}
  names = [aliases.get(n, n) for n in section.file_names]
  missing = sorted(set(table) - set(names))
  extra = sorted(set(names) - set(table))
  if missing or extra or len(set(names)) != len(names):
    problems = []
    if extra:
      problems.append(listing(f"{len(extra)} scored file(s) not in the ground truth", extra))
    if missing:
      problems.append(listing(f"{len(missing)} ground-truth file(s) without a score", missing))
    if len(set(names)) != len(names):
      problems.append("some files are scored twice")
    raise DataError(f"{section.name}: {where} does not cover the scored files: " + "; ".join(problems))
  return dataclasses.replace(
    section,
    is_anomaly=np.array([table[n].label == "anomaly" for n in names]),
    is_target=np.array([table[n].domain == "target" for n in names]),
  )


def _submission_rows(s):
  """Both files' text for one section, after checking everything that could make them wrong."""
  n = len(s.file_names)
  if s.scores.shape != (n,) or s.decisions.shape != (n,):
    raise ValueError(
      f"{s.name}: {n} file names but scores of shape {s.scores.shape} and decisions of shape {s.decisions.shape}"
    )
  if n == 0:
    raise ValueError(f"{s.name}: no test clips to write")
  if len(set(s.file_names)) != n:
    raise ValueError(f"{s.name}: file names are not unique")
  bad_names = [f for f in s.file_names if not f or any(c in f for c in ',"\r\n')]
  if bad_names:
    raise ValueError(listing(f"{s.name}: file names unusable in a CSV row", bad_names))
  scores = s.scores if s.scores.dtype.kind == "f" else s.scores.astype(np.float64)
  bad = ~np.isfinite(scores)
  if np.any(bad):
    names = [s.file_names[i] for i in np.flatnonzero(bad)]
    raise ValueError(listing(f"{s.name}: {len(names)} score(s) are NaN or Inf", names))
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


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("submission", help="folder of anomaly_score_*.csv and decision_result_*.csv files")
  parser.add_argument("--ground_truth", required=True, help="folder holding the evaluator's ground_truth_* folders")
  parser.add_argument("--out", help="also write every figure as JSON (results.json format)")
  args = parser.parse_args(argv)
  evaluation = evaluate_submission(args.submission, args.ground_truth)
  print(results.format_table(evaluation))
  if args.out:
    results.write_results(args.out, evaluation, {"submission": args.submission, "ground_truth": args.ground_truth})


if __name__ == "__main__":
  main()
