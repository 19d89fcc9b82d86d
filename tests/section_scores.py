"""Scored sections for the tests of results, submission files and plots."""

import os

import numpy as np

from featex_jax import results


def labelled(rng, machine, section, n=40, names=None):
  """A section of n clips, every other one anomalous and half of them target, scored with noise."""
  is_anomaly = np.arange(n) % 2 == 1
  is_target = np.arange(n) % 4 >= 2
  scores = (rng.normal(size=n) + is_anomaly).astype(np.float32)
  names = names or [f"section_{section:02d}_{i:04d}.wav" for i in range(n)]
  return results.SectionScores(
    machine, section, names, scores, (scores > 0.8).astype(int), is_anomaly, is_target, threshold=0.8
  )


def evaluation(ci95=False):
  """Three labelled sections of two machine types and one unlabelled section."""
  rng = np.random.default_rng(5)
  unlabelled = results.SectionScores(
    "valve", 1, [f"section_01_{i:04d}.wav" for i in range(6)], np.arange(6.0), np.zeros(6, int)
  )
  sections = [labelled(rng, "fan", 0), labelled(rng, "fan", 1), labelled(rng, "pump", 0), unlabelled]
  return results.compute(sections, ci95=ci95)


def listing(directory):
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else []
