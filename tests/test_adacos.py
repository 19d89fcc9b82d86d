"""Sub-cluster AdaCos against a float64 NumPy reference and the Keras layer's golden numbers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from featex_jax import adacos

# --- float64 NumPy reference, written plainly from the reference layer's definition ----------


def np_cosines(embeddings, centres):
  def normalise(x, axis):
    return x / np.sqrt(np.maximum(np.sum(x**2, axis=axis, keepdims=True), 1e-12))

  return normalise(embeddings, 1) @ normalise(centres, 0)


def np_tfp_median(values):
  """tfp.stats.percentile(values, 50) of TFP 0.23: ascending sort, index round-half-even((n-1)/2)."""
  return np.sort(values)[int(np.round((len(values) - 1) / 2))]


def np_class_angle(theta, labels, n_subclusters, mode):
  batch, n_classes = labels.shape
  angles = np.empty(batch)
  for i in range(batch):
    if mode == "reference":  # labels repeated per sub-cluster times all angles, times #non-zero
      total = sum(labels[i, j // n_subclusters] * theta[i, j] for j in range(theta.shape[1]))
      angles[i] = total * np.count_nonzero(labels[i])
    else:
      c = np.argmax(labels[i])
      angles[i] = theta[i, c * n_subclusters : (c + 1) * n_subclusters].min()
  return angles


def np_updated_scale(cos, labels, scale, n_subclusters, mode):
  theta = np.arccos(np.clip(cos, -1 + 1e-7, 1 - 1e-7))
  max_scaled = np.max(scale * cos)
  mean_sum_exp = np.mean(np.sum(np.exp(scale * cos - max_scaled), axis=1))
  median = np_tfp_median(np_class_angle(theta, labels, n_subclusters, mode))
  return (max_scaled + np.log(mean_sum_exp)) / np.cos(min(np.pi / 4, median)) + 1e-7


def np_class_probabilities(cos, scale, n_subclusters):
  logits = scale * cos
  p = np.exp(logits - logits.max(axis=1, keepdims=True))
  p /= p.sum(axis=1, keepdims=True)
  n_classes = cos.shape[1] // n_subclusters
  return np.stack([p[:, c * n_subclusters : (c + 1) * n_subclusters].sum(axis=1) for c in range(n_classes)], 1)


def np_categorical_crossentropy(labels, probs):
  probs = np.clip(probs / probs.sum(axis=1, keepdims=True), 1e-7, 1 - 1e-7)
  return -np.sum(labels * np.log(probs), axis=1)


# --- inputs -----------------------------------------------------------------------------------


def clustered_batch(seed, batch, n_classes, n_subclusters, dim=16, noise=0.3):
  """Embeddings near a centre of their class (small angles, so the median matters), and
  labels: one-hot, except every third row mixed over two classes (mixup-like)."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(dim, n_classes * n_subclusters))
  classes = rng.integers(0, n_classes, batch)
  columns = classes * n_subclusters + rng.integers(0, n_subclusters, batch)
  embeddings = centres[:, columns].T / np.linalg.norm(centres[:, columns].T, axis=1, keepdims=True)
  embeddings = embeddings * rng.uniform(0.5, 2, (batch, 1)) + noise * rng.normal(size=(batch, dim)) / np.sqrt(dim)
  labels = np.eye(n_classes)[classes]
  for i in range(0, batch, 3):
    lam = rng.uniform(0.2, 0.8)
    labels[i] = lam * labels[i] + (1 - lam) * np.eye(n_classes)[(classes[i] + 1) % n_classes]
  return embeddings, centres, labels


def f32(*arrays):
  return [np.asarray(a, np.float32) for a in arrays]


# --- tests ------------------------------------------------------------------------------------


def test_batch_median_is_tfp_nearest():
  """Hand values of tfp.stats.percentile(x, 50) (TFP 0.23, interpolation='nearest')."""
  for values, expected in [
    ([1, 2], 1),
    ([1, 2, 3], 2),
    ([1, 2, 3, 4], 3),
    ([1, 2, 3, 4, 5, 6], 3),
    ([1, 2, 3, 4, 5, 6, 7, 8], 5),
    ([4, 1, 3, 2], 3),
  ]:
    assert adacos.batch_median(jnp.asarray(values, jnp.float32)) == expected
    assert np_tfp_median(np.asarray(values)) == expected


@pytest.mark.parametrize("mode", adacos.SCALE_UPDATES)
@pytest.mark.parametrize("batch", [5, 6, 8])
@pytest.mark.parametrize("n_subclusters", [1, 4])
def test_head_matches_numpy(mode, batch, n_subclusters):
  n_classes = 3
  embeddings, centres, labels = clustered_batch(batch + n_subclusters, batch, n_classes, n_subclusters)
  scale = adacos.initial_scale(n_classes, n_subclusters)
  cos = np_cosines(embeddings, centres)
  new_scale = np_updated_scale(cos, labels, scale, n_subclusters, mode)
  probs = np_class_probabilities(cos, new_scale, n_subclusters)
  loss = np_categorical_crossentropy(labels, probs)
  with jax.default_matmul_precision("float32"):
    e, w, y = f32(embeddings, centres, labels)
    np.testing.assert_allclose(adacos.cosines(e, w), cos, rtol=1e-5, atol=1e-6)
    got_probs, got_scale = adacos.head(e, w, np.float32(scale), y, n_subclusters, train=True, mode=mode)
    np.testing.assert_allclose(got_scale, new_scale, rtol=1e-5)
    np.testing.assert_allclose(got_probs, probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(adacos.categorical_crossentropy(y, got_probs), loss, rtol=1e-4, atol=1e-6)
    eval_probs, eval_scale = adacos.head(e, w, np.float32(scale), y, n_subclusters, train=False, mode=mode)
  assert eval_scale == np.float32(scale)
  np.testing.assert_allclose(eval_probs, np_class_probabilities(cos, scale, n_subclusters), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(np.sum(got_probs, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("mode", adacos.SCALE_UPDATES)
@pytest.mark.parametrize("batch", [6, 8])
def test_scale_follows_the_tfp_median_when_below_pi_over_4(mode, batch):
  """One sub-cluster, one-hot rows near their centre: the median angle is below pi/4 and
  choosing the other middle value (np.median would average the two) changes the scale."""
  embeddings, centres, labels = clustered_batch(batch, batch, 3, 1, noise=0.6)
  labels = np.eye(3)[labels.argmax(axis=1)]
  cos = np_cosines(embeddings, centres)
  angles = np_class_angle(np.arccos(np.clip(cos, -1 + 1e-7, 1 - 1e-7)), labels, 1, mode)
  assert np_tfp_median(angles) < np.pi / 4 and np.median(angles) != np_tfp_median(angles)
  with jax.default_matmul_precision("float32"):
    got = adacos.updated_scale(*f32(cos, labels), np.float32(2.0), 1, mode)
  np.testing.assert_allclose(got, np_updated_scale(cos, labels, 2.0, 1, mode), rtol=1e-5)
  sorted_angles = np.sort(angles)
  other_middle = sorted_angles[batch // 2 - 1] if batch % 4 == 0 else sorted_angles[batch // 2]
  max_scaled = np.max(2.0 * cos)
  numerator = max_scaled + np.log(np.mean(np.sum(np.exp(2.0 * cos - max_scaled), axis=1)))
  assert abs(got - (numerator / np.cos(other_middle) + 1e-7)) > 1e-3


def random_mask(rng, batch, n_real):
  """n_real True entries at random positions."""
  mask = np.zeros(batch, bool)
  mask[rng.choice(batch, n_real, replace=False)] = True
  return mask


@pytest.mark.parametrize("n_real", range(1, 10))
def test_masked_median_is_tfp_nearest_of_the_real_rows(n_real):
  """Odd and even counts (n % 4 == 0 and 2 pick different middles), real rows anywhere."""
  rng = np.random.default_rng(n_real)
  values = rng.normal(size=11).astype(np.float32)
  mask = random_mask(rng, 11, n_real)
  assert adacos.batch_median(jnp.asarray(values), jnp.asarray(mask)) == np_tfp_median(values[mask])
  assert jax.jit(adacos.batch_median)(values, mask) == np_tfp_median(values[mask])


@pytest.mark.parametrize("mode", adacos.SCALE_UPDATES)
@pytest.mark.parametrize("n_real", [1, 3, 4, 5, 6, 8])
def test_masked_scale_and_head_are_those_of_the_real_rows(mode, n_real):
  """The max, the mean of sums and the median see only the real rows: padding rows holding
  larger cosines and other labels change nothing."""
  rng = np.random.default_rng(10 + n_real)
  n_classes, n_subclusters, batch = 3, 4, 8
  embeddings, centres, labels = clustered_batch(n_real, batch, n_classes, n_subclusters, noise=0.6)
  mask = random_mask(rng, batch, n_real)
  embeddings[~mask] = 5 * centres[:, 0]  # padding: on a centre, the largest cosine of the batch
  cos = np_cosines(embeddings, centres)
  expected = np_updated_scale(cos[mask], labels[mask], 3.0, n_subclusters, mode)
  with jax.default_matmul_precision("float32"):
    e, w, y = f32(embeddings, centres, labels)
    got = adacos.updated_scale(*f32(cos, labels), np.float32(3.0), n_subclusters, mode, jnp.asarray(mask))
    probs, scale = adacos.head(e, w, np.float32(3.0), y, n_subclusters, train=True, mode=mode, mask=jnp.asarray(mask))
    alone, alone_scale = adacos.head(e[mask], w, np.float32(3.0), y[mask], n_subclusters, train=True, mode=mode)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  np.testing.assert_allclose(scale, alone_scale, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(probs)[mask], alone, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", adacos.SCALE_UPDATES)
def test_all_true_mask_gives_the_unmasked_scale(mode):
  embeddings, centres, labels = f32(*clustered_batch(3, 8, 3, 4))
  cos = adacos.cosines(embeddings, centres)
  unmasked = adacos.updated_scale(cos, labels, np.float32(3.0), 4, mode)
  masked = adacos.updated_scale(cos, labels, np.float32(3.0), 4, mode, jnp.ones(8, bool))
  np.testing.assert_allclose(masked, unmasked, rtol=1e-7)


def test_class_angles_by_hand():
  """One sample, 2 classes x 2 sub-clusters, labels (0.3, 0.7). Reference: the label-weighted
  SUM of all angles times 2 non-zero entries (far above pi/4); textbook: the angle to the
  closest sub-cluster of class 1, arccos(0.95)."""
  cos = np.array([[0.1, 0.2, 0.95, 0.8]])
  labels = np.array([[0.3, 0.7]])
  theta = np.arccos(cos[0])
  np.testing.assert_allclose(
    np_class_angle(np.arccos(cos), labels, 2, "reference"),
    [(0.3 * (theta[0] + theta[1]) + 0.7 * (theta[2] + theta[3])) * 2],
  )
  np.testing.assert_allclose(np_class_angle(np.arccos(cos), labels, 2, "textbook"), [theta[2]])
  numerator = 3.0 * 0.95 + np.log(np.sum(np.exp(3.0 * (cos - 0.95))))
  for mode, denominator in [("reference", np.cos(np.pi / 4)), ("textbook", 0.95)]:
    got = adacos.updated_scale(*f32(cos, labels), np.float32(3.0), 2, mode)
    np.testing.assert_allclose(got, numerator / denominator + 1e-7, rtol=1e-6)


@pytest.mark.parametrize("head_name", ["N", "3N", "9N"])
def test_keras_golden_head(golden, head_name):
  prefix = f"adacos/{head_name}/"
  centres, labels, embeddings = golden[prefix + "W"], golden[prefix + "labels"], golden[prefix + "emb"]
  n_classes = labels.shape[1]
  np.testing.assert_allclose(adacos.initial_scale(n_classes, 16), golden[prefix + "s_before"], rtol=1e-7)
  with jax.default_matmul_precision("float32"):
    probs_eval, _ = adacos.head(embeddings, centres, golden[prefix + "s_before"], labels, 16, train=False)
    probs_train, scale = adacos.head(embeddings, centres, golden[prefix + "s_before"], labels, 16, train=True)
    loss = adacos.categorical_crossentropy(labels, probs_train)
  np.testing.assert_allclose(probs_eval, golden[prefix + "probs_eval"], rtol=0, atol=1e-5)
  np.testing.assert_allclose(scale, golden[prefix + "s_after"], rtol=1e-6)
  np.testing.assert_allclose(probs_train, golden[prefix + "probs_train"], rtol=0, atol=1e-5)
  np.testing.assert_allclose(loss, golden[prefix + "loss"], rtol=0, atol=1e-5)
  np.testing.assert_allclose(np.mean(loss), golden[prefix + "loss_mean"], rtol=0, atol=1e-5)


def test_keras_golden_weighted_total(golden):
  total = 0.0
  with jax.default_matmul_precision("float32"):
    for head_name, weight in [("N", 1.0), ("3N", 0.0), ("9N", 1.0)]:
      prefix = f"adacos/{head_name}/"
      labels = golden[prefix + "labels"]
      probs, _ = adacos.head(
        golden[prefix + "emb"], golden[prefix + "W"], golden[prefix + "s_before"], labels, 16, train=True
      )
      total += weight * float(jnp.mean(adacos.categorical_crossentropy(labels, probs)))
  np.testing.assert_allclose(total, golden["adacos/total_loss_weighted"], rtol=0, atol=1e-5)


def test_scale_has_no_gradient():
  """Training gradients equal those with the new scale held constant (stop_gradient)."""
  embeddings, centres, labels = f32(*clustered_batch(0, 6, 3, 4))

  def loss(e, w, train, scale):
    probs, _ = adacos.head(e, w, scale, labels, 4, train=train)
    return jnp.mean(adacos.categorical_crossentropy(labels, probs))

  with jax.default_matmul_precision("float32"):
    _, new_scale = adacos.head(embeddings, centres, np.float32(5.0), labels, 4, train=True)
    trained = jax.grad(loss, argnums=(0, 1))(embeddings, centres, True, np.float32(5.0))
    held = jax.grad(loss, argnums=(0, 1))(embeddings, centres, False, new_scale)
  for a, b in zip(trained, held):
    assert np.all(np.isfinite(a)) and np.abs(a).max() > 0
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_scale_of_a_sharded_batch_is_that_of_the_global_batch():
  devices = np.array(jax.devices())
  embeddings, centres, labels = f32(*clustered_batch(1, 2 * len(devices), 3, 4))
  sharding = NamedSharding(Mesh(devices, ("batch",)), PartitionSpec("batch"))
  step = jax.jit(lambda e, y: adacos.head(e, centres, np.float32(5.0), y, 4, train=True))
  with jax.default_matmul_precision("float32"):
    probs, scale = step(embeddings, labels)
    sharded_probs, sharded_scale = step(jax.device_put(embeddings, sharding), jax.device_put(labels, sharding))
  assert len(sharded_probs.sharding.device_set) == len(devices)
  np.testing.assert_allclose(sharded_scale, scale, rtol=1e-6)
  np.testing.assert_allclose(sharded_probs, probs, rtol=1e-5, atol=1e-7)


def test_init_centres_are_glorot_uniform_in_keras_layout():
  dim, n_classes, n_subclusters = 256, 4, 16
  centres = np.asarray(adacos.init_centres(jax.random.key(0), dim, n_classes, n_subclusters))
  assert centres.shape == (dim, n_classes * n_subclusters) and centres.dtype == np.float32
  limit = math.sqrt(6 / (dim + n_classes * n_subclusters))
  assert np.abs(centres).max() <= limit and np.abs(centres).max() > 0.99 * limit
  np.testing.assert_allclose(centres.std(), limit / math.sqrt(3), rtol=0.03)
  assert not np.array_equal(centres, adacos.init_centres(jax.random.key(1), dim, n_classes, n_subclusters))


def test_l2_normalize_guards_zero_vectors():
  x = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
  np.testing.assert_allclose(adacos.l2_normalize(x, axis=1), [[0.6, 0.8], [0.0, 0.0]])


def test_bad_input_is_named():
  cos = np.zeros((4, 8), np.float32)
  with pytest.raises(ValueError, match="scale update"):
    adacos.updated_scale(cos, np.zeros((4, 2), np.float32), 1.0, 4, mode="median")
  with pytest.raises(ValueError, match="do not match centres"):
    adacos.head(
      np.ones((4, 3), np.float32), np.ones((3, 8), np.float32), 1.0, np.ones((4, 3), np.float32), 4, train=True
    )
