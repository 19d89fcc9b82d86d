"""Evaluation: checkpoints -> embeddings -> k-means centres -> scores -> metrics -> files.

`run_eval.py` calls `evaluate_runs`; `featex_jax.score` reuses the centres and thresholds it
stores (`scoring.json`, and `centres.npz` in each member's work directory) to score new
recordings without embedding the training set again. Several runs are an ensemble: their
anomaly scores are averaged (the reference's "+=") for the submission files, and each run
is also evaluated alone, since the paper reports K runs as the mean +- std of single models.
"""

import logging
import pathlib

import numpy as np

from featex_jax import checkpoint
from featex_jax import clip_sets
from featex_jax import configuration
from featex_jax import detector
from featex_jax import embedding
from featex_jax import files
from featex_jax import plots
from featex_jax import results
from featex_jax import submission
from featex_jax.data import classes as classes_lib
from featex_jax.data import errors

SCORING_FILE = "scoring.json"
CENTRES_FILE = "centres.npz"


def group_key(group):
  machine, section = group
  return f"{machine}__section_{section}"


def _section_truth(clips, name):
  """(is_anomaly, is_target) of a section's test clips, None where the set carries no labels."""
  labelled = [c.label is not None for c in clips]
  if any(labelled) and not all(labelled):
    missing = [c.file_name for c in clips if c.label is None]
    raise errors.DataError(f"{name}: {len(missing)} test clip(s) have no label while others do: {missing[:5]}")
  if not all(labelled):
    return None, None
  return (np.array([c.label == "anomaly" for c in clips]), np.array([c.domain == "target" for c in clips]))


def _member_scores(member, train_set, test_set, groups, eval_cfg, progress):
  """{group: (training-clip scores, test-clip scores)} of one model; its centres are saved beside it."""
  train_embeddings = embedding.embed_clip_set(member, train_set, eval_cfg.batch_size, progress)
  test_embeddings = embedding.embed_clip_set(member, test_set, eval_cfg.batch_size, progress)
  centres, scores = {}, {}
  for group, (train_rows, test_rows) in groups.items():
    is_source = np.array([train_set.clips[i].domain != "target" for i in train_rows])
    group_train = train_embeddings[train_rows]
    centres[group_key(group)] = detector.fit_section_centres(
      group_train[is_source],
      group_train[~is_source],
      eval_cfg.kmeans_clusters,
      eval_cfg.kmeans_n_init,
      eval_cfg.kmeans_seed,
      name=f"{group[0]} section {group[1]}",
    )
    scores[group] = (
      detector.anomaly_scores(group_train, centres[group_key(group)]),
      detector.anomaly_scores(test_embeddings[test_rows], centres[group_key(group)]),
    )
  with files.atomic_open(member.workdir / CENTRES_FILE, "wb") as f:
    np.savez(f, **centres)
  return scores


def _sections(groups, test_clips, train_scores, test_scores, eval_cfg):
  """(SectionScores of every tested group, {group key: threshold}) from combined or single scores."""
  sections, thresholds = [], {}
  for group, (_, test_rows) in groups.items():
    threshold = detector.decision_threshold(train_scores[group], eval_cfg.threshold_percentile)
    thresholds[group_key(group)] = threshold
    if not test_rows:
      continue  # no test clips: centres and threshold are kept for featex_jax.score
    group_clips = [test_clips[i] for i in test_rows]
    is_anomaly, is_target = _section_truth(group_clips, f"{group[0]} section {group[1]}")
    sections.append(
      results.SectionScores(
        group[0],
        group[1],
        [c.file_name for c in group_clips],
        test_scores[group],
        detector.decisions(test_scores[group], threshold),
        is_anomaly,
        is_target,
        threshold,
      )
    )
  return sections, thresholds


def _evaluated_alone(member, scores, groups, test_clips, eval_cfg):
  """One member's own thresholds, decisions and metrics (the evaluator's ci95 left out)."""
  sections, _ = _sections(
    groups, test_clips, {g: s[0] for g, s in scores.items()}, {g: s[1] for g, s in scores.items()}, eval_cfg
  )
  summary = results.compute(sections, max_fpr=eval_cfg.max_fpr, ci95=False).summary
  return results.MemberResult(str(member.workdir), member.step, summary)


def evaluate_runs(workdirs, data_dirs=None, ground_truth=None, out=None, progress=True):
  """Score every test clip with the (ensemble of) runs, write the outputs, return the Evaluation.

  `data_dirs`/`ground_truth` override the runs' data.roots/data.ground_truth (command line).
  """
  directories = checkpoint.member_dirs(workdirs)
  config = configuration.apply_command_line(
    configuration.from_dict(checkpoint.read_config(directories[0])), data_dirs, ground_truth
  )
  roots, all_clips = clip_sets.discover(config)
  data_classes = clip_sets.class_table(all_clips, config)
  members = [embedding.load_member(d, data_classes) for d in directories]
  run = pathlib.Path(workdirs[0])
  out = pathlib.Path(out) if out else run / "eval"
  train_set, test_set = clip_sets.clip_set_each(
    [classes_lib.training_clips(all_clips), [c for c in all_clips if c.split == "test"]], config, run, progress
  )
  train_clips, test_clips = train_set.clips, test_set.clips
  unseen = sorted({c.group for c in test_clips} - {c.group for c in train_clips})
  if unseen:
    raise errors.DataError(f"test clips of machine/section {unseen} have no training clips to score against")

  eval_cfg = config.eval
  groups = {
    g: ([i for i, c in enumerate(train_clips) if c.group == g], [i for i, c in enumerate(test_clips) if c.group == g])
    for g in sorted({c.group for c in train_clips})
  }  # centres for every trained section, tested or not
  per_member = [_member_scores(m, train_set, test_set, groups, eval_cfg, progress) for m in members]
  combined = [
    {g: detector.combine_scores([scores[g][split] for scores in per_member], eval_cfg.ensemble_reduce) for g in groups}
    for split in (0, 1)
  ]
  sections, thresholds = _sections(groups, test_clips, *combined, eval_cfg)
  files.write_json(
    run / SCORING_FILE,
    {
      "members": [str(m.workdir.resolve()) for m in members],
      "thresholds": thresholds,
      "classes": data_classes.to_dict(),
      "ensemble_reduce": eval_cfg.ensemble_reduce,
      "threshold_percentile": eval_cfg.threshold_percentile,
    },
  )

  alone = ()
  if len(members) > 1:
    alone = tuple(_evaluated_alone(m, scores, groups, test_clips, eval_cfg) for m, scores in zip(members, per_member))
  evaluation = results.compute(sections, max_fpr=eval_cfg.max_fpr, members=alone)
  submission.write_submissions(out / "submission", sections)
  metadata = {
    "members": [{"workdir": str(m.workdir), "checkpoint_step": m.step} for m in members],
    "data_roots": roots,
    "ground_truth": config.data.ground_truth or None,
    "config": configuration.to_dict(config),
  }
  results.write_results(out / "results.json", evaluation, metadata)
  plots.write_plots(out / "plots", evaluation, max_fpr=eval_cfg.max_fpr)
  files.write_text(out / "results.txt", results.format_table(evaluation))
  logging.info("evaluation written to %s", out)
  return evaluation, out
