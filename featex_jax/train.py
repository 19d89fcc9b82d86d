"""Training: the train state, the data-parallel train step and the training loop.

Parallelism: one `jax.jit` over a 1-D device mesh with axis 'data'; parameters, optimiser
state and AdaCos scales replicated, the batch sharded on its leading axis (NamedSharding).
This is the current equivalent of the pmap step the Flax examples used, chosen because the
step is then written once for the GLOBAL batch: BatchNorm statistics, every AdaCos scale
(a max, a mean and a median over the batch) and the gradient mean are global by
construction and XLA inserts the collectives, so 8 devices x 8 clips compute the same
function as 1 device x 64 clips (SPEC.md, data parallelism) with no hand-written psum or
all_gather, and the same program runs on several hosts (jax.distributed; each process
feeds its share through make_array_from_process_local_data). The device count changes
only the float summation order (tests: equal to 1e-5).
"""
import dataclasses
import json
import logging
import pathlib
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from featex_jax import adacos
from featex_jax import augment
from featex_jax import checkpoint
from featex_jax import clips
from featex_jax import cpu_ops
from featex_jax import datasets
from featex_jax import features
from featex_jax import files
from featex_jax import model as model_lib
from featex_jax import objective
from featex_jax import pipeline
from featex_jax.data import classes as classes_lib


@dataclasses.dataclass(frozen=True)
class Head:
  """One sub-cluster AdaCos head: its classes, loss weight and whether its centres train."""
  name: str
  n_classes: int
  weight: float
  trainable: bool


def heads_for(config, n_classes):
  """The heads the config asks for, with class counts that follow the augmentations.

  classification: N classes on the mixup labels; statex: 3x its input (the StatEx labels);
  featex: 3x its input (the StatEx labels when StatEx is on, else the mixup labels). With
  `ssl_class_labels=False` the SSL heads see one pseudo-class instead of the N classes.
  """
  loss, aug = config.loss, config.augment
  for name in ("statex", "featex"):
    if loss[f"{name}_weight"] and not aug[name]:
      raise ValueError(f"loss.{name}_weight={loss[f'{name}_weight']} but augment.{name} is off")
  heads = [Head("classification", n_classes, loss.classification_weight, loss.classification_trainable)]
  ssl_classes = n_classes if loss.ssl_class_labels else 1
  if aug.statex:
    ssl_classes *= 3
    heads.append(Head("statex", ssl_classes, loss.statex_weight, loss.statex_trainable))
  if aug.featex:
    heads.append(Head("featex", 3 * ssl_classes, loss.featex_weight, loss.featex_trainable))
  return tuple(heads)


class TrainState(flax.struct.PyTreeNode):
  """Everything a resumed run needs besides the config: the data position is `step`."""
  step: jax.Array
  params: dict        # {'backbone': network params, 'centres': {head: (2D, classes*16)}}
  batch_stats: dict
  opt_state: optax.OptState
  scales: dict        # {head: adaptive AdaCos scale s}


def make_optimizer(config, heads):
  """Adam (Keras defaults: eps 1e-7) on the backbone and trainable centres; frozen centres fixed.

  Keras' Adam adds eps to sqrt(v) before bias correction and optax after it; the two differ
  by eps/sqrt(1 - b2^t) vs eps, below 1e-5 relative on any real gradient.
  """
  opt = config.optim
  adam = optax.adam(opt.learning_rate, b1=opt.b1, b2=opt.b2, eps=opt.eps)
  trainable = {h.name: h.trainable for h in heads}

  def labels(params):
    return {"backbone": jax.tree.map(lambda _: "train", params["backbone"]),
            "centres": {name: "train" if trainable[name] else "frozen" for name in params["centres"]}}
  return optax.multi_transform({"train": adam, "frozen": optax.set_to_zero()}, labels)


def create_train_state(config, network, heads, key):
  """Initial state: Keras initialisers for the network, glorot-uniform centres, s = s_init."""
  key_model, key_centres = jax.random.split(key)
  dummy = jnp.zeros((1, config.data.clip_samples), jnp.float32)
  variables = jax.jit(network.init, static_argnames="train")(key_model, dummy, train=False)  # one compile, not one per op
  n_sub = config.loss.n_subclusters
  embedding_dim = 2 * config.model.embedding_dim
  centre_keys = jax.random.split(key_centres, len(heads))
  params = {"backbone": variables["params"],
            "centres": {h.name: adacos.init_centres(k, embedding_dim, h.n_classes, n_sub)
                        for h, k in zip(heads, centre_keys)}}
  tx = make_optimizer(config, heads)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables["batch_stats"],
                    opt_state=tx.init(params),
                    scales={h.name: jnp.float32(adacos.initial_scale(h.n_classes, n_sub)) for h in heads})


def make_train_step(config, network, heads, n_classes):
  """The pure step (state, batch, key) -> (state, metrics) for the global batch.

  The batch holds stored audio (featex_jax.pipeline): the step cuts the 18 s clips, applies
  mixup to the waveforms, StatEx to the magnitude spectrograms and FeatEx to the
  embeddings, evaluates the heads and takes one Adam step.
  """
  aug, loss_cfg = config.augment, config.loss
  n_sub = loss_cfg.n_subclusters
  tx = make_optimizer(config, heads)

  def forward(params, batch_stats, batch, key, scales):
    """Augment, embed and evaluate every head: {head: (probs, labels, new scale)}."""
    key_mixup, key_statex, key_featex = jax.random.split(key, 3)
    waveforms = clips.tile_and_cut(batch["audio"], batch["lengths"], batch["offsets"], config.data.clip_samples)
    class_labels = jax.nn.one_hot(batch["labels"], n_classes, dtype=jnp.float32)
    if aug.mixup:
      waveforms, class_labels = augment.mixup(key_mixup, waveforms, class_labels, aug.mixup_prob)
    ssl_labels = (class_labels if loss_cfg.ssl_class_labels
                  else augment.augmentation_only_labels(class_labels.shape[0]))
    spectrogram = features.magnitude_spectrogram(waveforms, config.model.frame_length, config.model.hop_length)
    if aug.statex:
      spectrogram, ssl_labels = augment.statex(key_statex, spectrogram, ssl_labels, aug.statex_prob,
                                               aug.statex_mode)
    (e1, e2), updates = network.apply({"params": params["backbone"], "batch_stats": batch_stats},
                                      waveforms, spectrogram, train=True, mutable=["batch_stats"])
    embedding = jnp.concatenate([e1, e2], axis=-1)
    inputs = {"classification": (embedding, class_labels), "statex": (embedding, ssl_labels)}
    if aug.featex:
      inputs["featex"] = augment.featex(key_featex, e1, e2, ssl_labels, aug.featex_prob)
    outputs = {}
    for head in heads:
      head_embedding, labels = inputs[head.name]
      probs, scale = adacos.head(head_embedding, params["centres"][head.name], scales[head.name], labels,
                                 n_sub, train=True, mode=loss_cfg.scale_update)
      outputs[head.name] = (probs, labels, scale)
    return outputs, updates["batch_stats"]

  def loss_fn(params, batch_stats, batch, key, scales):
    outputs, new_batch_stats = forward(params, batch_stats, batch, key, scales)
    loss, metrics = objective.total_loss(
        {name: (probs, labels) for name, (probs, labels, _) in outputs.items()},
        {h.name: h.weight for h in heads},
        params["backbone"], model_lib.decayed_kernels_mask(params["backbone"]), loss_cfg.weight_decay)
    new_scales = {name: scale for name, (_, _, scale) in outputs.items()}
    metrics.update({f"scale/{name}": scale for name, scale in new_scales.items()})
    return loss, (new_batch_stats, new_scales, metrics)

  def train_step(state, batch, key):
    grads, (batch_stats, scales, metrics) = jax.grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats, batch, key, state.scales)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state, scales=scales)
    return new_state, metrics

  return train_step


def data_mesh(devices=None):
  """A 1-D mesh over all devices (of every host). Auto axis: XLA places the collectives."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def parallel_train_step(train_step, mesh, compiler_options=None):
  """jit the global-batch step over the mesh: state replicated, batch split on axis 0.
  `compiler_options`: XLA's, e.g. cpu_ops.compiler_options(config.model.cpu_kernels)."""
  replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  return jax.jit(train_step, in_shardings=(replicated, split, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=0, compiler_options=compiler_options)


def replicate(tree, mesh):
  return jax.device_put(tree, NamedSharding(mesh, P()))


def global_batch(local_batch, mesh):
  """This process's share of a batch (numpy) -> one global array per field, split over devices."""
  sharding = NamedSharding(mesh, P("data"))
  return {name: jax.make_array_from_process_local_data(sharding, value) for name, value in local_batch.items()}


def step_key(seed, step):
  """The augmentation key of a step: a function of (seed, step), so a resumed run draws the same."""
  return jax.random.fold_in(jax.random.key(seed), step)


def restore_or_create(config, network, heads, workdir, mesh):
  """The latest checkpoint in `workdir`, or a fresh state; replicated over the mesh."""
  state = replicate(create_train_state(config, network, heads, jax.random.key(config.seed)), mesh)
  checkpoints = checkpoint.manager(workdir, keep=config.train.keep_checkpoints)
  if checkpoints.latest_step() is not None:
    state = checkpoint.restore(checkpoints, state)
    logging.info("resumed %s from step %d", workdir, int(state.step))
  return state, checkpoints


def train(config, workdir, data_dirs=None, progress=True):
  """Train one model into `workdir`, resuming from its latest checkpoint; returns the state.

  Only process 0 writes metadata and logs; every process reads its share of each batch.
  """
  import tqdm
  workdir = pathlib.Path(workdir)
  is_main = jax.process_index() == 0
  _, all_clips = datasets.discover(config, data_dirs)
  table = datasets.class_table(all_clips)
  if (workdir / "config.json").is_file():  # before decoding anything: a mismatch is reported at once
    checkpoint.check_metadata(workdir, config, table)
  checkpoint.write_metadata(workdir, config, table)
  train_set = datasets.clip_set(classes_lib.training_clips(all_clips), config, workdir, progress and is_main)
  labels = datasets.class_indices(table, train_set.clips)

  mesh = data_mesh()
  batch_size = config.train.batch_size
  if batch_size % jax.device_count():
    raise ValueError(f"train.batch_size={batch_size} is not divisible by the {jax.device_count()} devices")
  steps_per_epoch = pipeline.steps_per_epoch(len(train_set), batch_size)
  if steps_per_epoch == 0:
    raise ValueError(f"{len(train_set)} training clips are fewer than one batch of {batch_size}")
  heads = heads_for(config, table.n_classes)
  network = model_lib.create_model(config.model)
  state, checkpoints = restore_or_create(config, network, heads, workdir, mesh)
  step_fn = parallel_train_step(make_train_step(config, network, heads, table.n_classes), mesh,
                                cpu_ops.compiler_options(config.model.cpu_kernels))
  reader = pipeline.BatchReader(train_set.cache, labels, prefetch=config.data.prefetch_batches)
  metrics_log = MetricsLog(workdir / "metrics.jsonl", int(state.step), enabled=is_main)

  total_steps = steps_per_epoch * config.train.epochs
  step = int(state.step)  # tracked on the host from here: reading state.step would wait for the device
  bar = tqdm.tqdm(total=total_steps, initial=step, unit="step", disable=not (progress and is_main),
                  desc=f"training {workdir.name}")
  every = config.train.checkpoint_every_steps

  def log(record_step, metrics, epoch, epoch_metrics):
    record = {"step": record_step, "epoch": epoch + 1, **jax.tree.map(float, jax.device_get(metrics))}
    metrics_log.write(record)
    epoch_metrics.append(record)
    rate = bar.format_dict["rate"] or 0.0
    bar.set_postfix(loss=f"{record['loss/total']:.3f}", clips_per_s=f"{rate * batch_size:.1f}")

  try:
    while step < total_steps:
      epoch, start = divmod(step, steps_per_epoch)
      index_batches = list(pipeline.train_index_batches(len(train_set), batch_size, config.seed, epoch, start,
                                                        jax.process_index(), jax.process_count()))
      offsets = pipeline.clip_offsets([pipeline.clip_key(c) for c in train_set.clips], train_set.cache.lengths,
                                      config.data.clip_samples, config.seed,
                                      epoch if config.data.random_offset_per_epoch else None)
      epoch_metrics, started, pending = [], time.perf_counter(), None
      for local in reader.batches(index_batches, [offsets[i] for i in index_batches]):
        state, metrics = step_fn(state, global_batch(local, mesh), step_key(config.seed, step))
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
        _log_epoch(epoch + 1, config.train.epochs, epoch_metrics, time.perf_counter() - started,
                   (steps_per_epoch - start) * batch_size, bar)
  finally:
    bar.close()
    reader.close()
  return state


class MetricsLog:
  """metrics.jsonl: one JSON object per logged step; on resume, lines past the checkpoint go."""

  def __init__(self, path, resumed_step, enabled=True):
    self.path, self.enabled = pathlib.Path(path), enabled
    if enabled and self.path.is_file():
      kept = [line for line in self.path.read_text().splitlines()
              if line.strip() and json.loads(line)["step"] <= resumed_step]
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


def ensemble_members(config, workdir, size):
  """(work directory, config) of each ensemble member: member_<k> with seed + k, or workdir itself."""
  if size <= 1:
    return [(pathlib.Path(workdir), config)]
  members = []
  for k in range(size):
    member = config.copy_and_resolve_references()
    member.seed = config.seed + k
    members.append((pathlib.Path(workdir) / f"member_{k}", member))
  return members
