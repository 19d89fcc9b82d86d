"""Results of an evaluation: metrics of every section, results.json, the table."""

import json

import numpy as np
import pytest
import section_scores

from featex_jax import results


def test_section_ids():
  assert [results.section_id(s) for s in (0, "3", "00", "section_05")] == ["00", "03", "00", "05"]
  with pytest.raises(ValueError, match="section must be a number"):
    results.section_id("section_ab")


def test_results_json_holds_every_figure_and_the_metadata(tmp_path):
  evaluation = section_scores.evaluation(ci95=True)
  results.write_results(
    tmp_path / "results.json", evaluation, metadata={"checkpoint_step": 120, "data_roots": ["/data/dev"]}
  )
  written = json.loads((tmp_path / "results.json").read_text())
  assert written["metadata"] == {"checkpoint_step": 120, "data_roots": ["/data/dev"]}
  assert written["summary"]["official_score"] == pytest.approx(evaluation.summary["official_score"])
  assert written["summary"]["official_score_ci95"] > 0
  assert set(written["summary"]["machines"]) == {"fan", "pump"}
  assert written["summary"]["not_computed"] == [["valve", "01"]]
  by_name = {(s["machine"], s["section"]): s for s in written["sections"]}
  fan = evaluation.metrics[("fan", "01")]
  assert by_name[("fan", "01")]["metrics"]["auc_target"] == pytest.approx(fan.auc_target)
  assert by_name[("fan", "01")]["metrics"]["authors_auc_target"] == pytest.approx(fan.authors_auc_target)
  assert by_name[("fan", "01")]["threshold"] == 0.8
  assert by_name[("valve", "01")]["metrics_computed"] is False
  assert by_name[("valve", "01")]["metrics"] is None


def test_table_shows_sections_means_official_score_and_unlabelled_sections():
  evaluation = section_scores.evaluation()
  table = results.format_table(evaluation)
  fan = evaluation.metrics[("fan", "00")]
  assert f"fan      00   {100 * fan.auc_source:.2f}  {100 * fan.auc_target:.2f}" in table
  assert f"Official score: {100 * evaluation.summary['official_score']:.2f}" in table
  assert "Authors' per-domain figures" in table
  assert "Metrics not computed (no ground truth) for 1 section(s): valve section 01" in table


def test_table_of_an_unlabelled_set_only_says_so():
  unlabelled = results.SectionScores("valve", 0, ["a.wav", "b.wav"], [0.1, 0.2], [0, 1])
  table = results.format_table(results.compute([unlabelled]))
  assert table == "Metrics not computed (no ground truth) for 1 section(s): valve section 00\n"


def test_members_evaluated_alone_are_reported_with_mean_and_std(tmp_path):
  rng = np.random.default_rng(7)
  members = []
  for k in range(3):
    sections = [
      section_scores.labelled(rng, "fan", 0),
      section_scores.labelled(rng, "fan", 1),
      section_scores.labelled(rng, "pump", 0),
    ]
    members.append(results.MemberResult(f"runs/x/member_{k}", 10, results.compute(sections, ci95=False).summary))
  ensemble = results.compute(
    [section_scores.labelled(rng, "fan", 0), section_scores.labelled(rng, "pump", 0)], ci95=False, members=members
  )
  stats = results.member_statistics(members)
  official = [m.summary["official_score"] for m in members]
  assert stats["n_runs"] == 3
  assert stats["official_score"]["mean"] == pytest.approx(np.mean(official))
  assert stats["official_score"]["std"] == pytest.approx(np.std(official))
  pump_auc_source = [m.summary["machines"]["pump"]["hmean_source"]["auc"] for m in members]
  assert stats["groups"]["pump"]["auc_source"]["mean"] == pytest.approx(np.mean(pump_auc_source))
  authors_pauc = [m.summary["authors"]["all"]["pauc"] for m in members]
  assert stats["groups"]["all"]["authors_pauc"]["std"] == pytest.approx(np.std(authors_pauc))

  results.write_results(tmp_path / "results.json", ensemble)
  written = json.loads((tmp_path / "results.json").read_text())
  assert [m["workdir"] for m in written["members"]] == [f"runs/x/member_{k}" for k in range(3)]
  assert written["member_statistics"]["official_score"]["values"] == pytest.approx(official)
  assert written["summary"]["official_score"] == pytest.approx(ensemble.summary["official_score"])

  table = results.format_table(ensemble)
  assert "The 3 models, each evaluated alone" in table
  assert (
    f"Official score, mean +- std over 3 models: {100 * np.mean(official):.2f} +- {100 * np.std(official):.2f}"
  ) in table
  assert "Ensemble of the 3 models (anomaly scores averaged)" in table
  assert table.index("each evaluated alone") < table.index("Ensemble of the 3") < table.index("Official score: ")
