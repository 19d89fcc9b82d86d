"""From a config to the clips it means: roots, discovery, class table and audio cache.

Training, evaluation and scoring all start here, so they agree on which files exist, which
class each training clip is, and where the decoded audio lives.
"""

import dataclasses
import os
import pathlib

import numpy as np

from featex_jax import input_pipeline
from featex_jax.data import audio
from featex_jax.data import classes as classes_lib
from featex_jax.data import layout


@dataclasses.dataclass(frozen=True)
class ClipSet:
  """Clips with their decoded audio cache (same order)."""

  clips: tuple
  cache: input_pipeline.AudioCache

  def __len__(self):
    return len(self.clips)


def data_roots(config):
  """The roots to read; with data.generate_synthetic (configs/synthetic.py) missing roots are
  generated first, from config.synthetic."""
  roots = [str(r) for r in config.data.roots]
  if config.data.get("generate_synthetic", False):  # runs from before the field existed: False
    from featex_jax import synthetic  # the generator is needed only for this config

    for root in roots:
      if not pathlib.Path(root).is_dir():
        synthetic.generate(root, **config.synthetic)
  return roots


def discover(config):
  """(roots, clips): every clip the roots hold. Bad audio is found when `clip_set` decodes it."""
  roots = data_roots(config)
  return roots, layout.discover(roots, ground_truth=config.data.ground_truth or None)


def cache_root(config, workdir):
  return config.data.cache_dir or os.path.join(os.path.dirname(os.path.abspath(workdir)), ".featex_cache")


def clip_set(clips, config, workdir, progress=True):
  """The usable clips with their decoded audio (see `clip_set_each`)."""
  return clip_set_each([clips], config, workdir, progress)[0]


def clip_set_each(clip_lists, config, workdir, progress=True):
  """A ClipSet of the usable clips of each list, with its decoded audio.

  Bad clips (unreadable, empty, truncated, NaN/Inf, silent), found by the caches' single
  decoding pass, are one DataError listing those of every list, or are skipped with one
  warning listing them when config.data.skip_bad_clips is set.
  """
  caches = [
    input_pipeline.open_cache(
      [c.path for c in clips], cache_root(config, workdir), sample_rate=config.data.sample_rate, progress=progress
    )
    for clips in clip_lists
  ]
  problems = {path: problem for cache in caches for path, problem in cache.problems.items()}
  usable = {
    c.path for c in audio.usable_clips([c for clips in clip_lists for c in clips], problems, config.data.skip_bad_clips)
  }
  return [ClipSet(tuple(c for c in clips if c.path in usable), cache) for clips, cache in zip(clip_lists, caches)]


def class_table(clips, config):
  """The run's class table: config.data.class_table says which clips' keys make it."""
  return classes_lib.ClassTable.from_clips(classes_lib.table_clips(clips, config.data.class_table))


def class_indices(table, clips):
  return np.asarray([table.class_index(c) for c in clips], np.int32)
