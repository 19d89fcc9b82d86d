"""Submission files in the official format; any submission folder evaluated against official-format ground truth."""

import json
import os

import numpy as np
import pytest
import section_scores

from featex_jax import dcase_metrics
from featex_jax import results
from featex_jax import submission
from featex_jax.data.errors import DataError


def test_submission_files_have_the_official_names_and_rows(tmp_path):
  paths = submission.write_submissions(
    tmp_path,
    [results.SectionScores("fan", 0, ["/data/fan/test/b.wav", "a.wav"], np.array([0.5, 0.25], np.float32), [1, 0])],
  )
  assert [os.path.basename(p) for p in paths] == [
    "anomaly_score_fan_section_00_test.csv",
    "decision_result_fan_section_00_test.csv",
  ]
  assert (tmp_path / "anomaly_score_fan_section_00_test.csv").read_text() == "b.wav,0.5\na.wav,0.25\n"
  assert (tmp_path / "decision_result_fan_section_00_test.csv").read_text() == "b.wav,1\na.wav,0\n"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_submission_round_trip_is_exact(tmp_path, dtype):
  rng = np.random.default_rng(0)
  names = [f"section_01_{i:04d}.wav" for i in rng.permutation(50)]
  scores = rng.normal(size=50).astype(dtype)
  decisions = rng.integers(0, 2, 50)
  submission.write_submissions(tmp_path, [results.SectionScores("ToyCar", "section_01", names, scores, decisions)])
  read_names, read_scores, read_decisions = submission.read_submission(tmp_path, "ToyCar", 1)
  assert read_names == names
  np.testing.assert_array_equal(read_scores.astype(dtype), scores)
  np.testing.assert_array_equal(read_decisions, decisions)


def test_a_bad_section_leaves_no_file_behind(tmp_path):
  rng = np.random.default_rng(1)
  (tmp_path / "anomaly_score_fan_section_00_test.csv").write_text("old\n")
  good = section_scores.labelled(rng, "fan", 0)
  scores = good.scores.copy()
  scores[3] = np.nan
  bad = results.SectionScores("pump", 0, good.file_names, scores, good.decisions)
  with pytest.raises(ValueError, match=r"pump section 00: 1 score\(s\) are NaN or Inf: section_00_0003\.wav"):
    submission.write_submissions(tmp_path, [good, bad])
  assert section_scores.listing(tmp_path) == ["anomaly_score_fan_section_00_test.csv"]
  assert (tmp_path / "anomaly_score_fan_section_00_test.csv").read_text() == "old\n"


def test_a_failure_while_writing_leaves_no_file_behind(tmp_path, monkeypatch):
  rng = np.random.default_rng(2)
  sections = [section_scores.labelled(rng, "fan", 0), section_scores.labelled(rng, "pump", 0)]
  real_write_text, calls = submission.files.write_text, []

  def failing_write_text(path, text):
    calls.append(path)
    if len(calls) == 3:
      raise OSError("disk full")
    real_write_text(path, text)

  monkeypatch.setattr(submission.files, "write_text", failing_write_text)
  with pytest.raises(OSError, match="disk full"):
    submission.write_submissions(tmp_path, sections)
  assert section_scores.listing(tmp_path) == []


@pytest.mark.parametrize(
  "change, message",
  [
    (dict(file_names=["a.wav", "a.wav"]), "not unique"),
    (dict(file_names=["a,b.wav", "c.wav"]), "unusable in a CSV row"),
    (dict(decisions=[0, 2]), "decisions must be 0 or 1"),
    (dict(scores=[0.1]), "2 file names but scores of shape"),
  ],
)
def test_invalid_submissions_are_refused(tmp_path, change, message):
  fields = dict(machine="fan", section=0, file_names=["a.wav", "c.wav"], scores=[0.1, 0.2], decisions=[0, 1])
  fields.update(change)
  with pytest.raises(ValueError, match=message):
    submission.write_submissions(tmp_path, [results.SectionScores(**fields)])
  assert section_scores.listing(tmp_path) == []


def _write_ground_truth(root, machine, section, names, is_anomaly, is_target, full_names=None):
  """The official evaluator's three folders, rows in its format."""
  file = f"ground_truth_{machine}_section_{section:02d}_test.csv"
  for folder, values in (("ground_truth_data", is_anomaly), ("ground_truth_domain", is_target)):
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / file).write_text("".join(f"{n},{int(v)}\n" for n, v in zip(names, values)))
  if full_names is not None:
    (root / "ground_truth_attributes").mkdir(parents=True, exist_ok=True)
    (root / "ground_truth_attributes" / file).write_text(
      "".join(f"{n},{f[: -len('.wav')]}\n" for n, f in zip(names, full_names))
    )


def _full_name(i, anomaly, target):
  domain = "target" if target else "source"
  label = "anomaly" if anomaly else "normal"
  return f"section_00_{domain}_test_{label}_{i:04d}_car_A1_spd_3_mic_1.wav"


def test_submission_files_evaluated_against_official_ground_truth(tmp_path):
  rng = np.random.default_rng(3)
  truth, team = tmp_path / "truth", tmp_path / "team"
  sections = [section_scores.labelled(rng, "ToyDrone", 0), section_scores.labelled(rng, "bandsaw", 0, n=30)]
  for s in sections:
    full = [_full_name(i, a, t) for i, (a, t) in enumerate(zip(s.is_anomaly, s.is_target))]
    _write_ground_truth(truth, s.machine, 0, s.file_names, s.is_anomaly, s.is_target, full)
  # ToyDrone's submission uses the full (de-anonymised) names, bandsaw's the listed ones; both shuffled.
  drone, saw = sections
  order = rng.permutation(len(drone.file_names))
  full = [_full_name(i, a, t) for i, (a, t) in enumerate(zip(drone.is_anomaly, drone.is_target))]
  submission.write_submissions(
    team, [results.SectionScores("ToyDrone", 0, [full[i] for i in order], drone.scores[order], drone.decisions[order])]
  )
  order = rng.permutation(len(saw.file_names))
  submission.write_submissions(
    team,
    [results.SectionScores("bandsaw", 0, [saw.file_names[i] for i in order], saw.scores[order], saw.decisions[order])],
  )

  evaluation = submission.evaluate_submission(team, truth, ci95=False)
  for s in sections:
    expected = dcase_metrics.section_metrics(s.scores, s.is_anomaly, s.is_target, s.decisions)
    assert evaluation.metrics[(s.machine, "00")] == expected
  direct = results.compute(sections, ci95=False)
  assert evaluation.summary == direct.summary


def test_ground_truth_that_does_not_cover_the_files_is_an_error(tmp_path):
  rng = np.random.default_rng(4)
  s = section_scores.labelled(rng, "fan", 0, n=8)
  _write_ground_truth(tmp_path / "truth", "fan", 0, s.file_names[:-1], s.is_anomaly[:-1], s.is_target[:-1])
  submission.write_submissions(tmp_path / "team", [s])
  not_covered = r"fan section 00: .* 1 scored file\(s\) not in the ground truth: section_00_0007\.wav"
  with pytest.raises(ValueError, match=not_covered):
    submission.evaluate_submission(tmp_path / "team", tmp_path / "truth")
  for machine in ("fan", "pump"):  # fan now covered; pump has ground truth but no submission
    _write_ground_truth(tmp_path / "truth", machine, 0, s.file_names, s.is_anomaly, s.is_target)
  with pytest.raises(FileNotFoundError, match="anomaly_score_pump_section_00_test.csv"):
    submission.evaluate_submission(tmp_path / "team", tmp_path / "truth")
  with pytest.raises(DataError, match="no ground-truth folders found"):
    submission.evaluate_submission(tmp_path / "team", tmp_path / "elsewhere")


def test_evaluating_a_submission_from_the_command_line(tmp_path, capsys):
  rng = np.random.default_rng(6)
  s = section_scores.labelled(rng, "fan", 0, n=12)
  _write_ground_truth(tmp_path / "truth", "fan", 0, s.file_names, s.is_anomaly, s.is_target)
  submission.write_submissions(tmp_path / "team", [s])
  submission.main(
    [str(tmp_path / "team"), "--ground_truth", str(tmp_path / "truth"), "--out", str(tmp_path / "r.json")]
  )
  expected = dcase_metrics.section_metrics(s.scores, s.is_anomaly, s.is_target, s.decisions)
  official = dcase_metrics.official_score([expected])
  assert f"Official score: {100 * official:.2f}" in capsys.readouterr().out
  assert json.loads((tmp_path / "r.json").read_text())["summary"]["official_score"] == pytest.approx(official)
