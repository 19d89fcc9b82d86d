"""The paper's tables from evaluated runs: pure functions from results.json contents to rows,
and the rows as Markdown, CSV, JSON and a bar plot.

Layout of Tables 1 and 2 of arXiv:2312.09578: one row per (dataset, split, domain); per
variant an AUC and a pAUC column, each the harmonic mean over the split's sections (one per
machine type in DCASE2023) of the authors' per-domain figure (`dcase_metrics.authors_means`, the
"EVALUATION SET" block of their script): source/target = that domain's own normal and
anomalous clips, mixed = all clips of the section; shown as the arithmetic mean +- standard
deviation over independent trials. The std is numpy's default, ddof=0 (the population std),
as the authors' script prints it (`np.std(final_results, axis=0)`). Beside each variant, its
ensemble (the trials' anomaly scores averaged) and the official DCASE score of each split.
"""

import csv
import io

import numpy as np

from featex_jax import dcase_metrics
from featex_jax import files
from featex_jax.data import names

SPLITS = ("dev", "eval")
DOMAINS = ("source", "target", "mixed")
FIGURES = ("auc", "pauc")
FIGURE_NAMES = {"auc": "AUC", "pauc": "pAUC"}
# (domain, figure) -> the key of dcase_metrics.authors_means
_AUTHORS_KEYS = {
  ("source", "auc"): "authors_auc_source",
  ("source", "pauc"): "authors_pauc_source",
  ("target", "auc"): "authors_auc_target",
  ("target", "pauc"): "authors_pauc_target",
  ("mixed", "auc"): "auc",
  ("mixed", "pauc"): "pauc",
}
STD = "population standard deviation (numpy ddof=0), as the authors' script (np.std)"
DEFINITIONS = {
  "auc/pauc": "harmonic mean over the split's sections (machine types) of the authors' per-domain "
  "figure: source/target = the domain's own normal and anomalous clips, mixed = all clips; "
  "plain scipy hmean, as their script (dcase_metrics.authors_means)",
  "mean/std": "over the trials (seeds), each evaluated alone; std: " + STD,
  "ensemble": "the trials' anomaly scores averaged (run_eval.py with every trial), evaluated once",
  "official": "official DCASE score of the split: harmonic mean of every section's AUC(source), "
  "AUC(target) and pAUC (official definitions: a domain's normals + all anomalies)",
  "split": "dev: test file names carry their labels; eval: anonymous names, labels from ground-truth CSVs",
}


def section_split(file_names):
  """'dev' when a section's test file names state their labels (section_00_source_test_normal_0000_...),
  'eval' when they hide them (section_00_0000.wav, labelled by the ground-truth CSVs)."""
  labelled = {names.parse(name).label is not None for name in file_names}
  if len(labelled) != 1:
    raise ValueError(
      f"test files {sorted(file_names)[:3]}...: some names carry labels and some do not; "
      "a section is either development (labelled names) or evaluation (anonymous names)"
    )
  return "dev" if labelled.pop() else "eval"


def section_splits(test_clips):
  """{(machine, section): 'dev' | 'eval'} of the test clips' sections (layout.Clip objects)."""
  by_group = {}
  for clip in test_clips:
    by_group.setdefault(clip.group, []).append(clip.file_name)
  return {group: section_split(file_names) for group, file_names in by_group.items()}


def run_figures(results, splits):
  """{split: {domain: {figure: value}, 'official': score}} of one run from its results.json dict.

  Sections without metrics (no ground truth) are left out; a split without any is absent.
  A value is None where the authors' figure is undefined (a domain without its own anomalies).
  """
  by_split = {}
  for section in results["sections"]:
    if section["metrics"] is not None:
      split = splits[(section["machine"], section["section"])]
      by_split.setdefault(split, []).append(dcase_metrics.SectionMetrics(**section["metrics"]))
  figures = {}
  for split in [s for s in SPLITS if s in by_split]:
    authors = dcase_metrics.authors_means(by_split[split])
    figures[split] = {
      domain: {figure: authors[_AUTHORS_KEYS[(domain, figure)]] for figure in FIGURES} for domain in DOMAINS
    }
    figures[split]["official"] = dcase_metrics.official_score(by_split[split])
  return figures


def mean_std(values):
  """(mean, std) of the trials' values, std with ddof=0 as the authors; None when any is missing."""
  if not values or any(v is None for v in values):
    return None
  values = np.asarray(values, dtype=np.float64)
  return float(values.mean()), float(values.std())


def _cell(values, ensemble):
  summary = mean_std(values)
  return {
    "mean": None if summary is None else summary[0],
    "std": None if summary is None else summary[1],
    "n": len(values),
    "values": list(values),
    "ensemble": ensemble,
  }


def _lookup(figures, *keys):
  for key in keys:
    if figures is None or key not in figures:
      return None
    figures = figures[key]
  return figures


def build(dataset, variants, titles, runs, ensembles, seeds):
  """The whole table as one JSON-able dict.

  runs: {variant: [run_figures(...) of each evaluated trial]}; ensembles: {variant:
  run_figures(...) of its ensemble, or None}; seeds: the trials asked for per variant.
  """
  present = [s for s in SPLITS if any(s in f for fs in runs.values() for f in fs)]
  rows, official = [], []
  for split in present:
    for domain in DOMAINS:
      cells = {
        v: {
          figure: _cell(
            [_lookup(f, split, domain, figure) for f in runs.get(v, [])],
            _lookup(ensembles.get(v), split, domain, figure),
          )
          for figure in FIGURES
        }
        for v in variants
      }
      rows.append({"dataset": dataset, "split": split, "domain": domain, "cells": cells})
    official.append(
      {
        "dataset": dataset,
        "split": split,
        "cells": {
          v: _cell(
            [_lookup(f, split, "official") for f in runs.get(v, [])], _lookup(ensembles.get(v), split, "official")
          )
          for v in variants
        },
      }
    )
  return {
    "dataset": dataset,
    "variants": list(variants),
    "titles": {v: titles.get(v, v) for v in variants},
    "seeds": seeds,
    "std": STD,
    "definitions": DEFINITIONS,
    "rows": rows,
    "official": official,
  }


def cost_summary(run_costs, ensemble_costs, device):
  """Per-run and total wall time and training clips/s from the sweep's records."""

  def rate(clips, seconds):
    return clips / seconds if seconds else None

  runs = [
    dict(
      c, seconds=c["train_seconds"] + c["eval_seconds"], train_clips_per_s=rate(c["train_clips"], c["train_seconds"])
    )
    for c in run_costs
  ]
  train_seconds = sum(c["train_seconds"] for c in runs)
  train_clips = sum(c["train_clips"] for c in runs)
  eval_seconds = sum(c["eval_seconds"] for c in runs) + sum(c["eval_seconds"] for c in ensemble_costs)
  return {
    "device": device,
    "runs": runs,
    "ensembles": list(ensemble_costs),
    "total": {
      "seconds": train_seconds + eval_seconds,
      "train_seconds": train_seconds,
      "train_clips": train_clips,
      "train_clips_per_s": rate(train_clips, train_seconds),
      "eval_seconds": eval_seconds,
    },
  }


def _pct(value):
  return "n/a" if value is None else f"{100 * value:.2f}"


def _mean_std_text(cell):
  if cell["mean"] is None:
    return "n/a"
  text = f"{100 * cell['mean']:.2f} ± {100 * cell['std']:.2f}"
  return text if cell["n"] > 1 else text + " (1 run)"


def _markdown_grid(header, rows):
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def format_markdown(table, cost=None):
  """The paper's layout, then the official scores and the footer (definitions, cost)."""
  variants, titles = table["variants"], table["titles"]
  header = ["dataset", "split", "domain"]
  for v in variants:
    header += [f"{titles[v]} {FIGURE_NAMES[f]}" for f in FIGURES]
    header += [f"{titles[v]} ensemble {FIGURE_NAMES[f]}" for f in FIGURES]
  rows = []
  for row in table["rows"]:
    cells = [row["dataset"], row["split"], row["domain"]]
    for v in variants:
      cells += [_mean_std_text(row["cells"][v][f]) for f in FIGURES]
      cells += [_pct(row["cells"][v][f]["ensemble"]) for f in FIGURES]
    rows.append(cells)
  official_header = ["variant"] + [f"official {o['split']}" for o in table["official"]]
  official_header += [f"official {o['split']} ensemble" for o in table["official"]]
  official_rows = [
    [titles[v]]
    + [_mean_std_text(o["cells"][v]) for o in table["official"]]
    + [_pct(o["cells"][v]["ensemble"]) for o in table["official"]]
    for v in variants
  ]
  text = [
    f"Harmonic means of AUC and pAUC (%) over the machine types, mean ± std over {table['seeds']} "
    "seed(s), each run evaluated alone; ensemble: the seeds' anomaly scores averaged.",
    "",
    _markdown_grid(header, rows),
    "",
    "Official DCASE score (%) per split, mean ± std over the seeds, and of the ensemble.",
    "",
    _markdown_grid(official_header, official_rows),
    "",
    "Definitions:",
  ]
  text += [f"- {name}: {meaning}" for name, meaning in table["definitions"].items()]
  if cost is not None:
    text += ["", format_cost(cost)]
  return "\n".join(text) + "\n"


def format_cost(cost):
  """The cost footer: per run and in total, wall time and training clips/s."""

  def number(value, digits=1):
    return "n/a" if value is None else f"{value:.{digits}f}"

  total = cost["total"]
  header = ["run", "train s", "train clips", "train clips/s", "eval s", "total s"]
  rows = [
    [
      f"{c['variant']}/member_{c['member']}",
      number(c["train_seconds"]),
      c["train_clips"],
      number(c["train_clips_per_s"]),
      number(c["eval_seconds"]),
      number(c["seconds"]),
    ]
    for c in cost["runs"]
  ]
  rows += [
    [f"{c['variant']} ensemble", "", "", "", number(c["eval_seconds"]), number(c["eval_seconds"])]
    for c in cost["ensembles"]
  ]
  rows.append(
    [
      "total",
      number(total["train_seconds"]),
      total["train_clips"],
      number(total["train_clips_per_s"]),
      number(total["eval_seconds"]),
      number(total["seconds"]),
    ]
  )
  return (
    f"Cost on {cost['device']}: wall time {number(total['seconds'], 0)} s "
    f"(training {number(total['train_seconds'], 0)} s at {number(total['train_clips_per_s'])} clips/s, "
    f"evaluation {number(total['eval_seconds'], 0)} s). Times of the sweep invocations that finished "
    "each step; training includes compilation.\n\n" + _markdown_grid(header, rows)
  )


def csv_text(table):
  """One line per (dataset, split, domain or 'all', variant, figure); figures in % with 4 decimals."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["dataset", "split", "domain", "variant", "figure", "mean", "std", "n_seeds", "ensemble"])

  def percent(value):
    return "" if value is None else f"{100 * value:.4f}"

  def write(row, domain, variant, figure, cell):
    writer.writerow(
      [
        row["dataset"],
        row["split"],
        domain,
        variant,
        figure,
        percent(cell["mean"]),
        percent(cell["std"]),
        cell["n"],
        percent(cell["ensemble"]),
      ]
    )

  for row in table["rows"]:
    for v in table["variants"]:
      for figure in FIGURES:
        write(row, row["domain"], v, FIGURE_NAMES[figure], row["cells"][v][figure])
  for row in table["official"]:
    for v in table["variants"]:
      write(row, "all", v, "official score", row["cells"][v])
  return out.getvalue()


def write_plot(path, table):
  """Bars: one per variant in each (split, domain) group, the std as error bars, the ensemble as a diamond."""
  from matplotlib.figure import Figure

  splits = [o["split"] for o in table["official"]]
  variants = table["variants"]
  fig = Figure(
    figsize=(3.0 + 2.0 * (1.5 + 0.45 * len(variants)), 3.0 * max(len(splits), 1) + 0.5), layout="constrained"
  )
  fig.suptitle(
    f"{table['dataset']}: harmonic means over machine types, mean ± std over {table['seeds']} seed(s); ◆ ensemble"
  )
  axes = fig.subplots(max(len(splits), 1), len(FIGURES), squeeze=False)
  width = 0.8 / len(variants)
  x = np.arange(len(DOMAINS))
  for row_axes, split in zip(axes, splits):
    rows = {r["domain"]: r for r in table["rows"] if r["split"] == split}
    for ax, figure in zip(row_axes, FIGURES):
      for i, v in enumerate(variants):
        cells = [rows[d]["cells"][v][figure] for d in DOMAINS]
        means = [100 * c["mean"] if c["mean"] is not None else np.nan for c in cells]
        stds = [100 * c["std"] if c["std"] is not None else 0.0 for c in cells]
        positions = x - 0.4 + width * (i + 0.5)
        ax.bar(positions, means, width, yerr=stds, capsize=3, label=table["titles"][v], color=f"C{i}")
        ensemble = [100 * c["ensemble"] if c["ensemble"] is not None else np.nan for c in cells]
        ax.plot(positions, ensemble, "D", color="k", markersize=4, label="ensemble" if i == 0 else None)
      ax.set(
        xticks=x, xticklabels=DOMAINS, ylabel=f"{FIGURE_NAMES[figure]} (%)", title=f"{split}: {FIGURE_NAMES[figure]}"
      )
      means = [r["cells"][v][figure]["mean"] for r in rows.values() for v in variants]
      if any(m is not None for m in means):  # bars from just below the lowest: differences stay visible
        ax.set_ylim(bottom=max(0.0, 100 * min(m for m in means if m is not None) - 10))
  axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
  with files.atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=100)


def write_all(out_dir, stem, table, cost=None):
  """<stem>.md, .csv, .json and .png in out_dir (each written atomically); returns the Markdown."""
  markdown = format_markdown(table, cost)
  files.write_text(f"{out_dir}/{stem}.md", markdown)
  files.write_text(f"{out_dir}/{stem}.csv", csv_text(table))
  files.write_json(f"{out_dir}/{stem}.json", dict(table, cost=cost))
  if table["official"]:
    write_plot(f"{out_dir}/{stem}.png", table)
  return markdown
