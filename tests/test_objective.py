"""The training objective against NumPy, decay only on masked kernels, and that it can be learned."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from featex_jax import adacos
from featex_jax import augment
from featex_jax import objective


def random_heads(rng, batch=6):
  heads = {}
  for name, n_classes in [("classification", 4), ("statex", 12), ("featex", 36)]:
    probs = rng.dirichlet(np.ones(n_classes), size=batch).astype(np.float32)
    labels = rng.dirichlet(np.full(n_classes, 0.3), size=batch).astype(np.float32)
    heads[name] = (probs, labels)
  return heads


def random_params(rng):
  params = {
    "conv": {"kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32)},
    "dense": {"kernel": rng.normal(size=(5, 3)).astype(np.float32)},
    "norm": {"scale": rng.normal(size=(4,)).astype(np.float32), "bias": rng.normal(size=(4,)).astype(np.float32)},
    "heads": {"centres": rng.normal(size=(6, 8)).astype(np.float32)},
  }
  mask = {
    "conv": {"kernel": True},
    "dense": {"kernel": True},
    "norm": {"scale": False, "bias": False},
    "heads": {"centres": False},
  }
  return params, mask


WEIGHTS = {"classification": 1.0, "statex": 0.0, "featex": 1.0}


def np_total_loss(heads, weights, params, weight_decay):
  loss = 0.0
  for name, (probs, labels) in heads.items():
    p = np.clip(probs / probs.sum(axis=1, keepdims=True), 1e-7, 1 - 1e-7)
    loss += weights[name] * np.mean(-np.sum(labels * np.log(p), axis=1))
  kernels = [params["conv"]["kernel"], params["dense"]["kernel"]]
  return loss + weight_decay * sum(np.sum(k.astype(np.float64) ** 2) for k in kernels)


def test_total_loss_matches_numpy():
  rng = np.random.default_rng(0)
  heads = random_heads(rng)
  params, mask = random_params(rng)
  weights = {"classification": 1.0, "statex": 0.3, "featex": 2.0}
  loss, metrics = objective.total_loss(heads, weights, params, mask, 1e-2)
  np.testing.assert_allclose(loss, np_total_loss(heads, weights, params, 1e-2), rtol=1e-5)
  np.testing.assert_allclose(metrics["loss/total"], loss)
  for name, (probs, labels) in heads.items():
    np.testing.assert_allclose(metrics[f"accuracy/{name}"], np.mean(probs.argmax(1) == labels.argmax(1)))
    np.testing.assert_allclose(
      metrics[f"loss/{name}"], np_total_loss({name: (probs, labels)}, {name: 1.0}, params, 0), rtol=1e-5
    )


def test_decay_only_on_masked_kernels():
  rng = np.random.default_rng(1)
  heads = random_heads(rng)
  params, mask = random_params(rng)
  grads, metrics = jax.grad(lambda p: objective.total_loss(heads, WEIGHTS, p, mask, 1e-5), has_aux=True)(params)
  for group, leaves in params.items():
    for name, value in leaves.items():
      expected = 2e-5 * value if mask[group][name] else np.zeros_like(value)
      np.testing.assert_allclose(grads[group][name], expected, rtol=1e-6, atol=0)
  np.testing.assert_allclose(
    metrics["loss/weight_decay"],
    1e-5 * (np.sum(params["conv"]["kernel"] ** 2) + np.sum(params["dense"]["kernel"] ** 2)),
    rtol=1e-6,
  )


def test_head_names_must_match_weights():
  rng = np.random.default_rng(2)
  params, mask = random_params(rng)
  with pytest.raises(ValueError, match="loss weights"):
    objective.total_loss(random_heads(rng), {"classification": 1.0}, params, mask, 1e-5)


# --- learning: embeddings from a linear map trained through the three heads -------------------

N_CLASSES, SUB, HALF, INPUT, BATCH = 3, 4, 8, 20, 12


def tiny_problem():
  rng = np.random.default_rng(3)
  classes = np.arange(BATCH) % N_CLASSES
  means = rng.normal(size=(N_CLASSES, INPUT))
  inputs = (means[classes] + 0.5 * rng.normal(size=(BATCH, INPUT))).astype(np.float32)
  keys = jax.random.split(jax.random.key(4), 4)
  params = {
    "spectrum": {"kernel": jax.random.normal(keys[0], (INPUT, HALF)) / np.sqrt(INPUT)},
    "spectrogram": {"kernel": jax.random.normal(keys[1], (INPUT, HALF)) / np.sqrt(INPUT)},
    "statex": {"centres": adacos.init_centres(keys[2], 2 * HALF, 3 * N_CLASSES, SUB)},
    "featex": {"centres": adacos.init_centres(keys[3], 2 * HALF, 9 * N_CLASSES, SUB)},
  }
  mask = {
    "spectrum": {"kernel": True},
    "spectrogram": {"kernel": True},
    "statex": {"centres": False},
    "featex": {"centres": False},
  }
  frozen_centres = adacos.init_centres(jax.random.key(5), 2 * HALF, N_CLASSES, SUB)
  return inputs, np.eye(N_CLASSES, dtype=np.float32)[classes], params, mask, frozen_centres


def make_loss(inputs, labels, mask, frozen_centres):
  def loss_fn(params, scales, key):
    statex_key, featex_key = jax.random.split(key)
    e1 = inputs @ params["spectrum"]["kernel"]
    e2 = inputs @ params["spectrogram"]["kernel"]
    statex_labels = augment.exchange_labels(jax.random.uniform(statex_key, (BATCH,)) < 0.5, labels)
    swapped, featex_labels = augment.featex(featex_key, e1, e2, statex_labels, 0.5)
    embedding = jnp.concatenate([e1, e2], axis=1)
    heads, new_scales = {}, {}
    for name, emb, centres, y in [
      ("classification", embedding, frozen_centres, labels),
      ("statex", embedding, params["statex"]["centres"], statex_labels),
      ("featex", swapped, params["featex"]["centres"], featex_labels),
    ]:
      probs, new_scales[name] = adacos.head(emb, centres, scales[name], y, SUB, train=True)
      heads[name] = (probs, y)
    loss, metrics = objective.total_loss(heads, WEIGHTS, params, mask, 1e-5)
    return loss, (new_scales, metrics)

  return loss_fn


def test_gradients_are_finite_and_adam_lowers_the_loss():
  inputs, labels, params, mask, frozen_centres = tiny_problem()
  loss_fn = make_loss(inputs, labels, mask, frozen_centres)
  scales = {
    "classification": adacos.initial_scale(N_CLASSES, SUB),
    "statex": adacos.initial_scale(3 * N_CLASSES, SUB),
    "featex": adacos.initial_scale(9 * N_CLASSES, SUB),
  }
  optimiser = optax.adam(1e-2, eps=1e-7)
  opt_state = optimiser.init(params)

  @jax.jit
  def step(params, opt_state, scales, key):
    (loss, (scales, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, scales, key)
    updates, opt_state = optimiser.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, scales, loss, grads

  losses = []
  with jax.default_matmul_precision("float32"):
    for i in range(30):
      params, opt_state, scales, loss, grads = step(params, opt_state, scales, jax.random.key(i))
      assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
      losses.append(float(loss))
  # The statex head has weight 0: its centres get no gradient.
  assert not np.any(grads["statex"]["centres"])
  assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
