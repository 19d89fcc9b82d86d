"""The embedding network: a spectrum branch and a ResNet spectrogram branch, 128 dims each.

Flax Linen, because the training step wants a pure function: `model.apply({'params': p,
'batch_stats': s}, waveforms, train=True, mutable=['batch_stats'])` returns the
embeddings and the new BatchNorm statistics with no hidden state, so it jits, shards and
differentiates like any other function.

Layer for layer the authors' Keras model (wilkinghoff/ssl4asd, `model_emb_cnn`), checked
weight for weight against it (tests/test_keras_parity.py). What the reference does, and
this module does too:

- no bias anywhere; glorot-uniform kernels (Keras' default, also in the SE denses);
  BatchNorm epsilon 1e-3, momentum 0.99, biased batch variance computed in two passes;
- 'same' padding is TensorFlow's: pad_before = total // 2, the odd one after (a stride-2
  layer on an even size pads only after); 'same' max-pools pad with -inf;
- the spectrogram is linear |STFT| (no log, no mel); the temporal mean of each frequency
  bin is subtracted (TMN) and a BatchNorm normalises each of the 513 frequency bins;
- stem: Conv 7x7/2 -> BN -> ReLU -> MaxPool 3x3/2 'valid';
- stage 16: block 1 has no BatchNorm in front (it follows the stem's BN); block 2 applies
  ReLU *before* its inner BatchNorm, and its shortcut is the normalised input;
- stages 32, 64, 128: block 1 convolves with stride 2, and its shortcut is
  Conv1x1(MaxPool 2x2 'same'(BN(x))), taken from the BN output, not the ReLU;
- the time axis is max-pooled away (the reference's MaxPool (18, 1) covers all 18 frames of
  an 18 s clip; here it covers all frames of any clip length), flattened row-major as
  (frequency, channel), batch-normalised, then Dense 128.

`dtype` sets the computation dtype (bfloat16 as a setting); parameters, BatchNorm
statistics, the features and the returned embeddings stay float32. `mask` [B] marks the real
clips of a padded partial batch: BatchNorm's batch statistics (and so its running averages)
are those of the real clips only, as if the padding were not there. `cpu_kernels` swaps in
featex_jax.cpu_ops' convolution and max-pool, the same functions in forms XLA:CPU runs faster.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from featex_jax import cpu_ops
from featex_jax import features

KERNEL_INIT = nn.initializers.glorot_uniform()  # Keras' default kernel initialiser
SPECTRUM_CONVS = ((256, 64), (64, 32), (16, 4))  # (kernel, stride) of the spectrum branch
SPECTRUM_CHANNELS = 128
SPECTRUM_DENSE_LAYERS = 4
STEM_CHANNELS = 16
STAGE_CHANNELS = (16, 32, 64, 128)
SE_DENSE_NAMES = ("squeeze", "excite")  # the reference puts no L2 penalty on these


def row_masked_moments(x, rows=None):
  """Per-channel (last axis) mean and biased variance over every other axis, in two passes as
  Keras computes them, counting only the rows (first axis) where `rows` [B] is True (None: all).

  The count is the number of real rows times the size of a row: Flax's `mask=` counts the
  broadcast mask element by element instead, a reduction as large as the activations that
  cost about 5% of a CPU training step (BENCHMARKS.md).
  """
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  axes = tuple(range(x.ndim - 1))
  if rows is None:
    rows = jnp.ones(x.shape[0], bool)  # a constant: XLA folds the selects away
  keep = rows.reshape((-1,) + (1,) * (x.ndim - 1))
  count = rows.sum(dtype=x.dtype) * (x.size // (x.shape[0] * x.shape[-1]))
  mean = jnp.where(keep, x, 0).sum(axes) / count
  return mean, jnp.where(keep, jnp.square(x - mean), 0).sum(axes) / count


class RowMaskedBatchNorm(nn.Module):
  """Keras' BatchNorm over the last axis (Flax's BatchNorm variables: params scale/bias,
  batch_stats mean/var), whose batch statistics cover only the rows where `rows` [B] is True."""

  use_running_average: bool = False
  momentum: float = 0.99
  epsilon: float = 1e-3
  dtype: Any = None
  rows: jax.Array | None = None

  @nn.compact
  def __call__(self, x):
    features = (x.shape[-1],)
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
    running_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
    if self.use_running_average:
      mean, var = running_mean.value, running_var.value
    else:
      mean, var = row_masked_moments(x, self.rows)
      if not self.is_initializing():
        running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
        running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
    scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
    y = (x - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
    return y.astype(self.dtype or jnp.promote_types(x.dtype, jnp.float32))


class SqueezeExcitation(nn.Module):
  """Channel gates from the global average: x * sigmoid(W2 relu(W1 mean(x)))."""

  dense: Callable[..., nn.Module]
  ratio: int = 16

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    pooled = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)), dtype=jnp.float32)
    gate = nn.relu(self.dense(channels // self.ratio, name=SE_DENSE_NAMES[0])(pooled))
    gate = nn.sigmoid(self.dense(channels, name=SE_DENSE_NAMES[1])(gate))
    return x * gate.reshape(gate.shape[0], *(1,) * (x.ndim - 2), channels)


class SpectrumBranch(nn.Module):
  """|FFT| [B, bins] -> e1 [B, embedding_dim]: 3 strided Conv1D/ReLU/SE, 4 Dense/BN/ReLU."""

  conv: Callable[..., nn.Module]
  dense: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]
  embedding_dim: int = 128
  se_ratio: int = 16

  @nn.compact
  def __call__(self, spectrum):
    x = spectrum[..., None]
    for i, (kernel, stride) in enumerate(SPECTRUM_CONVS):
      x = nn.relu(self.conv(SPECTRUM_CHANNELS, (kernel,), strides=(stride,), name=f"conv_{i}")(x))
      x = SqueezeExcitation(self.dense, self.se_ratio, name=f"se_{i}")(x)
    x = x.reshape(x.shape[0], -1)
    self.sow("intermediates", "flatten", x)
    for i in range(SPECTRUM_DENSE_LAYERS):
      x = self.dense(SPECTRUM_CHANNELS, name=f"dense_{i}")(x)
      x = nn.relu(self.norm(name=f"bn_{i}")(x))
    return self.dense(self.embedding_dim, name="embedding")(x)


class ResidualBlock(nn.Module):
  """One pre-activation unit: [BN] -> ReLU -> Conv3x3 -> BN -> ReLU -> Conv3x3 -> SE, plus shortcut.

  `normalise_input`: BN on the block input, which is then also the shortcut (all blocks
  but the first). `strides` 2: the shortcut is Conv1x1(MaxPool 2x2 'same'). `relu_before_norm`:
  the reference's order Conv -> ReLU -> BN in the middle (stage 16, block 2 only).
  """

  features: int
  conv: Callable[..., nn.Module]
  dense: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]
  se_ratio: int = 16
  strides: int = 1
  normalise_input: bool = True
  relu_before_norm: bool = False
  pool: Callable[..., Any] = nn.max_pool

  @nn.compact
  def __call__(self, x):
    if self.normalise_input:
      x = self.norm(name="bn_in")(x)
    r = self.conv(self.features, (3, 3), strides=(self.strides,) * 2, name="conv_a")(nn.relu(x))
    if self.relu_before_norm:
      r = self.norm(name="bn_a")(nn.relu(r))
    else:
      r = nn.relu(self.norm(name="bn_a")(r))
    r = self.conv(self.features, (3, 3), name="conv_b")(r)
    r = SqueezeExcitation(self.dense, self.se_ratio, name="se")(r)
    if self.strides > 1:
      pooled = self.pool(x, (self.strides,) * 2, strides=(self.strides,) * 2, padding="SAME")
      x = self.conv(self.features, (1, 1), name="shortcut")(pooled)
    x = x + r
    self.sow("intermediates", "output", x)
    return x


class ResidualStage(nn.Module):
  """Two residual blocks. The first stage keeps the resolution and carries the reference's
  quirks (no BN in front of block 1, ReLU before BN inside block 2); later stages halve it."""

  features: int
  conv: Callable[..., nn.Module]
  dense: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]
  se_ratio: int = 16
  first: bool = False
  pool: Callable[..., Any] = nn.max_pool

  @nn.compact
  def __call__(self, x):
    block = functools.partial(
      ResidualBlock, self.features, self.conv, self.dense, self.norm, self.se_ratio, pool=self.pool
    )
    x = block(strides=1 if self.first else 2, normalise_input=not self.first, name="block_1")(x)
    return block(relu_before_norm=self.first, name="block_2")(x)


class SpectrogramBranch(nn.Module):
  """|STFT| [B, frames, bins] -> e2 [B, embedding_dim]: TMN, BN per bin, ResNet, time max."""

  conv: Callable[..., nn.Module]
  dense: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]
  embedding_dim: int = 128
  se_ratio: int = 16
  temporal_mean_normalisation: bool = True
  pool: Callable[..., Any] = nn.max_pool

  @nn.compact
  def __call__(self, spectrogram):
    x = spectrogram
    if self.temporal_mean_normalisation:
      x = x - jnp.mean(x, axis=1, keepdims=True)
    x = self.norm(name="frequency_bn")(x)  # [B, T, F]: one statistic per frequency bin
    self.sow("intermediates", "normalised", x)
    x = self.conv(STEM_CHANNELS, (7, 7), strides=(2, 2), name="stem_conv")(x[..., None])
    x = nn.relu(self.norm(name="stem_bn")(x))
    x = self.pool(x, (3, 3), strides=(2, 2), padding="VALID")
    for i, channels in enumerate(STAGE_CHANNELS):
      x = ResidualStage(
        channels,
        self.conv,
        self.dense,
        self.norm,
        self.se_ratio,
        first=i == 0,
        pool=self.pool,
        name=f"stage_{channels}",
      )(x)
    x = jnp.max(x, axis=1)  # over all remaining frames: [B, F', C]
    x = x.reshape(x.shape[0], -1)  # row-major (frequency, channel), as Keras' Flatten
    self.sow("intermediates", "flat", x)
    x = self.norm(name="flat_bn")(x)
    return self.dense(self.embedding_dim, name="embedding")(x)


class FeatExNet(nn.Module):
  """Waveforms [B, n] -> (e1, e2), each [B, embedding_dim] float32; the embedding is concat(e1, e2).

  `spectrogram` overrides the |STFT| of `waveforms` for the spectrogram branch: the training
  step passes the StatEx-augmented one (StatEx sits between the STFT and TMN).
  """

  embedding_dim: int = 128
  se_ratio: int = 16
  temporal_mean_normalisation: bool = True
  bn_epsilon: float = 1e-3
  bn_momentum: float = 0.99
  frame_length: int = 1024
  hop_length: int = 512
  spectrum_bins: int | None = None
  dtype: Any = jnp.float32
  cpu_kernels: str = "auto"  # "auto" (cpu_ops on the CPU backend) | "xla" | "custom"

  def magnitude_spectrogram(self, waveforms):
    """The |STFT| this model feeds its spectrogram branch (what StatEx augments)."""
    return features.magnitude_spectrogram(waveforms, self.frame_length, self.hop_length)

  @nn.compact
  def __call__(self, waveforms, spectrogram=None, *, train: bool, mask=None):
    if spectrogram is None:
      spectrogram = self.magnitude_spectrogram(waveforms)
    spectrum = features.spectrum(waveforms, self.spectrum_bins)
    self.sow("intermediates", "fft_magnitude", spectrum)
    self.sow("intermediates", "stft_magnitude", spectrogram)
    custom = cpu_ops.wanted(self.cpu_kernels)
    conv = functools.partial(
      nn.Conv,
      use_bias=False,
      padding="SAME",
      kernel_init=KERNEL_INIT,
      dtype=self.dtype,
      conv_general_dilated=cpu_ops.conv_general_dilated if custom else None,
    )
    dense = functools.partial(nn.Dense, use_bias=False, kernel_init=KERNEL_INIT, dtype=self.dtype)
    norm = functools.partial(
      RowMaskedBatchNorm,
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=self.bn_epsilon,
      dtype=self.dtype,
      rows=mask,
    )
    e1 = SpectrumBranch(conv, dense, norm, self.embedding_dim, self.se_ratio, name="spectrum")(spectrum)
    e2 = SpectrogramBranch(
      conv,
      dense,
      norm,
      self.embedding_dim,
      self.se_ratio,
      self.temporal_mean_normalisation,
      pool=cpu_ops.max_pool if custom else nn.max_pool,
      name="spectrogram",
    )(spectrogram)
    return e1.astype(jnp.float32), e2.astype(jnp.float32)


def embed(model, variables, waveforms):
  """Inference embedding concat(e1, e2) [B, 2 * embedding_dim] float32 (no augmentation)."""
  e1, e2 = model.apply(variables, waveforms, train=False)
  return jnp.concatenate([e1, e2], axis=-1)


def create_model(config):
  """FeatExNet from the `model` block of a config (configs/dcase2023.py)."""
  return FeatExNet(
    embedding_dim=config.embedding_dim,
    se_ratio=config.se_ratio,
    temporal_mean_normalisation=config.temporal_mean_normalisation,
    bn_epsilon=config.bn_epsilon,
    bn_momentum=config.bn_momentum,
    frame_length=config.frame_length,
    hop_length=config.hop_length,
    spectrum_bins=config.spectrum_bins,
    dtype=jnp.dtype(config.dtype),
    cpu_kernels=config.get("cpu_kernels", "auto"),
  )  # runs saved before the setting existed: auto


def decayed_kernels_mask(params):
  """True for the kernels the reference puts its L2 penalty on: every conv and dense kernel
  except those inside squeeze-excitation blocks (the reference's SE denses have none)."""

  def decayed(path, _):
    names = [getattr(key, "key", key) for key in path]
    return names[-1] == "kernel" and names[-2] not in SE_DENSE_NAMES

  return jax.tree_util.tree_map_with_path(decayed, params)
