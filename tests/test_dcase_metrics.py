"""Metrics: hand-computed cases, sklearn directly on random ones, and the official evaluator's
own published example output (nttcslab/dcase2023_task2_evaluator README, baseline_MSE)."""

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score

from featex_jax import dcase_metrics

# A section built by hand (scores; a tie at 0.35 between a source normal and a source anomaly).
SOURCE_NORMAL = [0.1, 0.2, 0.3, 0.35]
SOURCE_ANOMALY = [0.35, 0.7]
TARGET_NORMAL = [0.5, 0.6]
TARGET_ANOMALY = [0.55, 0.9]


def _hand_section(threshold=0.45):
  scores = np.array(SOURCE_NORMAL + SOURCE_ANOMALY + TARGET_NORMAL + TARGET_ANOMALY)
  is_anomaly = np.array([0] * 4 + [1] * 2 + [0] * 2 + [1] * 2)
  is_target = np.array([0] * 6 + [1] * 4)
  return scores, is_anomaly, is_target, (scores > threshold).astype(int)


def test_hand_computed_section():
  m = dcase_metrics.section_metrics(*_hand_section())
  assert (m.n_normal_source, m.n_anomaly_source, m.n_normal_target, m.n_anomaly_target) == (4, 2, 2, 2)
  # Pairs (anomaly beats normal = 1, tie = 1/2) counted by hand.
  assert m.auc_source == pytest.approx(15.5 / 16)  # 4 source normals x all 4 anomalies
  assert m.auc_target == pytest.approx(5 / 8)  # 2 target normals x all 4 anomalies
  assert m.auc == pytest.approx(20.5 / 24)
  # pAUC on all clips: TPR 0.5 up to FPR 1/6 > 0.1, so area 0.05; McClish: (1 + (a - .005)/.095)/2.
  assert m.pauc == pytest.approx(0.5 * (1 + (0.05 - 0.005) / 0.095))
  # Authors' variant: each domain's own anomalies only.
  assert m.authors_auc_source == pytest.approx(7.5 / 8)
  assert m.authors_auc_target == pytest.approx(3 / 4)
  # Source curve: (0, .5) -> (.25, 1), so TPR at FPR .1 is .7 and the area .1 * (.5 + .7) / 2.
  assert m.authors_pauc_source == pytest.approx(0.5 * (1 + (0.06 - 0.005) / 0.095))
  assert m.authors_pauc_target == pytest.approx(0.5 * (1 + (0.05 - 0.005) / 0.095))
  # Decisions at 0.45: source tp 1 fp 0 fn 1; target tp 2 fp 2 fn 0.
  assert (m.precision_source, m.recall_source, m.f1_source) == pytest.approx((1.0, 0.5, 2 / 3))
  assert (m.precision_target, m.recall_target, m.f1_target) == pytest.approx((0.5, 1.0, 2 / 3))


def test_authors_per_domain_auc_differs_from_the_official_one():
  m = dcase_metrics.section_metrics(*_hand_section())
  assert m.authors_auc_source != pytest.approx(m.auc_source)
  assert m.authors_auc_target != pytest.approx(m.auc_target)


def test_no_positive_decisions_gives_zeros_through_the_evaluators_epsilon_not_nan():
  scores, is_anomaly, is_target, _ = _hand_section()
  m = dcase_metrics.section_metrics(scores, is_anomaly, is_target, np.zeros(10, int))
  assert (m.precision_source, m.recall_source, m.f1_source) == (0.0, 0.0, 0.0)


def test_random_sections_match_sklearn_on_the_official_subsets():
  rng = np.random.default_rng(0)
  for trial in range(20):
    n = int(rng.integers(20, 80))
    is_anomaly = rng.random(n) < 0.4
    is_target = rng.random(n) < 0.3
    is_anomaly[:2], is_target[:2] = False, [False, True]  # each domain has a normal
    is_anomaly[2] = True
    # Small integer scores half the time: many ties.
    scores = rng.integers(0, 5, n).astype(float) if trial % 2 else rng.normal(size=n) + is_anomaly
    decisions = (rng.random(n) < 0.5).astype(int)
    m = dcase_metrics.section_metrics(scores, is_anomaly, is_target, decisions)
    for domain, in_domain in (("source", ~is_target), ("target", is_target)):
      keep = in_domain | is_anomaly
      assert getattr(m, f"auc_{domain}") == roc_auc_score(is_anomaly[keep], scores[keep])
      tp = np.sum(is_anomaly & in_domain & (decisions == 1))
      precision = tp / max(np.sum(in_domain & (decisions == 1)), np.finfo(float).eps)
      recall = tp / max(np.sum(in_domain & is_anomaly), np.finfo(float).eps)
      assert getattr(m, f"precision_{domain}") == pytest.approx(precision)
      assert getattr(m, f"recall_{domain}") == pytest.approx(recall)
    assert m.pauc == roc_auc_score(is_anomaly, scores, max_fpr=0.1)
    assert m.auc == roc_auc_score(is_anomaly, scores)


def test_pauc_uses_the_given_max_fpr():
  scores, is_anomaly, is_target, decisions = _hand_section()
  m = dcase_metrics.section_metrics(scores, is_anomaly, is_target, decisions, max_fpr=0.3)
  assert m.pauc == roc_auc_score(is_anomaly, scores, max_fpr=0.3)


def test_unlabelled_section_has_no_metrics():
  assert dcase_metrics.section_metrics(np.arange(5.0), None, None, np.zeros(5, int)) is None
  summary = dcase_metrics.summarise({("fan", "00"): None})
  assert summary["official_score"] is None and summary["not_computed"] == [["fan", "00"]]


@pytest.mark.parametrize(
  "change, message",
  [
    (lambda s, a, t: (s, np.zeros_like(a), t), "fan section 00: no anomalous test clips"),
    (lambda s, a, t: (s, a | t.astype(bool), t), "no normal target-domain test clips"),
    (lambda s, a, t: (s, a | ~t.astype(bool), t), "no normal source-domain test clips"),
    (lambda s, a, t: (np.where(a, np.nan, s), a, t), "NaN or Inf"),
    (lambda s, a, t: (s, a * 2, t), "anomaly labels: values must be 0/1"),
    (lambda s, a, t: (s[:-1], a, t), "expected 9 values"),
  ],
)
def test_undefined_metrics_are_clear_errors(change, message):
  scores, is_anomaly, is_target, _ = _hand_section()
  scores, is_anomaly, is_target = change(scores, is_anomaly.astype(bool), is_target)
  with pytest.raises(ValueError, match=message):
    dcase_metrics.section_metrics(scores, is_anomaly, is_target, name="fan section 00")


def test_labels_without_domains_are_an_error():
  with pytest.raises(ValueError, match="no domains"):
    dcase_metrics.section_metrics([0.1, 0.2], [0, 1], None)


def _section(auc_source, auc_target, pauc, precision=(None, None), recall=(None, None), f1=(None, None)):
  return dcase_metrics.SectionMetrics(
    n_normal_source=0,
    n_anomaly_source=0,
    n_normal_target=0,
    n_anomaly_target=0,
    auc=0.5,
    auc_source=auc_source,
    auc_target=auc_target,
    pauc=pauc,
    precision_source=precision[0],
    precision_target=precision[1],
    recall_source=recall[0],
    recall_target=recall[1],
    f1_source=f1[0],
    f1_target=f1[1],
  )


# The evaluator's README: baseline_MSE per machine type (one section each), and its summary.
BASELINE_MSE = {  # machine: (AUC source, AUC target, pAUC)
  "bandsaw": (0.6667348190554078, 0.48287671232876717, 0.5091087658743451),
  "grinder": (0.706837186424004, 0.5516569200779727, 0.5846166760294185),
  "shaker": (0.69428983714698, 0.5604118104118104, 0.5491654428600755),
  "ToyDrone": (0.7968000000000001, 0.561, 0.5368421052631579),
  "ToyNscale": (0.77, 0.4716, 0.5178947368421053),
  "ToyTank": (0.7212000000000001, 0.6468, 0.5826315789473684),
  "Vacuum": (0.8816, 0.45320000000000005, 0.5947368421052631),
}


def test_official_score_and_domain_means_reproduce_the_evaluators_published_output():
  sections = {(machine, "00"): _section(*v) for machine, v in BASELINE_MSE.items()}
  summary = dcase_metrics.summarise(sections)
  assert summary["official_score"] == pytest.approx(0.5925469043549957, rel=1e-12)
  assert summary["official_score_amean"] == pytest.approx(0.6114287349222227, rel=1e-12)
  means = summary["all"]
  assert means["hmean"]["auc"] == pytest.approx(0.6152996272906976, rel=1e-12)
  assert means["hmean"]["pauc"] == pytest.approx(0.5517419647782388, rel=1e-12)
  assert means["hmean_source"]["auc"] == pytest.approx(0.7423494890244248, rel=1e-12)
  assert means["hmean_target"]["auc"] == pytest.approx(0.5253826834789426, rel=1e-12)
  assert means["amean"]["auc"] == pytest.approx(0.6403576632460674, rel=1e-12)
  assert means["amean"]["pauc"] == pytest.approx(0.5535708782745333, rel=1e-12)
  assert means["amean_source"]["auc"] == pytest.approx(0.7482088346609131, rel=1e-12)
  assert means["amean_target"]["auc"] == pytest.approx(0.5325064918312215, rel=1e-12)
  assert means["hmean"]["f1"] is None  # no decisions given


def test_machine_type_rows_reproduce_the_evaluators_published_output():
  toydrone = _section(
    0.7968000000000001,
    0.561,
    0.5368421052631579,
    precision=(0.7560975609756098, 0.5079365079365079),
    recall=(0.62, 0.64),
    f1=(0.6813186813186813, 0.5663716814159292),
  )
  shaker = _section(
    0.69428983714698,
    0.5604118104118104,
    0.5491654428600755,
    precision=(0.578125, 0.4936708860759494),
    recall=(0.6981132075471698, 0.8478260869565217),
    f1=(0.6324786324786325, 0.624),
  )
  summary = dcase_metrics.summarise({("ToyDrone", "00"): toydrone, ("shaker", "00"): shaker})
  published = {  # harmonic mean / arithmetic mean rows: AUC, pAUC, precision, recall, F1
    "ToyDrone": (
      (0.6584250994255415, 0.5368421052631579, 0.6076569678407351, 0.6298412698412698, 0.6185502727981294),
      (0.6789000000000001, 0.5368421052631579, 0.6320170344560588, 0.63, 0.6238451813673053),
    ),
    "shaker": (
      (0.6202083584461523, 0.5491654428600755, 0.5325705849787784, 0.765720350225524, 0.628210709621245),
      (0.6273508237793952, 0.5491654428600755, 0.5358979430379747, 0.7729696472518457, 0.6282393162393163),
    ),
  }
  for machine, (hmean_row, amean_row) in published.items():
    rows = summary["machines"][machine]
    assert [rows["hmean"][f] for f in dcase_metrics.FIGURES] == pytest.approx(hmean_row, rel=1e-12)
    assert [rows["amean"][f] for f in dcase_metrics.FIGURES] == pytest.approx(amean_row, rel=1e-12)
  rows = summary["machines"]["ToyDrone"]
  # "source harmonic mean" row: 0.7968, pAUC 0.5368..., then the source precision/recall/F1.
  assert [rows["hmean_source"][f] for f in dcase_metrics.FIGURES] == pytest.approx(
    (0.7968000000000001, 0.5368421052631579, 0.7560975609756098, 0.62, 0.6813186813186813)
  )


def test_official_score_is_the_harmonic_mean_of_all_three_figures_of_every_section():
  rng = np.random.default_rng(1)
  values = rng.uniform(0.3, 1.0, size=(6, 3))
  sections = {(f"m{i % 3}", f"{i:02d}"): _section(*v) for i, v in enumerate(values)}
  expected = values.size / np.sum(1 / values)
  assert dcase_metrics.official_score(sections.values()) == pytest.approx(expected, rel=1e-12)
  assert dcase_metrics.summarise(sections)["official_score"] == pytest.approx(expected, rel=1e-12)


def test_a_zero_figure_is_floored_at_epsilon_as_the_evaluator_does():
  sections = [_section(0.0, 0.8, 0.6)]
  floored = [np.finfo(float).eps, 0.8, 0.6]
  assert dcase_metrics.official_score(sections) == pytest.approx(scipy.stats.hmean(floored), rel=1e-12)


def test_authors_means_are_plain_harmonic_means_of_their_per_domain_figures():
  rng = np.random.default_rng(2)
  results = {}
  for i in range(3):
    n = 40
    is_anomaly = np.arange(n) % 2 == 1
    is_target = np.arange(n) % 4 >= 2
    scores = rng.normal(size=n) + 0.8 * is_anomaly
    results[("fan" if i < 2 else "pump", f"{i:02d}")] = dcase_metrics.section_metrics(scores, is_anomaly, is_target)
  authors = dcase_metrics.summarise(results)["authors"]
  fan = [results[("fan", "00")], results[("fan", "01")]]
  assert authors["machines"]["fan"]["authors_auc_target"] == pytest.approx(
    scipy.stats.hmean([m.authors_auc_target for m in fan])
  )
  assert authors["all"]["pauc"] == pytest.approx(scipy.stats.hmean([m.pauc for m in results.values()]))


def test_jackknife_matches_the_definition_and_is_zero_for_perfect_separation():
  rng = np.random.default_rng(3)
  n = 30
  is_anomaly = np.arange(n) % 3 == 0
  scores = rng.normal(size=n) + is_anomaly
  estimate, ci95 = dcase_metrics.jackknife_ci95(is_anomaly, scores)
  full = roc_auc_score(is_anomaly, scores)
  loo = np.array([roc_auc_score(np.delete(is_anomaly, i), np.delete(scores, i)) for i in range(n)])
  assert estimate == pytest.approx(np.mean(n * full - (n - 1) * loo))
  half_width = scipy.stats.t.ppf(0.975, n - 1) * np.sqrt(np.sum((loo - loo.mean()) ** 2) / (n * (n - 1)))
  assert ci95 == pytest.approx(half_width)
  assert dcase_metrics.official_score_ci95(is_anomaly, is_anomaly + 0.0) == 0.0
