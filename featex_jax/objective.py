"""The training objective: weighted head losses plus L2 decay on the kernels, and its metrics.

As in the reference (Keras loss_weights and kernel regularisers), the decay is part of the
loss, not decoupled in the optimiser, and it covers the conv/dense kernels only (the model
says which through a mask), never the AdaCos centres.
"""

import jax
import jax.numpy as jnp

from featex_jax import adacos


def total_loss(heads, weights, params, decay_mask, weight_decay, mask=None):
  """sum_h weight_h * mean_batch(cce_h) + weight_decay * sum of squared masked parameters.

  heads: {name: (probs [B, C_h], labels [B, C_h])}; weights: {name: float}, one per head;
  decay_mask: a pytree of Python bools with the structure of params (True = decayed kernel);
  mask: None, or a [B] bool mask of the real rows of a padded batch, over which the means
  (losses and accuracies) are then taken: padding rows have no weight.
  Returns (loss, metrics) with metrics {"loss/<name>", "accuracy/<name>", "loss/weight_decay",
  "loss/total"}, so it fits jax.value_and_grad(..., has_aux=True).
  """
  if set(heads) != set(weights):
    raise ValueError(f"head names {sorted(heads)} and loss weights {sorted(weights)} differ")
  metrics = {}
  loss = 0.0
  for name, (probs, labels) in heads.items():
    head_loss = jnp.mean(adacos.categorical_crossentropy(labels, probs), where=mask)
    loss = loss + weights[name] * head_loss
    metrics[f"loss/{name}"] = head_loss
    metrics[f"accuracy/{name}"] = accuracy(probs, labels, mask)
  decay = weight_decay * squared_norm(params, decay_mask)
  metrics["loss/weight_decay"] = decay
  metrics["loss/total"] = loss + decay
  return loss + decay, metrics


def squared_norm(params, mask):
  """Sum of squares of the parameters whose mask entry is True."""
  squares = jax.tree.map(lambda p, decayed: jnp.sum(jnp.square(p)) if decayed else 0.0, params, mask)
  return sum(jax.tree.leaves(squares), jnp.zeros((), jnp.float32))


def accuracy(probs, labels, mask=None):
  """Fraction of the batch (of its real rows) whose most probable class is the label's largest entry."""
  return jnp.mean(jnp.argmax(probs, axis=-1) == jnp.argmax(labels, axis=-1), where=mask)
