"""Small audio files for data-layer tests (a helper module, not a test file)."""

import pathlib

import numpy as np
import soundfile


def write_audio(path, samples=None, sample_rate=16000, subtype="PCM_16", seed=0):
  """Writes `samples` (default: 0.1 s of quiet noise) to `path`, creating its folders; returns the path."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if samples is None:
    samples = 0.1 * np.random.default_rng(seed).standard_normal(sample_rate // 10)
  soundfile.write(path, samples, sample_rate, subtype=subtype)
  return path


def make_tree(root, relative_paths):
  """One short distinct clip at each path below `root`."""
  return [write_audio(pathlib.Path(root) / p, seed=i) for i, p in enumerate(relative_paths)]
