"""Evaluation: checkpoints -> embeddings -> k-means centres -> scores -> metrics -> files.

`run_eval.py` calls `evaluate`; `featex_jax.score` reuses the centres and thresholds it
stores (`scoring.json`, and `centres.npz` in each member's work directory) to score new
recordings without embedding the training set again.
"""
import dataclasses
import json
import logging
import pathlib

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from featex_jax import checkpoint
from featex_jax import clips as clips_lib
from featex_jax import configuration
from featex_jax import datasets
from featex_jax import files
from featex_jax import model as model_lib
from featex_jax import pipeline
from featex_jax import precision
from featex_jax import scoring
from featex_jax import train as train_lib
from featex_jax.data import classes as classes_lib
from featex_jax.data import errors

SCORING_FILE = "scoring.json"
CENTRES_FILE = "centres.npz"


@dataclasses.dataclass(frozen=True)
class Member:
  """One trained model, restored for inference."""
  workdir: pathlib.Path
  config: object
  classes: object
  network: object
  variables: dict
  step: int


def member_dirs(workdirs):
  """Each work directory, or its member_<k> folders when it holds an ensemble."""
  members = []
  for workdir in map(pathlib.Path, workdirs):
    nested = sorted(workdir.glob("member_*"), key=lambda p: int(p.name.split("_")[-1]))
    members += nested or [workdir]
  return members


def load_member(workdir, data_classes):
  """Restore the latest checkpoint of a run with the structure its own config implies.

  `data_classes` is the class table of the data being scored; a run trained here must have
  the same, a converted Keras model (no class names) the same number of classes.
  """
  workdir = pathlib.Path(workdir)
  config = configuration.from_dict(checkpoint.read_config(workdir))
  classes = checkpoint.read_classes(workdir)
  if classes is None:
    keras = workdir / "keras.json"
    n_classes = json.loads(keras.read_text())["n_classes"] if keras.is_file() else None
    if n_classes != data_classes.n_classes:
      raise checkpoint.CheckpointMismatchError(
          f"{workdir} has no classes.json and its heads have {n_classes} classes; the data has "
          f"{data_classes.n_classes} (data.class_table={config.data.class_table})")
    classes = data_classes
  else:
    _check_classes(data_classes, "the data", workdir, classes)
  step = checkpoint.latest_step(workdir)
  if step is None:
    raise checkpoint.CheckpointMismatchError(f"{workdir / 'checkpoints'} holds no checkpoint: train first")
  network = model_lib.create_model(config.model)
  heads = train_lib.heads_for(config, classes.n_classes)
  abstract = jax.eval_shape(lambda: train_lib.create_train_state(config, network, heads, jax.random.key(0)))
  device = NamedSharding(train_lib.data_mesh(jax.local_devices()[:1]), P())
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract)
  try:
    state = checkpoint.restore(checkpoint.manager(workdir, create=False), target, step)
  except Exception as error:  # orbax reports mismatches deep inside; name the run instead
    raise checkpoint.CheckpointMismatchError(
        f"checkpoint {workdir / 'checkpoints' / str(step)} does not match {workdir / 'config.json'}: {error}") from error
  variables = {"params": state.params["backbone"], "batch_stats": state.batch_stats}
  return Member(workdir, config, classes, network, variables, step)


def embedding_fn(network, config, mesh):
  """jit'd (variables, stored-audio batch) -> L2-normalised-ready embeddings [B, 256], batch split over devices,
  dots and convolutions at the run's `model.matmul_precision`."""
  replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))

  def embed(variables, audio, lengths, offsets):
    waveforms = clips_lib.tile_and_cut(audio, lengths, offsets, config.data.clip_samples)
    return model_lib.embed(network, variables, waveforms)
  return jax.jit(precision.with_matmul_precision(embed, config.model.matmul_precision),
                 in_shardings=(replicated, split, split, split), out_shardings=split)


def embed_clip_set(member, clip_set, batch_size, progress=True):
  """Embeddings [n, 256] of every clip (fixed reference offsets, no augmentation)."""
  import tqdm
  mesh = train_lib.data_mesh()
  batch_size = max(batch_size // mesh.size, 1) * mesh.size
  fn = embedding_fn(member.network, member.config, mesh)
  variables = jax.device_put(member.variables, NamedSharding(mesh, P()))
  cache = clip_set.cache
  offsets = pipeline.clip_offsets([pipeline.clip_key(c) for c in clip_set.clips], cache.lengths,
                                  member.config.data.clip_samples, member.config.seed)
  order = np.arange(len(cache))
  index_batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
  reader = pipeline.BatchReader(cache, np.zeros(len(cache), np.int32))
  out = np.empty((len(cache), 2 * member.config.model.embedding_dim), np.float32)
  bar = tqdm.tqdm(total=len(cache), unit="clip", desc=f"embedding ({member.workdir.name})", disable=not progress)
  try:
    for indices, batch in zip(index_batches, reader.batches(index_batches, [offsets[i] for i in index_batches])):
      pad = batch_size - len(indices)
      arrays = [np.pad(batch[k], [(0, pad)] + [(0, 0)] * (batch[k].ndim - 1), mode="edge")
                for k in ("audio", "lengths", "offsets")]
      out[indices] = np.asarray(fn(variables, *arrays))[:len(indices)]
      bar.update(len(indices))
  finally:
    bar.close()
    reader.close()
  scoring.check_embeddings(out, [c.file_name for c in clip_set.clips])
  return out


def group_key(group):
  machine, section = group
  return f"{machine}__section_{section}"


def _check_classes(classes, name, workdir, saved):
  try:
    classes.check_matches(saved, name, str(pathlib.Path(workdir) / "classes.json"))
  except errors.DataError as error:
    raise checkpoint.CheckpointMismatchError(str(error)) from None


def _section_truth(clips, name):
  """(is_anomaly, is_target) of a section's test clips, None where the set carries no labels."""
  labelled = [c.label is not None for c in clips]
  if any(labelled) and not all(labelled):
    missing = [c.file_name for c in clips if c.label is None]
    raise errors.DataError(f"{name}: {len(missing)} test clip(s) have no label while others do: {missing[:5]}")
  if not all(labelled):
    return None, None
  return (np.array([c.label == "anomaly" for c in clips]),
          np.array([c.domain == "target" for c in clips]))


def evaluate(workdirs, data_dirs=None, ground_truth=None, out=None, progress=True):
  """Score every test clip with the (ensemble of) runs, write the outputs, return the Evaluation."""
  from featex_jax import report
  directories = member_dirs(workdirs)
  config = configuration.from_dict(checkpoint.read_config(directories[0]))
  roots, all_clips = datasets.discover(config, data_dirs, ground_truth)
  data_classes = datasets.class_table(all_clips, config)
  members = [load_member(d, data_classes) for d in directories]
  train_clips = classes_lib.training_clips(all_clips)
  test_clips = [c for c in all_clips if c.split == "test"]
  unseen = sorted({c.group for c in test_clips} - {c.group for c in train_clips})
  if unseen:
    raise errors.DataError(f"test clips of machine/section {unseen} have no training clips to score against")
  run = pathlib.Path(workdirs[0])
  out = pathlib.Path(out) if out else run / "eval"
  train_set = datasets.clip_set(train_clips, config, run, progress)
  test_set = datasets.clip_set(test_clips, config, run, progress)

  eval_cfg = config.eval
  groups = sorted({c.group for c in train_clips})  # centres for every trained section, tested or not
  train_rows = {g: [i for i, c in enumerate(train_clips) if c.group == g] for g in groups}
  test_rows = {g: [i for i, c in enumerate(test_clips) if c.group == g] for g in groups}
  member_scores = {g: ([], []) for g in groups}  # per group: ([train scores], [test scores]) per member
  for member in members:
    train_embeddings = embed_clip_set(member, train_set, eval_cfg.batch_size, progress)
    test_embeddings = embed_clip_set(member, test_set, eval_cfg.batch_size, progress)
    centres = {}
    for group in groups:
      rows = train_rows[group]
      is_source = np.array([train_clips[i].domain != "target" for i in rows])
      group_train = train_embeddings[rows]
      centres[group_key(group)] = scoring.fit_section_centres(
          group_train[is_source], group_train[~is_source], eval_cfg.kmeans_clusters, eval_cfg.kmeans_n_init,
          eval_cfg.kmeans_seed, name=f"{group[0]} section {group[1]}")
      member_scores[group][0].append(scoring.anomaly_scores(group_train, centres[group_key(group)]))
      member_scores[group][1].append(scoring.anomaly_scores(test_embeddings[test_rows[group]], centres[group_key(group)]))
    with files.atomic_open(member.workdir / CENTRES_FILE, "wb") as f:
      np.savez(f, **centres)

  sections, thresholds = [], {}
  for group in groups:
    train_scores = scoring.combine_scores(member_scores[group][0], eval_cfg.ensemble_reduce)
    test_scores = scoring.combine_scores(member_scores[group][1], eval_cfg.ensemble_reduce)
    threshold = scoring.decision_threshold(train_scores, eval_cfg.threshold_percentile)
    thresholds[group_key(group)] = threshold
    if not test_rows[group]:
      continue  # no test clips: centres and threshold are kept for featex_jax.score
    group_clips = [test_clips[i] for i in test_rows[group]]
    is_anomaly, is_target = _section_truth(group_clips, f"{group[0]} section {group[1]}")
    sections.append(report.SectionScores(group[0], group[1], [c.file_name for c in group_clips], test_scores,
                                         scoring.decisions(test_scores, threshold), is_anomaly, is_target,
                                         threshold))
  files.write_json(run / SCORING_FILE, {
      "members": [str(m.workdir.resolve()) for m in members], "thresholds": thresholds,
      "classes": data_classes.to_dict(),
      "ensemble_reduce": eval_cfg.ensemble_reduce, "threshold_percentile": eval_cfg.threshold_percentile})

  evaluation = report.evaluate(sections, max_fpr=eval_cfg.max_fpr)
  report.write_submissions(out / "submission", sections)
  metadata = {"members": [{"workdir": str(m.workdir), "checkpoint_step": m.step} for m in members],
              "data_roots": roots, "ground_truth": ground_truth or config.data.ground_truth or None,
              "config": configuration.to_dict(config)}
  report.write_results(out / "results.json", evaluation, metadata)
  report.write_plots(out / "plots", evaluation, max_fpr=eval_cfg.max_fpr)
  files.write_text(out / "results.txt", report.format_table(evaluation))
  logging.info("evaluation written to %s", out)
  return evaluation, out
