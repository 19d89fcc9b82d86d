"""Submission files, evaluation against official-format ground truth, results.json, table, plots."""
import json
import os

import numpy as np
import pytest

from featex_jax import metrics
from featex_jax import report


def _labelled(rng, machine, section, n=40, names=None):
  is_anomaly = np.arange(n) % 2 == 1
  is_target = np.arange(n) % 4 >= 2
  scores = (rng.normal(size=n) + is_anomaly).astype(np.float32)
  names = names or [f"section_{section:02d}_{i:04d}.wav" for i in range(n)]
  return report.SectionScores(machine, section, names, scores, (scores > 0.8).astype(int),
                              is_anomaly, is_target, threshold=0.8)


def _listing(directory):
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_submission_files_have_the_official_names_and_rows(tmp_path):
  paths = report.write_submission(tmp_path, "fan", 0, ["/data/fan/test/b.wav", "a.wav"],
                                  np.array([0.5, 0.25], np.float32), [1, 0])
  assert [os.path.basename(p) for p in paths] == [
      "anomaly_score_fan_section_00_test.csv", "decision_result_fan_section_00_test.csv"]
  assert (tmp_path / "anomaly_score_fan_section_00_test.csv").read_text() == "b.wav,0.5\na.wav,0.25\n"
  assert (tmp_path / "decision_result_fan_section_00_test.csv").read_text() == "b.wav,1\na.wav,0\n"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_submission_round_trip_is_exact(tmp_path, dtype):
  rng = np.random.default_rng(0)
  names = [f"section_01_{i:04d}.wav" for i in rng.permutation(50)]
  scores = rng.normal(size=50).astype(dtype)
  decisions = rng.integers(0, 2, 50)
  report.write_submission(tmp_path, "ToyCar", "section_01", names, scores, decisions)
  read_names, read_scores, read_decisions = report.read_submission(tmp_path, "ToyCar", 1)
  assert read_names == names
  np.testing.assert_array_equal(read_scores.astype(dtype), scores)
  np.testing.assert_array_equal(read_decisions, decisions)


def test_section_ids():
  assert [report.section_id(s) for s in (0, "3", "00", "section_05")] == ["00", "03", "00", "05"]
  with pytest.raises(ValueError, match="section must be a number"):
    report.section_id("section_ab")


def test_a_bad_section_leaves_no_file_behind(tmp_path):
  rng = np.random.default_rng(1)
  (tmp_path / "anomaly_score_fan_section_00_test.csv").write_text("old\n")
  good = _labelled(rng, "fan", 0)
  scores = good.scores.copy()
  scores[3] = np.nan
  bad = report.SectionScores("pump", 0, good.file_names, scores, good.decisions)
  with pytest.raises(ValueError, match=r"pump section 00: 1 score\(s\) are NaN or Inf: section_00_0003\.wav"):
    report.write_submissions(tmp_path, [good, bad])
  assert _listing(tmp_path) == ["anomaly_score_fan_section_00_test.csv"]
  assert (tmp_path / "anomaly_score_fan_section_00_test.csv").read_text() == "old\n"


def test_a_failure_while_writing_leaves_no_file_behind(tmp_path, monkeypatch):
  rng = np.random.default_rng(2)
  sections = [_labelled(rng, "fan", 0), _labelled(rng, "pump", 0)]
  real_write_text, calls = report.files.write_text, []

  def failing_write_text(path, text):
    calls.append(path)
    if len(calls) == 3:
      raise OSError("disk full")
    real_write_text(path, text)

  monkeypatch.setattr(report.files, "write_text", failing_write_text)
  with pytest.raises(OSError, match="disk full"):
    report.write_submissions(tmp_path, sections)
  assert _listing(tmp_path) == []


@pytest.mark.parametrize("change, message", [
    (dict(file_names=["a.wav", "a.wav"]), "not unique"),
    (dict(file_names=["a,b.wav", "c.wav"]), "unusable in a CSV row"),
    (dict(decisions=[0, 2]), "decisions must be 0 or 1"),
    (dict(scores=[0.1]), "2 file names but scores of shape"),
])
def test_invalid_submissions_are_refused(tmp_path, change, message):
  fields = dict(machine="fan", section=0, file_names=["a.wav", "c.wav"], scores=[0.1, 0.2], decisions=[0, 1])
  fields.update(change)
  with pytest.raises(ValueError, match=message):
    report.write_submissions(tmp_path, [report.SectionScores(**fields)])
  assert _listing(tmp_path) == []


def _write_ground_truth(root, machine, section, names, is_anomaly, is_target, full_names=None):
  """The official evaluator's three folders, rows in its format."""
  file = f"ground_truth_{machine}_section_{section:02d}_test.csv"
  for folder, values in (("ground_truth_data", is_anomaly), ("ground_truth_domain", is_target)):
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / file).write_text("".join(f"{n},{int(v)}\n" for n, v in zip(names, values)))
  if full_names is not None:
    (root / "ground_truth_attributes").mkdir(parents=True, exist_ok=True)
    (root / "ground_truth_attributes" / file).write_text(
        "".join(f"{n},{f[:-len('.wav')]}\n" for n, f in zip(names, full_names)))


def _full_name(i, anomaly, target):
  domain = "target" if target else "source"
  label = "anomaly" if anomaly else "normal"
  return f"section_00_{domain}_test_{label}_{i:04d}_car_A1_spd_3_mic_1.wav"


def test_submission_files_evaluated_against_official_ground_truth(tmp_path):
  rng = np.random.default_rng(3)
  truth, submission = tmp_path / "truth", tmp_path / "team"
  sections = [_labelled(rng, "ToyDrone", 0), _labelled(rng, "bandsaw", 0, n=30)]
  for s in sections:
    full = [_full_name(i, a, t) for i, (a, t) in enumerate(zip(s.is_anomaly, s.is_target))]
    _write_ground_truth(truth, s.machine, 0, s.file_names, s.is_anomaly, s.is_target, full)
  # ToyDrone's submission uses the full (de-anonymised) names, bandsaw's the listed ones; both shuffled.
  drone, saw = sections
  order = rng.permutation(len(drone.file_names))
  full = [_full_name(i, a, t) for i, (a, t) in enumerate(zip(drone.is_anomaly, drone.is_target))]
  report.write_submission(submission, "ToyDrone", 0, [full[i] for i in order], drone.scores[order],
                          drone.decisions[order])
  order = rng.permutation(len(saw.file_names))
  report.write_submission(submission, "bandsaw", 0, [saw.file_names[i] for i in order],
                          saw.scores[order], saw.decisions[order])

  evaluation = report.evaluate_submission(submission, truth, ci95=False)
  for s in sections:
    expected = metrics.section_metrics(s.scores, s.is_anomaly, s.is_target, s.decisions)
    assert evaluation.metrics[(s.machine, "00")] == expected
  direct = report.evaluate(sections, ci95=False)
  assert evaluation.summary == direct.summary


def test_ground_truth_that_does_not_cover_the_files_is_an_error(tmp_path):
  rng = np.random.default_rng(4)
  s = _labelled(rng, "fan", 0, n=8)
  _write_ground_truth(tmp_path / "truth", "fan", 0, s.file_names[:-1], s.is_anomaly[:-1], s.is_target[:-1])
  report.write_submissions(tmp_path / "team", [s])
  not_covered = r"fan section 00: .* 1 scored file\(s\) not in the ground truth: section_00_0007\.wav"
  with pytest.raises(ValueError, match=not_covered):
    report.evaluate_submission(tmp_path / "team", tmp_path / "truth")
  for machine in ("fan", "pump"):  # fan now covered; pump has ground truth but no submission
    _write_ground_truth(tmp_path / "truth", machine, 0, s.file_names, s.is_anomaly, s.is_target)
  with pytest.raises(FileNotFoundError, match="anomaly_score_pump_section_00_test.csv"):
    report.evaluate_submission(tmp_path / "team", tmp_path / "truth")
  with pytest.raises(FileNotFoundError, match="ground_truth_data"):
    report.evaluate_submission(tmp_path / "team", tmp_path / "elsewhere")


def test_read_ground_truth_pairs_labels_and_domains_by_name(tmp_path):
  names = ["section_00_0001.wav", "section_00_0000.wav"]
  _write_ground_truth(tmp_path, "fan", 0, names, [1, 0], [0, 1])
  # Domain file in another row order: pairing must go by name.
  (tmp_path / "ground_truth_domain" / "ground_truth_fan_section_00_test.csv").write_text(
      "section_00_0000.wav,1\nsection_00_0001.wav,0\n")
  truth = report.read_ground_truth(tmp_path, "fan", "00")
  assert truth.file_names == tuple(names)
  np.testing.assert_array_equal(truth.is_anomaly, [True, False])
  np.testing.assert_array_equal(truth.is_target, [False, True])
  assert report.ground_truth_sections(tmp_path) == [("fan", "00")]
  (tmp_path / "ground_truth_data" / "ground_truth_fan_section_00_test.csv").write_text("a.wav,1\nb.wav,x\n")
  with pytest.raises(ValueError, match=r"fan_section_00_test\.csv, line 2: cannot read value 'x'"):
    report.read_ground_truth(tmp_path, "fan", 0)


def _evaluation(ci95=False):
  rng = np.random.default_rng(5)
  unlabelled = report.SectionScores("valve", 1, [f"section_01_{i:04d}.wav" for i in range(6)],
                                    np.arange(6.0), np.zeros(6, int))
  sections = [_labelled(rng, "fan", 0), _labelled(rng, "fan", 1), _labelled(rng, "pump", 0), unlabelled]
  return report.evaluate(sections, ci95=ci95)


def test_results_json_holds_every_figure_and_the_metadata(tmp_path):
  evaluation = _evaluation(ci95=True)
  report.write_results(tmp_path / "results.json", evaluation,
                       metadata={"checkpoint_step": 120, "data_roots": ["/data/dev"]})
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["metadata"] == {"checkpoint_step": 120, "data_roots": ["/data/dev"]}
  assert results["summary"]["official_score"] == pytest.approx(evaluation.summary["official_score"])
  assert results["summary"]["official_score_ci95"] > 0
  assert set(results["summary"]["machines"]) == {"fan", "pump"}
  assert results["summary"]["not_computed"] == [["valve", "01"]]
  by_name = {(s["machine"], s["section"]): s for s in results["sections"]}
  fan = evaluation.metrics[("fan", "01")]
  assert by_name[("fan", "01")]["metrics"]["auc_target"] == pytest.approx(fan.auc_target)
  assert by_name[("fan", "01")]["metrics"]["authors_auc_target"] == pytest.approx(fan.authors_auc_target)
  assert by_name[("fan", "01")]["threshold"] == 0.8
  assert by_name[("valve", "01")]["metrics_computed"] is False
  assert by_name[("valve", "01")]["metrics"] is None


def test_table_shows_sections_means_official_score_and_unlabelled_sections():
  evaluation = _evaluation()
  table = report.format_table(evaluation)
  fan = evaluation.metrics[("fan", "00")]
  assert f"fan      00   {100 * fan.auc_source:.2f}  {100 * fan.auc_target:.2f}" in table
  assert f"Official score: {100 * evaluation.summary['official_score']:.2f}" in table
  assert "Authors' per-domain figures" in table
  assert "Metrics not computed (no ground truth) for 1 section(s): valve section 01" in table


def test_table_of_an_unlabelled_set_only_says_so():
  unlabelled = report.SectionScores("valve", 0, ["a.wav", "b.wav"], [0.1, 0.2], [0, 1])
  table = report.format_table(report.evaluate([unlabelled]))
  assert table == "Metrics not computed (no ground truth) for 1 section(s): valve section 00\n"


def test_plots_are_written_for_labelled_sections_as_png(tmp_path):
  evaluation = _evaluation()
  labelled_and_unlabelled = [evaluation.sections[0], evaluation.sections[-1]]
  paths = report.write_plots(tmp_path / "plots", report.evaluate(labelled_and_unlabelled, ci95=False))
  assert sorted(os.path.basename(p) for p in paths) == [
      "histogram_fan_section_00.png", "roc_fan_section_00.png"]
  for path in paths:
    with open(path, "rb") as f:
      data = f.read()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
  assert _listing(tmp_path / "plots") == sorted(os.path.basename(p) for p in paths)
