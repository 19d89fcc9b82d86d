"""Training: the data-parallel train step and the training loop (the state: featex_jax/state.py).

Parallelism: one `jax.jit` over a 1-D device mesh with axis 'data'; parameters, optimiser
state and AdaCos scales replicated, the batch sharded on its leading axis (NamedSharding).
This is the current equivalent of the pmap step the Flax examples used, chosen because the
step is then written once for the GLOBAL batch: BatchNorm statistics, every AdaCos scale
(a max, a mean and a median over the batch) and the gradient mean are global by
construction and XLA inserts the collectives, so 8 devices x 8 clips compute the same
function as 1 device x 64 clips (docs/method.md, data parallelism) with no hand-written psum or
all_gather, and the same program runs on several hosts (jax.distributed; each process
feeds its share through make_array_from_process_local_data). The device count changes
only the float summation order (tests: equal to 1e-5).

Every clip trains, as in Keras' fit: the last partial batch of an epoch is padded to the
full batch, and a row mask leaves the padding out of everything that looks across the batch
(BatchNorm statistics, the AdaCos scale statistics, the augmentations' partners, the loss
means). Padding rather than a second compiled program for the remainder keeps one shape
(one compilation, and on several hosts the equal shares make_array_from_process_local_data
needs) and makes the partial batch the same function of its real clips as an unpadded
batch of them, on any number of devices (tests: 48 clips padded to 64 = a batch of 48).
"""

import json
import logging
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from featex_jax import adacos
from featex_jax import augment
from featex_jax import checkpoint
from featex_jax import clip_sets
from featex_jax import cpu_ops
from featex_jax import files
from featex_jax import input_pipeline
from featex_jax import model as model_lib
from featex_jax import objective
from featex_jax import precision
from featex_jax import sharding
from featex_jax import state as state_lib
from featex_jax import tiling
from featex_jax.data import classes as classes_lib
from featex_jax.errors import ConfigError


def make_train_step(config, network, heads, n_classes):
  """The pure step (state, batch, key) -> (state, metrics) for the global batch.

  The batch holds stored audio (featex_jax.input_pipeline): the step cuts the 18 s clips, applies
  mixup to the waveforms, StatEx to the magnitude spectrograms and FeatEx to the
  embeddings, evaluates the heads and takes one Adam step. `batch["mask"]` marks the real
  clips of a padded partial batch. Dots and convolutions run at `model.matmul_precision`.
  """
  aug, loss_cfg = config.augment, config.loss
  n_sub = loss_cfg.n_subclusters

  def forward(params, batch_stats, batch, key, scales):
    """Augment, embed and evaluate every head: {head: (probs, labels, new scale)}."""
    key_mixup, key_statex, key_featex = jax.random.split(key, 3)
    mask = batch["mask"]
    waveforms = tiling.tile_and_cut(batch["audio"], batch["lengths"], batch["offsets"], config.data.clip_samples)
    class_labels = jax.nn.one_hot(batch["labels"], n_classes, dtype=jnp.float32)
    if aug.mixup:
      waveforms, class_labels = augment.mixup(key_mixup, waveforms, class_labels, aug.mixup_prob, mask)
    ssl_labels = class_labels if loss_cfg.ssl_class_labels else augment.augmentation_only_labels(class_labels.shape[0])
    spectrogram = network.magnitude_spectrogram(waveforms)
    if aug.statex:
      spectrogram, ssl_labels = augment.statex(
        key_statex, spectrogram, ssl_labels, aug.statex_prob, aug.statex_mode, mask
      )
    (e1, e2), updates = network.apply(
      {"params": params["backbone"], "batch_stats": batch_stats},
      waveforms,
      spectrogram,
      train=True,
      mask=mask,
      mutable=["batch_stats"],
    )
    embedding = jnp.concatenate([e1, e2], axis=-1)
    inputs = {"classification": (embedding, class_labels), "statex": (embedding, ssl_labels)}
    if aug.featex:
      inputs["featex"] = augment.featex(key_featex, e1, e2, ssl_labels, aug.featex_prob, mask)
    outputs = {}
    for head in heads:
      head_embedding, labels = inputs[head.name]
      probs, scale = adacos.head(
        head_embedding,
        params["centres"][head.name],
        scales[head.name],
        labels,
        n_sub,
        train=True,
        mode=loss_cfg.scale_update,
        mask=mask,
      )
      outputs[head.name] = (probs, labels, scale)
    return outputs, updates["batch_stats"]

  def loss_fn(params, batch_stats, batch, key, scales):
    outputs, new_batch_stats = forward(params, batch_stats, batch, key, scales)
    loss, metrics = objective.total_loss(
      {name: (probs, labels) for name, (probs, labels, _) in outputs.items()},
      {h.name: h.weight for h in heads},
      params["backbone"],
      model_lib.decayed_kernels_mask(params["backbone"]),
      loss_cfg.weight_decay,
      batch["mask"],
    )
    new_scales = {name: scale for name, (_, _, scale) in outputs.items()}
    metrics.update({f"scale/{name}": scale for name, scale in new_scales.items()})
    return loss, (new_batch_stats, new_scales, metrics)

  def train_step(state, batch, key):
    grads, (batch_stats, scales, metrics) = jax.grad(loss_fn, has_aux=True)(
      state.params, state.batch_stats, batch, key, state.scales
    )
    return state.apply_gradients(grads, batch_stats=batch_stats, scales=scales), metrics

  return precision.with_matmul_precision(train_step, config.model.matmul_precision)


def parallel_train_step(train_step, mesh, compiler_options=None):
  """jit the global-batch step over the mesh: state replicated, batch split on axis 0.
  `compiler_options`: XLA's, e.g. cpu_ops.compiler_options(config.model.cpu_kernels)."""
  replicated, split = sharding.replicated(mesh), sharding.batch_split(mesh)
  return jax.jit(
    train_step,
    in_shardings=(replicated, split, replicated),
    out_shardings=(replicated, replicated),
    donate_argnums=0,
    compiler_options=compiler_options,
  )


def step_key(seed, step):
  """The augmentation key of a step: a function of (seed, step), so a resumed run draws the same."""
  return jax.random.fold_in(jax.random.key(seed), step)


def restore_or_create(config, network, heads, workdir, mesh):
  """The latest checkpoint in `workdir`, or a fresh state; replicated over the mesh."""
  state = sharding.replicate(state_lib.create_train_state(config, network, heads, jax.random.key(config.seed)), mesh)
  checkpoints = checkpoint.manager(workdir, keep=config.train.keep_checkpoints)
  if checkpoints.latest_step() is not None:
    state = checkpoint.restore(checkpoints, state)
    logging.info("resumed %s from step %d", workdir, int(state.step))
  return state, checkpoints


def train(config, workdir, progress=True):
  """Train one model into `workdir`, resuming from its latest checkpoint; returns the state.

  Only process 0 writes metadata and logs; every process reads its share of each batch.
  """
  import tqdm

  workdir = pathlib.Path(workdir)
  is_main = jax.process_index() == 0
  _, all_clips = clip_sets.discover(config)
  table = clip_sets.class_table(all_clips, config)
  heads = state_lib.heads_for(config, table.n_classes)
  if (workdir / "config.json").is_file():  # before decoding anything: a mismatch is reported at once
    checkpoint.check_metadata(workdir, config, table)
  checkpoint.write_metadata(workdir, config, table)
  train_set = clip_sets.clip_set(classes_lib.training_clips(all_clips), config, workdir, progress and is_main)
  labels = clip_sets.class_indices(table, train_set.clips)

  mesh = sharding.data_mesh()
  batch_size = config.train.batch_size
  if batch_size % jax.device_count():
    raise ConfigError(f"train.batch_size={batch_size} is not divisible by the {jax.device_count()} devices")
  drop_remainder = config.train.drop_remainder
  steps_per_epoch = input_pipeline.steps_per_epoch(len(train_set), batch_size, drop_remainder)
  if steps_per_epoch == 0:
    raise ConfigError(
      f"{len(train_set)} training clips are fewer than one batch of {batch_size} and train.drop_remainder=True drops it"
    )
  network = model_lib.create_model(config.model)
  state, checkpoints = restore_or_create(config, network, heads, workdir, mesh)
  step_fn = parallel_train_step(
    make_train_step(config, network, heads, table.n_classes), mesh, cpu_ops.compiler_options(config.model.cpu_kernels)
  )
  reader = input_pipeline.BatchReader(train_set.cache, labels, prefetch=config.data.prefetch_batches)
  training_log = TrainingLog(workdir / "metrics.jsonl", int(state.step), enabled=is_main)

  total_steps = steps_per_epoch * config.train.epochs
  step = int(state.step)  # tracked on the host from here: reading state.step would wait for the device
  bar = tqdm.tqdm(
    total=total_steps, initial=step, unit="step", disable=not (progress and is_main), desc=f"training {workdir.name}"
  )
  every = config.train.checkpoint_every_steps

  def log(record_step, metrics, epoch, epoch_metrics):
    record = {"step": record_step, "epoch": epoch + 1, **jax.tree.map(float, jax.device_get(metrics))}
    training_log.write(record)
    epoch_metrics.append(record)
    rate = bar.format_dict["rate"] or 0.0
    bar.set_postfix(loss=f"{record['loss/total']:.3f}", clips_per_s=f"{rate * batch_size:.1f}")

  try:
    while step < total_steps:
      epoch, start = divmod(step, steps_per_epoch)
      index_batches = list(
        input_pipeline.train_index_batches(
          len(train_set),
          batch_size,
          config.seed,
          epoch,
          start,
          jax.process_index(),
          jax.process_count(),
          drop_remainder,
        )
      )
      offsets = input_pipeline.clip_offsets(
        [input_pipeline.clip_key(c) for c in train_set.clips],
        train_set.cache.lengths,
        config.data.clip_samples,
        config.seed,
        epoch if config.data.random_offset_per_epoch else None,
      )
      epoch_metrics, started, pending = [], time.perf_counter(), None
      for local in reader.batches(index_batches, [offsets[i] for i in index_batches]):
        state, metrics = step_fn(state, sharding.global_batch(local, mesh), step_key(config.seed, step))
        step += 1
        if pending:  # the previous step's metrics, fetched while this step runs
          log(*pending, epoch, epoch_metrics)
        logged = step % config.train.log_every_steps == 0 or step % steps_per_epoch == 0
        pending = (step, metrics) if logged else None
        bar.update()
        if every and step % every == 0 and step % steps_per_epoch:
          if pending:  # a checkpoint never runs ahead of the metrics log
            log(*pending, epoch, epoch_metrics)
            pending = None
          checkpoint.save(checkpoints, step, state)
      if pending:
        log(*pending, epoch, epoch_metrics)
      checkpoint.save(checkpoints, step, state)
      if is_main and epoch_metrics:
        clips_read = min(steps_per_epoch * batch_size, len(train_set)) - start * batch_size
        _log_epoch(epoch + 1, config.train.epochs, epoch_metrics, time.perf_counter() - started, clips_read, bar)
  finally:
    bar.close()
    reader.close()
  return state


class TrainingLog:
  """metrics.jsonl: one JSON object per logged step; on resume, lines past the checkpoint go."""

  def __init__(self, path, resumed_step, enabled=True):
    self.path, self.enabled = pathlib.Path(path), enabled
    if enabled and self.path.is_file():
      kept = [
        line for line in self.path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= resumed_step
      ]
      files.write_text(self.path, "".join(line + "\n" for line in kept))

  def write(self, record):
    if self.enabled:
      with open(self.path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _log_epoch(epoch, epochs, records, seconds, n_clips, bar):
  mean = lambda key: np.mean([r[key] for r in records if key in r])
  heads = sorted(k.split("/", 1)[1] for k in records[-1] if k.startswith("scale/"))
  parts = [f"epoch {epoch}/{epochs}", f"loss {mean('loss/total'):.4f}"]
  parts += [f"{h}: acc {mean('accuracy/' + h):.3f} s {records[-1]['scale/' + h]:.2f}" for h in heads]
  parts.append(f"{n_clips / seconds:.1f} clips/s")
  bar.write(" | ".join(parts))
