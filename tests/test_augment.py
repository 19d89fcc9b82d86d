"""Mixup, StatEx and FeatEx against straightforward NumPy versions drawing the same uniforms."""

import functools

import jax
import numpy as np
import pytest

from featex_jax import augment

B, N_SAMPLES, T, F, C, D = 6, 40, 7, 9, 4, 5


def one_hot(rng, batch=B, classes=C):
  return np.eye(classes, dtype=np.float32)[rng.integers(0, classes, batch)]


def split_uniforms(key, batch=B):
  """The two draws of mixup (lambda, decision) and statex (axis, decision), by their split order."""
  first, second = jax.random.split(key)
  return np.asarray(jax.random.uniform(first, (batch,))), np.asarray(jax.random.uniform(second, (batch,)))


def featex_applied(key, prob, batch=B):
  return np.asarray(jax.random.uniform(key, (batch,))) < prob


def numpy_exchange_labels(applied, y):
  out = np.zeros((len(y), 3 * y.shape[1]), y.dtype)
  for i in range(len(y)):
    if applied[i]:
      out[i, y.shape[1] : 2 * y.shape[1]] = 0.5 * y[i]
      out[i, 2 * y.shape[1] :] = 0.5 * y[len(y) - 1 - i]
    else:
      out[i, : y.shape[1]] = y[i]
  return out


def numpy_mixup(x, y, lam, u, prob):
  x_out, y_out = x.copy(), y.copy()
  for i in range(len(x)):
    if u[i] < prob:
      j = len(x) - 1 - i
      x_out[i] = lam[i] * x[i] + (1 - lam[i]) * x[j]
      y_out[i] = lam[i] * y[i] + (1 - lam[i]) * y[j]
  return x_out, y_out


def numpy_exchange_frame_statistics(a, b):
  """a takes b's mean and population std, frame by frame (rows of [T, F])."""
  out = np.empty_like(a)
  for t in range(a.shape[0]):
    out[t] = (a[t] - a[t].mean()) / (a[t].std() + 1e-16) * b[t].std() + b[t].mean()
  return out


def numpy_statex(x, y, frequency_draws, decision_draws, prob, mode):
  out = x.copy()
  for i in range(len(x)):
    if decision_draws[i] < prob:
      partner = x[len(x) - 1 - i]
      frequency_wise = mode == "frequency" or (mode == "full" and frequency_draws[i] < 0.5)
      if frequency_wise:
        out[i] = numpy_exchange_frame_statistics(x[i].T, partner.T).T
      else:
        out[i] = numpy_exchange_frame_statistics(x[i], partner)
  return out, numpy_exchange_labels(decision_draws < prob, y)


@pytest.mark.parametrize("prob", [0.0, 0.5, 1.0])
def test_mixup_matches_numpy(prob):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(B, N_SAMPLES)).astype(np.float32)
  y = one_hot(rng)
  key = jax.random.key(1)
  lam, u = split_uniforms(key)
  x_out, y_out = augment.mixup(key, x, y, prob)
  x_ref, y_ref = numpy_mixup(x, y, lam, u, prob)
  np.testing.assert_allclose(x_out, x_ref, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(y_out, y_ref, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.sum(y_out, axis=1), 1.0, rtol=1e-6)
  if prob == 0.0:
    np.testing.assert_array_equal(x_out, x)
    np.testing.assert_array_equal(y_out, y)
  if prob == 1.0:  # every clip moves (the draws make lambda < 1, the partners differ)
    assert np.all(np.abs(np.asarray(x_out) - x).max(axis=1) > 0)


@pytest.mark.parametrize("mode", augment.STATEX_MODES)
@pytest.mark.parametrize("prob", [0.0, 0.5, 1.0])
def test_statex_matches_numpy(mode, prob):
  rng = np.random.default_rng(2)
  x = np.abs(rng.normal(size=(B, T, F))).astype(np.float32) * rng.uniform(0.5, 3, size=(B, 1, 1)).astype(np.float32)
  y = one_hot(rng)
  key = jax.random.key(3)
  frequency_draws, decision_draws = split_uniforms(key)
  x_out, y_out = augment.statex(key, x, y, prob, mode)
  x_ref, y_ref = numpy_statex(x, y, frequency_draws, decision_draws, prob, mode)
  assert x_out.shape == (B, T, F) and y_out.shape == (B, 3 * C)
  np.testing.assert_allclose(x_out, x_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(y_out, y_ref, rtol=0, atol=0)
  np.testing.assert_allclose(np.sum(y_out, axis=1), 1.0, rtol=1e-6)
  if prob == 0.0:
    np.testing.assert_array_equal(x_out, x)
    np.testing.assert_array_equal(y_out[:, :C], y)
    assert not np.any(y_out[:, C:])
  if prob == 1.0:
    assert not np.any(y_out[:, :C])
    np.testing.assert_array_equal(y_out[:, C : 2 * C], 0.5 * y)
    np.testing.assert_array_equal(y_out[:, 2 * C :], 0.5 * y[::-1])


def test_statex_temporal_frames_take_partner_statistics():
  rng = np.random.default_rng(4)
  x = rng.gamma(2.0, size=(B, T, F)).astype(np.float32)
  x_out = np.asarray(augment.statex(jax.random.key(0), x, one_hot(rng), 1.0, "temporal")[0])
  np.testing.assert_allclose(x_out.mean(axis=2), x[::-1].mean(axis=2), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(x_out.std(axis=2), x[::-1].std(axis=2), rtol=1e-4, atol=1e-5)
  # ... while each frame keeps its own shape: the standardised frames are unchanged.
  standardise = lambda a: (a - a.mean(axis=2, keepdims=True)) / a.std(axis=2, keepdims=True)
  np.testing.assert_allclose(standardise(x_out), standardise(x), rtol=1e-4, atol=1e-4)


def test_statex_frequency_bins_take_partner_statistics():
  rng = np.random.default_rng(5)
  x = rng.gamma(2.0, size=(B, T, F)).astype(np.float32)
  x_out = np.asarray(augment.statex(jax.random.key(0), x, one_hot(rng), 1.0, "frequency")[0])
  np.testing.assert_allclose(x_out.mean(axis=1), x[::-1].mean(axis=1), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(x_out.std(axis=1), x[::-1].std(axis=1), rtol=1e-4, atol=1e-5)


def test_statex_constant_frame_takes_partner_mean():
  """A silent frame (std 0) is guarded by 1e-16: it becomes the partner's frame mean, no NaN."""
  x = np.ones((2, 3, 4), np.float32)
  x[1] = np.arange(12, dtype=np.float32).reshape(3, 4)
  x_out = np.asarray(augment.statex(jax.random.key(0), x, np.eye(2, dtype=np.float32), 1.0)[0])
  assert np.all(np.isfinite(x_out))
  np.testing.assert_allclose(x_out[0], np.broadcast_to(x[1].mean(axis=1, keepdims=True), (3, 4)))


@pytest.mark.parametrize("prob", [0.0, 0.5, 1.0])
def test_featex_swaps_spectrogram_embeddings(prob):
  rng = np.random.default_rng(6)
  e1 = rng.normal(size=(B, D)).astype(np.float32)
  e2 = rng.normal(size=(B, D)).astype(np.float32)
  y = rng.dirichlet(np.ones(3 * C), size=B).astype(np.float32)  # StatEx-like 3C-wide soft labels
  key = jax.random.key(7)
  applied = featex_applied(key, prob)
  embedding, labels = augment.featex(key, e1, e2, y, prob)
  assert embedding.shape == (B, 2 * D) and labels.shape == (B, 9 * C)
  np.testing.assert_array_equal(embedding[:, :D], e1)
  np.testing.assert_array_equal(embedding[:, D:], np.where(applied[:, None], e2[::-1], e2))
  np.testing.assert_allclose(labels, numpy_exchange_labels(applied, y), rtol=0, atol=0)
  np.testing.assert_allclose(np.sum(labels, axis=1), 1.0, rtol=1e-5)
  if prob in (0.0, 1.0):  # the identity, and a swap for every clip
    np.testing.assert_array_equal(embedding[:, D:], e2 if prob == 0.0 else e2[::-1])


def test_prob_half_applies_to_some_clips_only():
  applied = featex_applied(jax.random.key(8), 0.5, batch=64)
  assert 0 < applied.sum() < 64
  e = np.arange(64 * 2, dtype=np.float32).reshape(64, 2)
  embedding = np.asarray(augment.featex(jax.random.key(8), e, e, np.eye(64, dtype=np.float32), 0.5)[0])
  np.testing.assert_array_equal(embedding[:, 2:] != e, np.broadcast_to(applied[:, None], (64, 2)))


def test_augmentation_only_labels_follow_the_same_decisions():
  """Ablation without class labels: 3 then 9 targets, decided exactly as with class labels."""
  rng = np.random.default_rng(9)
  x = rng.gamma(2.0, size=(B, T, F)).astype(np.float32)
  e = rng.normal(size=(B, D)).astype(np.float32)
  y = one_hot(rng)
  statex_key, featex_key = jax.random.key(10), jax.random.key(11)
  ones = augment.augmentation_only_labels(B)
  x_classes, y3 = augment.statex(statex_key, x, y, 0.5)
  x_plain, a3 = augment.statex(statex_key, x, ones, 0.5)
  np.testing.assert_array_equal(x_classes, x_plain)
  _, y9 = augment.featex(featex_key, e, e, y3, 0.5)
  _, a9 = augment.featex(featex_key, e, e, a3, 0.5)
  assert a3.shape == (B, 3) and a9.shape == (B, 9)
  np.testing.assert_allclose(np.sum(a9, axis=1), 1.0)
  # The augmentation-only target of a clip is its class target summed over the classes.
  np.testing.assert_allclose(a3, np.asarray(y3).reshape(B, 3, C).sum(axis=2), atol=1e-7)
  np.testing.assert_allclose(a9, np.asarray(y9).reshape(B, 9, C).sum(axis=2), atol=1e-7)
  assert 0 < (a3[:, 0] == 1).sum() < B  # both outcomes occur with this key


@pytest.mark.parametrize(
  "real", [[1, 1, 1, 1, 1, 0, 0, 0], [1, 0, 1, 1, 0, 0, 1, 1], [1, 0, 0, 0, 0, 0, 0, 0], [1] * 8]
)
def test_partners_are_the_real_rows_reversed(real):
  """Real rows k = 0..n-1 (in order) pair with real row n-1-k, as the reference reverses its
  batch of n; padding rows pair with themselves."""
  mask = np.asarray(real, bool)
  expected = np.arange(len(mask))
  real_rows = np.flatnonzero(mask)
  expected[real_rows] = real_rows[::-1]
  np.testing.assert_array_equal(augment.partner_rows(mask), expected)
  np.testing.assert_array_equal(jax.jit(augment.partner_rows)(mask), expected)
  x = np.arange(len(mask) * 2).reshape(-1, 2)
  np.testing.assert_array_equal(augment.partner(x, mask), x[expected])


PADDED = 9  # B = 6 real clips padded to 9


def padded(x, rng):
  """x [B, ...] followed by PADDED - B rows of other random values."""
  return np.concatenate([x, rng.normal(size=(PADDED - B,) + x.shape[1:]).astype(x.dtype)])


def test_padded_batch_augments_its_real_clips_as_a_batch_of_them():
  """The draws for the first n rows of a padded batch are those of a batch of n, and the
  partners are the real rows reversed: mixup, StatEx (each mode) and FeatEx give the real rows
  exactly what the unpadded batch gets."""
  rng = np.random.default_rng(14)
  mask = np.arange(PADDED) < B
  w = rng.normal(size=(B, N_SAMPLES)).astype(np.float32)
  x = rng.gamma(2.0, size=(B, T, F)).astype(np.float32)
  e1, e2 = rng.normal(size=(2, B, D)).astype(np.float32)
  y = one_hot(rng)
  key = jax.random.key(15)
  cases = [(augment.mixup, (w, y)), (augment.featex, (e1, e2, y))]
  cases += [(functools.partial(augment.statex, mode=mode), (x, y)) for mode in augment.STATEX_MODES]
  for fn, args in cases:
    alone = fn(key, *args, 0.5)
    with_padding = fn(key, *[padded(a, rng) for a in args], 0.5, mask=mask)
    for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(with_padding)):
      np.testing.assert_allclose(np.asarray(b)[:B], a, rtol=1e-6, atol=1e-6)


def test_augmentations_jit():
  rng = np.random.default_rng(12)
  x = rng.gamma(2.0, size=(B, T, F)).astype(np.float32)
  w = rng.normal(size=(B, N_SAMPLES)).astype(np.float32)
  y = one_hot(rng)
  key = jax.random.key(13)
  for fn, args in [
    (augment.mixup, (key, w, y, 0.5)),
    (functools.partial(augment.statex, mode="full"), (key, x, y, 0.5)),
    (augment.featex, (key, w, w, y, 0.5)),
  ]:
    eager = fn(*args)
    jitted = jax.jit(fn)(*args)  # prob traced too: it may come from a schedule
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_bad_input_is_named():
  x = np.zeros((B, T, F), np.float32)
  with pytest.raises(ValueError, match="statex mode"):
    augment.statex(jax.random.key(0), x, np.zeros((B, C), np.float32), 0.5, mode="time")
  with pytest.raises(ValueError, match=r"spectrogram \[batch, frames, bins\]"):
    augment.statex(jax.random.key(0), x[..., None], np.zeros((B, C), np.float32), 0.5)
  with pytest.raises(ValueError, match="labels"):
    augment.mixup(jax.random.key(0), x, np.zeros((B + 1, C), np.float32), 0.5)
