"""Mixup, statistics exchange (StatEx) and feature exchange (FeatEx) as pure, jit-able functions.

Every augmentation pairs clip i with its partner, clip B-1-i (the batch reversed along axis 0,
as in the authors' Keras layers), and decides per clip, from its PRNG key alone, whether it
applies (uniform u < prob). The decisions never depend on the labels, so the same key gives the
same augmentation whichever labels are passed: for the ablation "SSL loss without class
labels" the train step passes `augmentation_only_labels(batch)` instead of the class labels and
gets the 3- and 9-class targets of the same exchanges.

A padded partial batch passes `mask` [B] (True = real clip): the real clips are then reversed
among themselves, as the reference reverses its partial last batch, and each padding row is
its own partner, so padding never reaches a real clip. The draws of a batch of B begin with
those of a batch of n <= B (jax_threefry_partitionable, JAX's default), so n real clips padded
to B are augmented exactly as a batch of n (tested).

Random draws, so that a test can reproduce them:
  mixup:  lambda_key, decision_key = jax.random.split(key);
          lam = uniform(lambda_key, [B]); applied = uniform(decision_key, [B]) < prob.
  statex: axis_key, decision_key = jax.random.split(key);
          applied = uniform(decision_key, [B]) < prob;
          mode "full" only: frequency_wise = uniform(axis_key, [B]) < 0.5.
  featex: applied = uniform(key, [B]) < prob.

The reference's StatEx and FeatEx layers apply the exchange when u >= prob (their `prob` is the
probability of keeping the clip); here `prob` is always the probability of applying. Both use
0.5, where the two readings coincide.
"""

import jax
import jax.numpy as jnp

STATEX_MODES = ("temporal", "frequency", "full")


def mixup(key, waveforms, labels, prob, mask=None):
  """Mix each clip with its partner, x = l*x1 + (1-l)*x2 and y alike, l ~ U(0, 1), if u < prob.

  waveforms [B, ...], labels [B, C] -> (waveforms, labels) of the same shapes.
  """
  _check_batch(waveforms, labels)
  lambda_key, decision_key = jax.random.split(key)
  batch = waveforms.shape[0]
  lam = jax.random.uniform(lambda_key, (batch,))
  applied = _decide(decision_key, batch, prob)

  def mix(x):
    weight = _per_sample(lam, x).astype(x.dtype)
    mixed = weight * x + (1 - weight) * partner(x, mask)
    return jnp.where(_per_sample(applied, x), mixed, x)

  return mix(waveforms), mix(labels)


def statex(key, spectrogram, labels, prob, mode="temporal", mask=None):
  """Give each clip its partner's spectral statistics: labels [B, C] -> [B, 3C].

  spectrogram [B, T, F]. "temporal": every frame takes the mean and (population) std over
  frequency of the partner's same frame; "frequency": every bin takes the partner's statistics
  over time; "full": a 50/50 choice between the two per clip (the reference's layer has the
  choice but fixes its probability to 0, i.e. temporal only).
  """
  if mode not in STATEX_MODES:
    raise ValueError(f"statex mode must be one of {STATEX_MODES}, got {mode!r}")
  if spectrogram.ndim != 3:
    raise ValueError(f"statex expects a spectrogram [batch, frames, bins], got shape {spectrogram.shape}")
  _check_batch(spectrogram, labels)
  axis_key, decision_key = jax.random.split(key)
  batch = spectrogram.shape[0]
  applied = _decide(decision_key, batch, prob)
  if mode == "temporal":
    exchanged = exchange_statistics(spectrogram, axis=2, mask=mask)
  elif mode == "frequency":
    exchanged = exchange_statistics(spectrogram, axis=1, mask=mask)
  else:
    frequency_wise = jax.random.uniform(axis_key, (batch,)) < 0.5
    exchanged = jnp.where(
      frequency_wise[:, None, None],
      exchange_statistics(spectrogram, axis=1, mask=mask),
      exchange_statistics(spectrogram, axis=2, mask=mask),
    )
  spectrogram = jnp.where(applied[:, None, None], exchanged, spectrogram)
  return spectrogram, exchange_labels(applied, labels, mask)


def featex(key, e1, e2, labels, prob, mask=None):
  """Pair each clip's spectrum embedding e1 with its partner's spectrogram embedding e2.

  e1, e2 [B, D], labels [B, C] -> (embedding [B, 2D] = concat(e1, e2 or the partner's e2),
  labels [B, 3C]). In the full system labels are StatEx's 3N-wide labels, giving 9N.
  """
  _check_batch(e1, labels)
  _check_batch(e2, labels)
  applied = _decide(key, e1.shape[0], prob)
  e2 = jnp.where(applied[:, None], partner(e2, mask), e2)
  return jnp.concatenate([e1, e2], axis=1), exchange_labels(applied, labels, mask)


def exchange_statistics(x, axis, mask=None):
  """(x1 - mu1) / (sigma1 + 1e-16) * sigma2 + mu2 along `axis`, clip 2 = the partner."""
  mean = jnp.mean(x, axis=axis, keepdims=True)
  std = jnp.std(x, axis=axis, keepdims=True)  # population std, as tf.math.reduce_std
  return (x - mean) / (std + 1e-16) * partner(std, mask) + partner(mean, mask)


def exchange_labels(applied, labels, mask=None):
  """Targets of an exchange, C -> 3C: kept -> (y, 0, 0); exchanged -> (0, y/2, y_partner/2)."""
  zeros = jnp.zeros_like(labels)
  kept = jnp.concatenate([labels, zeros, zeros], axis=1)
  exchanged = jnp.concatenate([zeros, 0.5 * labels, 0.5 * partner(labels, mask)], axis=1)
  return jnp.where(applied[:, None], exchanged, kept)


def partner_rows(mask):
  """Row of each row's partner: the real rows (mask True) in reverse order among themselves,
  so for real rows 0..n-1 row i pairs with n-1-i; a padding row pairs with itself."""
  rows = jnp.arange(mask.shape[0])
  real_first = jnp.argsort(~mask, stable=True)  # the real rows' positions, in order, then the padding
  rank = jnp.cumsum(mask) - 1  # each real row's place among the real rows
  return jnp.where(mask, real_first[jnp.clip(jnp.sum(mask) - 1 - rank, 0)], rows)


def partner(x, mask=None):
  """x of each row's partner along axis 0: the reversed batch, or with a mask `partner_rows`."""
  return x[::-1] if mask is None else jnp.take(x, partner_rows(mask), axis=0)


def augmentation_only_labels(batch_size, dtype=jnp.float32):
  """One constant class [B, 1]: through statex it gives 3 classes, through featex then 9.

  The targets then say only which exchanges were applied (ablation "SSL loss without class
  labels").
  """
  return jnp.ones((batch_size, 1), dtype)


def _decide(key, batch, prob):
  return jax.random.uniform(key, (batch,)) < prob


def _per_sample(values, x):
  """[B] -> [B, 1, ..., 1], broadcastable against x."""
  return values.reshape((-1,) + (1,) * (x.ndim - 1))


def _check_batch(x, labels):
  if labels.ndim != 2 or x.shape[0] != labels.shape[0]:
    raise ValueError(f"expected labels [batch, classes] with the batch of the data {x.shape}, got {labels.shape}")
