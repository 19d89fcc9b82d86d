"""run_sweep.py: a tiny sweep (2 variants x 2 seeds) through the real command line, its tables
against every run's results.json, rerunning, command-line errors; the table functions on
hand-computed values."""

import csv
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from configs import variants as variants_lib
from featex_jax import paper_tables
from featex_jax import synthetic

REPO = pathlib.Path(__file__).resolve().parents[1]
OVERRIDES = {
  "data.clip_samples": 16000,
  "train.batch_size": 16,
  "train.epochs": 1,
  "eval.batch_size": 16,
  "eval.kmeans_clusters": 2,
  "eval.kmeans_n_init": 1,
}
VARIANTS = ("baseline", "featex_only")
AUTHORS_KEYS = {
  ("source", "auc"): "authors_auc_source",
  ("source", "pauc"): "authors_pauc_source",
  ("target", "auc"): "authors_auc_target",
  ("target", "pauc"): "authors_pauc_target",
  ("mixed", "auc"): "auc",
  ("mixed", "pauc"): "pauc",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """Development and evaluation sets, 2 machine types each, 8 training clips per type (2 steps of 16)."""
  out = tmp_path_factory.mktemp("sweep-data") / "set"
  synthetic.generate(
    out, machines=2, train_per_section=6, target_train_per_section=2, test_per_section=8, seconds=1.0, layout="both"
  )
  return out


def run_sweep(workdir, data, *extra, variants=None):
  command = [
    sys.executable,
    str(REPO / "run_sweep.py"),
    "--dataset=synthetic",
    f"--variants={variants or ','.join(VARIANTS)}",
    "--seeds=2",
    f"--workdir={workdir}",
    f"--data_dir={data / 'dev_data'}",
    f"--data_dir={data / 'eval_data'}",
    f"--ground_truth={data / 'eval_data'}",
    "--noprogress",
    *[f"--config.{k}={v}" for k, v in OVERRIDES.items()],
    *extra,
  ]
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    JAX_COMPILATION_CACHE_DIR=str(workdir.parent / "jax-cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0",
  )
  return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def swept(data, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("sweep") / "runs"
  result = run_sweep(workdir, data)
  assert result.returncode == 0, result.stdout + result.stderr
  return workdir, result.stdout


def member_dirs(workdir):
  return [workdir / v / f"member_{k}" for v in VARIANTS for k in range(2)]


def read_json(path):
  return json.loads(pathlib.Path(path).read_text())


def test_every_run_is_trained_with_the_overrides_and_evaluated_alone(swept):
  workdir, printed = swept
  for k, run in enumerate(member_dirs(workdir)):
    config = read_json(run / "config.json")
    assert config["seed"] == k % 2 and config["train"]["epochs"] == 1 and config["data"]["clip_samples"] == 16000
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["2"]  # 32 clips // 16, one epoch
    results = read_json(run / "eval" / "results.json")
    assert [m["workdir"] for m in results["metadata"]["members"]] == [str(run)]
  for variant in VARIANTS:
    members = read_json(workdir / variant / "eval" / "results.json")["metadata"]["members"]
    assert [m["workdir"] for m in members] == [str(workdir / variant / f"member_{k}") for k in range(2)]
  assert read_json(workdir / "baseline" / "member_0" / "config.json")["augment"]["featex"] is False
  assert read_json(workdir / "featex_only" / "member_0" / "config.json")["loss"]["classification_weight"] == 0.0
  for suffix in ("md", "csv", "json", "png"):
    assert (workdir / "tables" / f"table.{suffix}").stat().st_size > 0
  assert (workdir / "tables" / "table.md").read_text().strip() in printed


def split_hmean(results, machines, key):
  sections = [s["metrics"] for s in results["sections"] if s["machine"] in machines]
  assert len(sections) == 2
  return scipy.stats.hmean([s[key] for s in sections])


def split_official(results, machines):
  sections = [s["metrics"] for s in results["sections"] if s["machine"] in machines]
  values = [s[k] for k in ("auc_source", "auc_target", "pauc") for s in sections]
  return scipy.stats.hmean(np.maximum(values, sys.float_info.epsilon))


def test_every_figure_is_the_runs_results_json_averaged_over_seeds(swept, data):
  workdir, _ = swept
  table = read_json(workdir / "tables" / "table.json")
  machines = {split: {p.name for p in (data / f"{split}_data").iterdir() if p.is_dir()} for split in ("dev", "eval")}
  assert [(r["split"], r["domain"]) for r in table["rows"]] == [
    (s, d) for s in ("dev", "eval") for d in ("source", "target", "mixed")
  ]
  csv_rows = {
    (r["split"], r["domain"], r["variant"], r["figure"]): r
    for r in csv.DictReader(open(workdir / "tables" / "table.csv"))
  }
  markdown = (workdir / "tables" / "table.md").read_text()
  for variant in VARIANTS:
    runs = [read_json(workdir / variant / f"member_{k}" / "eval" / "results.json") for k in range(2)]
    ensemble = read_json(workdir / variant / "eval" / "results.json")
    for row in table["rows"]:
      for figure in ("auc", "pauc"):
        key = AUTHORS_KEYS[(row["domain"], figure)]
        values = [split_hmean(r, machines[row["split"]], key) for r in runs]
        cell = row["cells"][variant][figure]
        assert cell["values"] == pytest.approx(values, abs=1e-12)
        assert cell["mean"] == pytest.approx(np.mean(values), abs=1e-12)
        assert cell["std"] == pytest.approx(np.std(values, ddof=0), abs=1e-12)
        assert cell["ensemble"] == pytest.approx(split_hmean(ensemble, machines[row["split"]], key), abs=1e-12)
        line = csv_rows[(row["split"], row["domain"], variant, paper_tables.FIGURE_NAMES[figure])]
        assert float(line["mean"]) == pytest.approx(100 * np.mean(values), abs=1e-4)
        assert f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}" in markdown
    for official in table["official"]:
      values = [split_official(r, machines[official["split"]]) for r in runs]
      cell = official["cells"][variant]
      assert cell["mean"] == pytest.approx(np.mean(values), abs=1e-12)
      assert cell["std"] == pytest.approx(np.std(values), abs=1e-12)
      assert cell["ensemble"] == pytest.approx(split_official(ensemble, machines[official["split"]]), abs=1e-12)
  cost = table["cost"]
  assert [(c["variant"], c["member"]) for c in cost["runs"]] == [(v, k) for v in VARIANTS for k in range(2)]
  assert all(c["train_clips"] == 32 and c["train_seconds"] > 0 and c["eval_seconds"] > 0 for c in cost["runs"])
  assert cost["total"]["train_clips"] == 128
  assert cost["total"]["seconds"] == pytest.approx(
    sum(c["seconds"] for c in cost["runs"]) + sum(c["eval_seconds"] for c in cost["ensembles"])
  )


def snapshot(workdir):
  """Modification times of everything training and evaluation write."""
  paths = [
    p
    for run in member_dirs(workdir)
    for p in (run / "checkpoints" / "2", run / "metrics.jsonl", run / "eval" / "results.json")
  ]
  paths += [workdir / v / "eval" / "results.json" for v in VARIANTS]
  return {p: p.stat().st_mtime_ns for p in paths}


def test_rerun_skips_what_is_done_and_redoes_only_what_is_missing(swept, data):
  workdir, _ = swept
  before = snapshot(workdir)
  table = read_json(workdir / "tables" / "table.json")
  again = run_sweep(workdir, data)
  assert again.returncode == 0, again.stdout + again.stderr
  assert again.stdout.count("trained and evaluated, skipped") == 4 and ": training" not in again.stdout
  assert snapshot(workdir) == before
  assert read_json(workdir / "tables" / "table.json") == table
  lost = workdir / "baseline" / "member_1" / "eval" / "results.json"
  lost.unlink()
  again = run_sweep(workdir, data)
  assert again.returncode == 0, again.stdout + again.stderr
  assert "baseline/member_1: evaluating" in again.stdout and ": training" not in again.stdout
  after = snapshot(workdir)
  assert {p for p in before if after[p] != before[p]} == {lost}
  assert read_json(workdir / "tables" / "table.json")["rows"] == table["rows"]


def test_unknown_variant_is_a_one_line_error(tmp_path, data):
  result = run_sweep(tmp_path / "runs", data, variants="baseline,nosuch")
  assert result.returncode != 0
  assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
  assert "unknown variant(s) nosuch" in result.stderr and "proposed" in result.stderr
  assert not (tmp_path / "runs").exists()


def test_variant_selection():
  assert variants_lib.select(table=1) == (
    "baseline",
    "statex_only",
    "featex_only",
    "regular_statex",
    "regular_featex",
    "proposed",
  )
  assert variants_lib.select(table=2, spec_given=False) == variants_lib.PAPER_TABLES[2]
  assert set(variants_lib.select("all")) == set(variants_lib.names()) and len(variants_lib.names()) == 9
  assert variants_lib.select(" proposed,baseline ") == ("proposed", "baseline")
  for spec, table, message in (
    ("baseline,nosuch", None, "unknown variant"),
    ("baseline", 1, "not both"),
    ("all", 3, "no table 3"),
    ("baseline,baseline", None, "twice"),
  ):
    with pytest.raises(ValueError, match=message):
      variants_lib.select(spec, table)


def test_split_of_a_section_from_its_test_file_names():
  assert (
    paper_tables.section_split(
      ["section_00_source_test_normal_0000_a_1.wav", "section_00_target_test_anomaly_0001_a_2.wav"]
    )
    == "dev"
  )
  assert paper_tables.section_split(["section_00_0000.wav", "section_00_0001.wav"]) == "eval"
  assert paper_tables.section_split(["normal_id_00_00000000.wav"]) == "dev"  # DCASE2020 development
  assert paper_tables.section_split(["id_05_00000000.wav"]) == "eval"  # DCASE2020 evaluation
  with pytest.raises(ValueError, match="some names carry labels"):
    paper_tables.section_split(["section_00_0000.wav", "section_00_source_test_normal_0000_a_1.wav"])


def section(machine, auc_source, auc_target, authors):
  """A results.json section: official AUC-S and AUC-T, and (authors' AUC-S, pAUC-S, AUC-T, pAUC-T, AUC, pAUC)."""
  m = dict(
    n_normal_source=1,
    n_anomaly_source=1,
    n_normal_target=1,
    n_anomaly_target=1,
    auc=authors[4],
    auc_source=auc_source,
    auc_target=auc_target,
    pauc=authors[5],
  )
  m.update(zip(("authors_auc_source", "authors_pauc_source", "authors_auc_target", "authors_pauc_target"), authors[:4]))
  return {"machine": machine, "section": "00", "metrics": m}


def test_run_figures_are_harmonic_means_over_each_splits_sections():
  results = {
    "sections": [
      section("a", 0.8, 0.6, (0.5, 0.4, 0.8, 0.6, 0.75, 0.5)),
      section("b", 0.4, 1.0, (1.0, 0.6, 0.4, 0.3, 0.5, 1.0)),
      section("c", 0.9, 0.9, (0.9, 0.9, 0.9, 0.9, 0.9, 0.9)),
      {"machine": "d", "section": "00", "metrics": None},
    ]
  }
  splits = {("a", "00"): "dev", ("b", "00"): "dev", ("c", "00"): "eval", ("d", "00"): "eval"}
  figures = paper_tables.run_figures(results, splits)
  assert figures["dev"]["source"]["auc"] == pytest.approx(2 / (1 / 0.5 + 1 / 1.0))  # 0.6667
  assert figures["dev"]["source"]["pauc"] == pytest.approx(0.48)  # 2 / (1/0.4 + 1/0.6)
  assert figures["dev"]["target"]["auc"] == pytest.approx(2 / (1 / 0.8 + 1 / 0.4))  # 0.5333
  assert figures["dev"]["target"]["pauc"] == pytest.approx(0.4)  # 2 / (1/0.6 + 1/0.3)
  assert figures["dev"]["mixed"]["auc"] == pytest.approx(0.6)  # 2 / (1/0.75 + 1/0.5)
  assert figures["dev"]["mixed"]["pauc"] == pytest.approx(2 / 3)  # 2 / (1/0.5 + 1/1)
  # official: hmean of AUC-S, AUC-T and pAUC of both sections = 6 / (1/.8 + 1/.4 + 1/.6 + 1/1 + 1/.5 + 1/1)
  assert figures["dev"]["official"] == pytest.approx(6 / 9.4166666666)
  assert figures["eval"]["mixed"]["auc"] == pytest.approx(0.9) and figures["eval"]["official"] == pytest.approx(0.9)


def test_mean_and_population_std_over_seeds():
  mean, std = paper_tables.mean_std([0.7, 0.8, 0.9])
  assert mean == pytest.approx(0.8) and std == pytest.approx(math.sqrt(0.02 / 3))  # ddof=0, as np.std
  assert paper_tables.mean_std([0.7, None]) is None and paper_tables.mean_std([]) is None


def figures(value, official=0.5):
  return {"dev": {d: {"auc": value, "pauc": value / 2} for d in paper_tables.DOMAINS} | {"official": official}}


def test_table_cells_markdown_and_csv():
  runs = {"baseline": [figures(0.6), figures(0.8)], "proposed": [figures(0.7, 0.6)]}
  ensembles = {"baseline": figures(0.75), "proposed": None}
  table = paper_tables.build("dcase2023", ["baseline", "proposed"], variants_lib.TITLES, runs, ensembles, seeds=2)
  assert [(r["split"], r["domain"]) for r in table["rows"]] == [("dev", "source"), ("dev", "target"), ("dev", "mixed")]
  cell = table["rows"][0]["cells"]["baseline"]["auc"]
  assert (cell["mean"], cell["std"], cell["n"], cell["ensemble"]) == (pytest.approx(0.7), pytest.approx(0.1), 2, 0.75)
  assert table["rows"][2]["cells"]["baseline"]["pauc"]["mean"] == pytest.approx(0.35)
  assert table["rows"][0]["cells"]["proposed"]["auc"]["ensemble"] is None
  assert table["official"][0]["cells"]["proposed"]["mean"] == 0.6
  markdown = paper_tables.format_markdown(table)
  assert (
    "| dcase2023 | dev | source | 70.00 ± 10.00 | 35.00 ± 5.00 | 75.00 | 37.50 | 70.00 ± 0.00 (1 run) |" in markdown
  )
  assert "| proposed | 60.00 ± 0.00 (1 run) | n/a |" in markdown
  lines = list(csv.DictReader(paper_tables.csv_text(table).splitlines()))
  assert len(lines) == 3 * 2 * 2 + 2
  first = lines[0]
  assert (first["variant"], first["figure"], first["mean"], first["std"], first["n_seeds"], first["ensemble"]) == (
    "baseline",
    "AUC",
    "70.0000",
    "10.0000",
    "2",
    "75.0000",
  )


def test_cost_summary_per_run_and_total():
  cost = paper_tables.cost_summary(
    [
      {"variant": "a", "member": 0, "train_seconds": 10.0, "train_clips": 100, "eval_seconds": 2.0},
      {"variant": "a", "member": 1, "train_seconds": 30.0, "train_clips": 100, "eval_seconds": 4.0},
    ],
    [{"variant": "a", "eval_seconds": 5.0}],
    "1 x cpu",
  )
  assert [c["train_clips_per_s"] for c in cost["runs"]] == [10.0, pytest.approx(100 / 30)]
  assert [c["seconds"] for c in cost["runs"]] == [12.0, 34.0]
  assert cost["total"] == {
    "seconds": 51.0,
    "train_seconds": 40.0,
    "train_clips": 200,
    "train_clips_per_s": 5.0,
    "eval_seconds": 11.0,
  }
  footer = paper_tables.format_cost(cost)
  assert "wall time 51 s" in footer and "| total | 40.0 | 200 | 5.0 | 11.0 | 51.0 |" in footer
