"""The train state: parameters, BatchNorm statistics, the optimiser and the AdaCos heads.

One module owns what a checkpoint holds and how it is made, so training, evaluation,
scoring and the Keras conversion build and restore it the same way. As in
`flax.training.train_state.TrainState`, the optimiser travels inside the state (a static
field: it is code, not data, so checkpoints hold only arrays, exactly as before).
"""

import dataclasses

import flax
import jax
import jax.numpy as jnp
import optax

from featex_jax import adacos
from featex_jax import checkpoint
from featex_jax import sharding
from featex_jax.errors import ConfigError


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
      raise ConfigError(f"loss.{name}_weight={loss[f'{name}_weight']} but augment.{name} is off")
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
  params: dict  # {'backbone': network params, 'centres': {head: (2D, classes*16)}}
  batch_stats: dict
  opt_state: optax.OptState
  scales: dict  # {head: adaptive AdaCos scale s}
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  def apply_gradients(self, grads, **changes):
    """One optimiser step; `changes` replaces other fields (new statistics and scales)."""
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(
      step=self.step + 1, params=optax.apply_updates(self.params, updates), opt_state=opt_state, **changes
    )


def optimizer(config, heads):
  """Adam (Keras defaults: eps 1e-7) on the backbone and trainable centres; frozen centres fixed.

  Keras' Adam adds eps to sqrt(v) before bias correction and optax after it; the two differ
  by eps/sqrt(1 - b2^t) vs eps, below 1e-5 relative on any real gradient.
  """
  opt = config.optim
  adam = optax.adam(opt.learning_rate, b1=opt.b1, b2=opt.b2, eps=opt.eps)
  trainable = {h.name: h.trainable for h in heads}

  def labels(params):
    return {
      "backbone": jax.tree.map(lambda _: "train", params["backbone"]),
      "centres": {name: "train" if trainable[name] else "frozen" for name in params["centres"]},
    }

  return optax.multi_transform({"train": adam, "frozen": optax.set_to_zero()}, labels)


def create_train_state(config, network, heads, key):
  """Initial state: Keras initialisers for the network, glorot-uniform centres, s = s_init."""
  key_model, key_centres = jax.random.split(key)
  dummy = jnp.zeros((1, config.data.clip_samples), jnp.float32)
  variables = jax.jit(network.init, static_argnames="train")(
    key_model, dummy, train=False
  )  # one compile, not one per op
  n_sub = config.loss.n_subclusters
  embedding_dim = 2 * config.model.embedding_dim
  centre_keys = jax.random.split(key_centres, len(heads))
  params = {
    "backbone": variables["params"],
    "centres": {h.name: adacos.init_centres(k, embedding_dim, h.n_classes, n_sub) for h, k in zip(heads, centre_keys)},
  }
  return from_arrays(
    config, heads, params, variables["batch_stats"], {h.name: adacos.initial_scale(h.n_classes, n_sub) for h in heads}
  )


def from_arrays(config, heads, params, batch_stats, scales, step=0):
  """A state around given parameters, statistics and scales, with a fresh optimiser state
  (what a converted Keras model starts from)."""
  tx = optimizer(config, heads)
  as_arrays = lambda tree: jax.tree.map(jnp.asarray, tree)  # noqa: E731
  params = as_arrays(params)
  return TrainState(
    step=jnp.asarray(step, jnp.int32),
    params=params,
    batch_stats=as_arrays(batch_stats),
    opt_state=tx.init(params),
    scales={k: jnp.float32(v) for k, v in scales.items()},
    tx=tx,
  )


def restore(workdir, config, network, heads, step, mesh=None):
  """The state of checkpoint `step` in `workdir`, built from the run's config and placed
  replicated on `mesh` (default: one local device); a clear error when it does not fit."""
  mesh = mesh or sharding.local_mesh()
  abstract = jax.eval_shape(lambda: create_train_state(config, network, heads, jax.random.key(0)))
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.replicated(mesh)), abstract)
  try:
    return checkpoint.restore(checkpoint.manager(workdir, create=False), target, step)
  except Exception as error:  # orbax reports mismatches deep inside; name the run instead
    raise checkpoint.CheckpointMismatchError(
      f"checkpoint {workdir}/checkpoints/{step} does not match {workdir}/config.json: {error}"
    ) from error
