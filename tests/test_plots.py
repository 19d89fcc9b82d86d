"""ROC and histogram plots of an evaluation."""

import os

import numpy as np

from featex_jax import plots
from featex_jax import results


def _labelled(rng, machine, section, n=40, names=None):
  is_anomaly = np.arange(n) % 2 == 1
  is_target = np.arange(n) % 4 >= 2
  scores = (rng.normal(size=n) + is_anomaly).astype(np.float32)
  names = names or [f"section_{section:02d}_{i:04d}.wav" for i in range(n)]
  return results.SectionScores(
    machine, section, names, scores, (scores > 0.8).astype(int), is_anomaly, is_target, threshold=0.8
  )


def _listing(directory):
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def _evaluation(ci95=False):
  rng = np.random.default_rng(5)
  unlabelled = results.SectionScores(
    "valve", 1, [f"section_01_{i:04d}.wav" for i in range(6)], np.arange(6.0), np.zeros(6, int)
  )
  sections = [_labelled(rng, "fan", 0), _labelled(rng, "fan", 1), _labelled(rng, "pump", 0), unlabelled]
  return results.compute(sections, ci95=ci95)


def test_plots_are_written_for_labelled_sections_as_png(tmp_path):
  evaluation = _evaluation()
  labelled_and_unlabelled = [evaluation.sections[0], evaluation.sections[-1]]
  paths = plots.write_plots(tmp_path / "plots", results.compute(labelled_and_unlabelled, ci95=False))
  assert sorted(os.path.basename(p) for p in paths) == ["histogram_fan_section_00.png", "roc_fan_section_00.png"]
  for path in paths:
    with open(path, "rb") as f:
      data = f.read()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
  assert _listing(tmp_path / "plots") == sorted(os.path.basename(p) for p in paths)
