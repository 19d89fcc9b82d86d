"""Sub-cluster AdaCos heads: cosine logits to n_subclusters centres per class, adaptive scale.

Centres are a [D, n_classes * n_subclusters] matrix (the Keras layout): column j belongs to
class j // n_subclusters, sub-cluster j % n_subclusters. The scale s is state, not a
parameter: each training step replaces it, without gradient, by a value computed from the
batch. Every reduction is over the whole batch, so under jit with the batch sharded over
devices the scale is that of the global batch, as on one device. A `mask` [B] leaves the
padding rows of a partial batch out of every reduction: the scale is that of the real rows.
"""

import math

import jax
import jax.numpy as jnp

SCALE_UPDATES = ("reference", "textbook")
_EPSILON = 1e-7  # Keras' backend epsilon, used by the reference for clipping and the scale


def initial_scale(n_classes, n_subclusters):
  """sqrt(2) * log(K - 1) for K logits, the AdaCos starting value."""
  return math.sqrt(2) * math.log(n_classes * n_subclusters - 1)


def init_centres(key, embedding_dim, n_classes, n_subclusters, dtype=jnp.float32):
  """Glorot-uniform [embedding_dim, n_classes * n_subclusters], as Keras initialises them."""
  shape = (embedding_dim, n_classes * n_subclusters)
  return jax.nn.initializers.glorot_uniform()(key, shape, dtype)


def l2_normalize(x, axis):
  """x / sqrt(max(sum x^2, 1e-12)), the semantics of tf.nn.l2_normalize."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=axis, keepdims=True), 1e-12))


def cosines(embeddings, centres):
  """Cosine of every embedding [B, D] with every centre [D, K] -> [B, K], in at least float32."""
  dtype = jnp.result_type(embeddings.dtype, centres.dtype, jnp.float32)
  embeddings = l2_normalize(embeddings.astype(dtype), axis=1)
  centres = l2_normalize(centres.astype(dtype), axis=0)
  return embeddings @ centres


def batch_median(x, mask=None):
  """Median of a vector as tfp.stats.percentile(x, 50) computes it (TFP 0.23, the reference's).

  Default interpolation 'nearest': sorted ascending, index round_half_even((n - 1) / 2), so for
  an even batch the upper middle value when n % 4 == 0 and the lower one when n % 4 == 2.
  With a mask, the median of the n rows where it is True (the others sort last as +inf).
  """
  if mask is None:
    index = round((x.shape[0] - 1) / 2)  # Python's round is half-to-even, like tf.round
    return jnp.sort(x)[index]
  index = jnp.round((jnp.sum(mask) - 1) / 2).astype(jnp.int32)  # jnp.round is half-to-even too
  return jnp.sort(jnp.where(mask, x, jnp.inf))[index]


def updated_scale(cos, labels, scale, n_subclusters, mode="reference", mask=None):
  """The scale for this step, from the batch's cosines [B, K] and labels [B, n_classes].

  s = (max(s*cos) + log(mean_b sum_j exp(s*cos - max))) / cos(min(pi/4, median angle)) + 1e-7.
  "reference": the angle of a sample is the reference's sum over its (mixed) label repeated
  per sub-cluster times the angles, times the number of non-zero label entries (a sum over 16
  sub-clusters, so in practice above pi/4). "textbook": the angle to the closest sub-cluster of
  the sample's (argmax) class. No gradient flows through the result. `mask` [B]: the max, the
  mean and the median are over the rows where it is True only.
  """
  if mode not in SCALE_UPDATES:
    raise ValueError(f"AdaCos scale update must be one of {SCALE_UPDATES}, got {mode!r}")
  theta = jnp.arccos(jnp.clip(cos, -1.0 + _EPSILON, 1.0 - _EPSILON))
  scaled = scale * cos
  if mask is None:
    max_scaled = jnp.max(scaled)
    mean_sum_exp = jnp.mean(jnp.sum(jnp.exp(scaled - max_scaled), axis=1))
  else:
    max_scaled = jnp.max(scaled, where=mask[:, None], initial=-jnp.inf)
    mean_sum_exp = jnp.mean(jnp.sum(jnp.exp(scaled - max_scaled), axis=1), where=mask)
  if mode == "reference":
    repeated = jnp.repeat(labels, n_subclusters, axis=1).astype(theta.dtype)
    nonzero = jnp.count_nonzero(labels, axis=1).astype(theta.dtype)
    theta_class = jnp.sum(repeated * theta, axis=1) * nonzero
  else:
    per_class = theta.reshape(theta.shape[0], -1, n_subclusters)
    own_class = jnp.argmax(labels, axis=1)
    theta_class = jnp.min(jnp.take_along_axis(per_class, own_class[:, None, None], axis=1), axis=(1, 2))
  theta_median = batch_median(theta_class, mask)
  new_scale = (max_scaled + jnp.log(mean_sum_exp)) / jnp.cos(jnp.minimum(math.pi / 4, theta_median)) + _EPSILON
  return jax.lax.stop_gradient(new_scale)


def class_probabilities(cos, scale, n_subclusters):
  """Softmax over all sub-cluster logits s*cos [B, K], summed per class -> [B, K / n_subclusters]."""
  probs = jax.nn.softmax(scale * cos, axis=-1)
  return jnp.sum(probs.reshape(probs.shape[0], -1, n_subclusters), axis=-1)


def categorical_crossentropy(labels, probs):
  """Per-sample cross-entropy with Keras semantics: renormalise, clip to [1e-7, 1-1e-7]."""
  probs = probs / jnp.sum(probs, axis=-1, keepdims=True)
  probs = jnp.clip(probs, _EPSILON, 1.0 - _EPSILON)
  return -jnp.sum(labels * jnp.log(probs), axis=-1)


def head(embeddings, centres, scale, labels, n_subclusters, train, mode="reference", mask=None):
  """One head: (class probabilities [B, n_classes], scale to keep).

  Training updates the scale FIRST and uses the new one for the logits (as the reference
  does); evaluation uses the given scale and returns it unchanged. `train` is a Python bool.
  `mask` [B]: the rows the scale update sees (None: all).
  """
  if labels.shape[1] * n_subclusters != centres.shape[1]:
    raise ValueError(
      f"labels [B, {labels.shape[1]}] do not match centres {centres.shape} with {n_subclusters} sub-clusters per class"
    )
  cos = cosines(embeddings, centres)
  if train:
    scale = updated_scale(cos, labels, scale, n_subclusters, mode, mask)
  return class_probabilities(cos, scale, n_subclusters), scale
