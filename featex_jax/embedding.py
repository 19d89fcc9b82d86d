"""Embeddings of trained runs: restore a run for inference, embed clips batch by batch.

Evaluation (clips read from the decoded-audio cache) and `featex_jax.score` (new recordings
decoded in memory) both embed through `embed_batches`: the same cut offsets, the same
padding of the last batch, the same check for NaN or all-zero embeddings.
"""

import dataclasses
import json
import pathlib

import jax
import numpy as np

from featex_jax import checkpoint
from featex_jax import configuration
from featex_jax import cpu_ops
from featex_jax import detector
from featex_jax import input_pipeline
from featex_jax import model as model_lib
from featex_jax import precision
from featex_jax import sharding
from featex_jax import state as state_lib
from featex_jax import tiling
from featex_jax.data import errors


@dataclasses.dataclass(frozen=True)
class Member:
  """One trained model, restored for inference."""

  workdir: pathlib.Path
  config: object
  classes: object
  network: object
  variables: dict
  step: int


def load_member(workdir, data_classes):
  """Restore the latest checkpoint of a run with the structure its own config implies.

  `data_classes` is the class table of the data being scored; a run trained here must have
  the same, a converted Keras model (no class names) the same number of classes.
  """
  workdir = pathlib.Path(workdir)
  config = configuration.from_dict(checkpoint.read_config(workdir))
  classes = checkpoint.read_classes(workdir)
  if classes is None:
    keras = workdir / checkpoint.KERAS_FILE
    n_classes = json.loads(keras.read_text())["n_classes"] if keras.is_file() else None
    if n_classes != data_classes.n_classes:
      raise checkpoint.CheckpointMismatchError(
        f"{workdir} has no classes.json and its heads have {n_classes} classes; the data has "
        f"{data_classes.n_classes} (data.class_table={config.data.class_table})"
      )
    classes = data_classes
  else:
    try:
      data_classes.check_matches(classes, "the data", str(workdir / "classes.json"))
    except errors.DataError as error:
      raise checkpoint.CheckpointMismatchError(str(error)) from None
  step = checkpoint.latest_step(workdir)
  if step is None:
    raise checkpoint.CheckpointMismatchError(f"{workdir / 'checkpoints'} holds no checkpoint: train first")
  network = model_lib.create_model(config.model)
  state = state_lib.restore(workdir, config, network, state_lib.heads_for(config, classes.n_classes), step)
  variables = {"params": state.params["backbone"], "batch_stats": state.batch_stats}
  return Member(workdir, config, classes, network, variables, step)


def embedding_fn(network, config, mesh):
  """jit'd (variables, stored-audio batch) -> embeddings [B, 256], the batch split over the mesh,
  dots and convolutions at the run's `model.matmul_precision`."""
  replicated, split = sharding.replicated(mesh), sharding.batch_split(mesh)

  def embed(variables, audio, lengths, offsets):
    waveforms = tiling.tile_and_cut(audio, lengths, offsets, config.data.clip_samples)
    return model_lib.embed(network, variables, waveforms)

  return jax.jit(
    precision.with_matmul_precision(embed, config.model.matmul_precision),
    in_shardings=(replicated, split, split, split),
    out_shardings=split,
    compiler_options=cpu_ops.compiler_options(config.model.get("cpu_kernels", "auto")),  # older runs: auto
  )


def embed_batches(member, batches, n_clips, batch_size, names, mesh, progress=True):
  """Embeddings [n_clips, 256] from `batches`: (row indices, {'audio', 'lengths', 'offsets'})
  pairs of at most `batch_size` rows (a multiple of the mesh size); a short batch is padded."""
  import tqdm

  fn = embedding_fn(member.network, member.config, mesh)
  variables = sharding.replicate(member.variables, mesh)
  out = np.empty((n_clips, 2 * member.config.model.embedding_dim), np.float32)
  with tqdm.tqdm(total=n_clips, unit="clip", desc=f"embedding ({member.workdir.name})", disable=not progress) as bar:
    for rows, batch in batches:
      pad = batch_size - len(rows)
      arrays = [
        np.pad(batch[k], [(0, pad)] + [(0, 0)] * (batch[k].ndim - 1), mode="edge")
        for k in ("audio", "lengths", "offsets")
      ]
      out[rows] = np.asarray(fn(variables, *arrays))[: len(rows)]
      bar.update(len(rows))
  detector.check_embeddings(out, names)
  return out


def embed_clip_set(member, clip_set, batch_size, progress=True):
  """Embeddings of every clip of a ClipSet (the reference's fixed cut offsets, no augmentation)."""
  cache, mesh = clip_set.cache, sharding.data_mesh()
  batch_size = max(batch_size // mesh.size, 1) * mesh.size
  offsets = input_pipeline.clip_offsets(
    [input_pipeline.clip_key(c) for c in clip_set.clips],
    cache.lengths,
    member.config.data.clip_samples,
    member.config.seed,
  )
  index_batches = [np.arange(i, min(i + batch_size, len(cache))) for i in range(0, len(cache), batch_size)]
  reader = input_pipeline.BatchReader(cache, np.zeros(len(cache), np.int32))
  try:
    batches = zip(index_batches, reader.batches(index_batches, [offsets[i] for i in index_batches]))
    return embed_batches(member, batches, len(cache), batch_size, [c.file_name for c in clip_set.clips], mesh, progress)
  finally:
    reader.close()


def embed_waveforms(member, waveforms, keys, names, batch_size=16, progress=True):
  """Embeddings of decoded clips held in memory (`keys`: input_pipeline.clip_key of each, for its offset)."""
  lengths = np.array([len(w) for w in waveforms])
  width = int(lengths.max())  # one shape for every batch: one compile
  offsets = input_pipeline.clip_offsets(keys, lengths, member.config.data.clip_samples, member.config.seed)

  def batches():
    for start in range(0, len(waveforms), batch_size):
      rows = np.arange(start, min(start + batch_size, len(waveforms)))
      audio = np.zeros((len(rows), width), np.float32)
      for row, i in enumerate(rows):
        audio[row, : lengths[i]] = waveforms[i]
      yield rows, {"audio": audio, "lengths": lengths[rows].astype(np.int32), "offsets": offsets[rows].astype(np.int32)}

  return embed_batches(member, batches(), len(waveforms), batch_size, names, sharding.local_mesh(), progress)
