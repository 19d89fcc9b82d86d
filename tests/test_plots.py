"""ROC and histogram plots of an evaluation."""

import os

import section_scores

from featex_jax import plots
from featex_jax import results


def test_plots_are_written_for_labelled_sections_as_png(tmp_path):
  evaluation = section_scores.evaluation()
  labelled_and_unlabelled = [evaluation.sections[0], evaluation.sections[-1]]
  paths = plots.write_plots(tmp_path / "plots", results.compute(labelled_and_unlabelled, ci95=False))
  assert sorted(os.path.basename(p) for p in paths) == ["histogram_fan_section_00.png", "roc_fan_section_00.png"]
  for path in paths:
    with open(path, "rb") as f:
      data = f.read()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
  assert section_scores.listing(tmp_path / "plots") == sorted(os.path.basename(p) for p in paths)
