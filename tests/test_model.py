"""FeatExNet: the reference's shapes and parameter counts, BatchNorm semantics, dtypes, any clip length."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dcase2023
from featex_jax import convert_keras
from featex_jax import features
from featex_jax import model as model_lib

SHORT = 32_000  # 2 s clips keep the CPU tests fast


def variable_shapes(model, n_samples):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, n_samples)), train=False))


def numpy_variables(model, n_samples, seed=0):
  """Glorot-uniform kernels and non-trivial BatchNorm values drawn with NumPy (Flax's threefry
  initialisers take minutes to compile on a busy 2-core CPU)."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name, shape = path[-1].key, leaf.shape
    if name == "kernel":
      receptive = math.prod(shape[:-2])
      limit = math.sqrt(6 / (receptive * (shape[-2] + shape[-1])))
      return rng.uniform(-limit, limit, shape).astype(np.float32)
    if name in ("scale", "var"):
      return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return rng.normal(0, 0.1, shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, variable_shapes(model, n_samples))


def count(tree):
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def clips():
  return np.random.default_rng(1).normal(0, 0.1, (2, SHORT)).astype(np.float32)


@pytest.fixture(scope="module")
def variables():
  return numpy_variables(model_lib.FeatExNet(), SHORT)


@functools.partial(jax.jit, static_argnames=("model", "train"))
def apply(model, variables, waveforms, spectrogram, train):
  return model.apply(
    variables, waveforms, spectrogram, train=train, mutable=["batch_stats", "intermediates"] if train else False
  )


def test_parameter_counts_equal_the_reference():
  shapes = variable_shapes(model_lib.FeatExNet(), 288_000)
  assert count(shapes["params"]) == 2_683_634  # Keras: trainable minus the AdaCos centres
  assert count(shapes["batch_stats"]) == 7_842  # Keras: BN moving means and variances


def test_intermediate_shapes_of_an_18_s_clip():
  model = model_lib.FeatExNet()
  _, state = jax.eval_shape(
    lambda v: model.apply(v, jnp.zeros((1, 288_000)), train=False, capture_intermediates=True),
    variable_shapes(model, 288_000),
  )
  outputs = state["intermediates"]
  shape = lambda *path: functools.reduce(lambda node, key: node[key], path, outputs)["__call__"][0].shape
  assert shape("spectrum", "conv_0") == (1, 2250, 128)
  assert shape("spectrum", "conv_1") == (1, 71, 128)
  assert shape("spectrum", "conv_2") == (1, 18, 128)
  assert shape("spectrum", "dense_0") == (1, 128)
  assert shape("spectrogram", "frequency_bn") == (1, 561, 513)
  assert shape("spectrogram", "stem_conv") == (1, 281, 257, 16)
  assert shape("spectrogram", "stage_16", "block_1") == (1, 140, 128, 16)  # after the 3x3/2 max-pool
  assert shape("spectrogram", "stage_32") == (1, 70, 64, 32)
  assert shape("spectrogram", "stage_64") == (1, 35, 32, 64)
  assert shape("spectrogram", "stage_128") == (1, 18, 16, 128)
  assert shape("spectrogram", "flat_bn") == (1, 2048)
  assert shape("spectrum") == shape("spectrogram") == (1, 128)


def test_decay_mask_selects_exactly_the_kernels_the_reference_regularises():
  params = variable_shapes(model_lib.FeatExNet(), SHORT)["params"]
  mask = model_lib.decayed_kernels_mask(params)
  decayed = {"/".join(k.key for k in path[:-1]) for path, flag in jax.tree_util.tree_leaves_with_path(mask) if flag}
  # The reference puts kernel_regularizer=l2(1e-5) on every Conv1D, Conv2D and top-level
  # Dense (emb_fft, emb_mel included), none on the SE denses, the BatchNorms or the centres.
  order = convert_keras.reference_construction_order()
  regularised = {*order["conv1d"], *order["conv2d"], *order["dense"], *convert_keras.NAMED_LAYERS.values()}
  assert decayed == regularised and len(decayed) == 29
  se_kernels = [
    path for path, _ in jax.tree_util.tree_leaves_with_path(params) if path[-2].key in model_lib.SE_DENSE_NAMES
  ]
  assert len(se_kernels) == 22


def test_training_updates_batch_statistics_as_keras_does(variables, clips):
  model = model_lib.FeatExNet()
  spectrogram = 10 * np.random.default_rng(2).gamma(1.0, size=(2, 61, 513)).astype(np.float32)
  _, state = apply(model, variables, clips, spectrogram, True)
  new, old = state["batch_stats"], variables["batch_stats"]
  for path, leaf in jax.tree_util.tree_leaves_with_path(new):
    assert not np.allclose(leaf, functools.reduce(lambda n, k: n[k.key], path, old)), path
  # frequency BN: statistics per bin over clips and frames of the TMN'd spectrogram;
  # moving = 0.99 * moving + 0.01 * batch, batch variance biased (divide by n).
  normalised_input = spectrogram - spectrogram.mean(axis=1, keepdims=True)
  old_bn, new_bn = old["spectrogram"]["frequency_bn"], new["spectrogram"]["frequency_bn"]
  np.testing.assert_allclose(new_bn["var"], 0.99 * old_bn["var"] + 0.01 * normalised_input.var(axis=(0, 1)), rtol=1e-5)
  np.testing.assert_allclose(new_bn["mean"], 0.99 * old_bn["mean"], atol=1e-5)


@pytest.mark.parametrize("shape", [(7, 5), (7, 4, 5), (7, 3, 4, 5)])
@pytest.mark.parametrize("real", [[1, 1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]])
def test_masked_batch_norm_uses_the_statistics_of_the_real_rows(shape, real):
  """Batch statistics of the real rows only (NumPy, float64), the running averages move by
  them alone, and the real rows are normalised exactly as in a batch of just them."""
  rng = np.random.default_rng(len(shape))
  x = (rng.normal(size=shape) * rng.uniform(0.5, 3, shape[-1]) + rng.normal(size=shape[-1])).astype(np.float32)
  rows = np.asarray(real, bool)
  make = lambda mask: model_lib.RowMaskedBatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-3, rows=mask)
  variables = {
    "params": {
      "scale": rng.uniform(0.5, 1.5, shape[-1]).astype(np.float32),
      "bias": rng.normal(size=shape[-1]).astype(np.float32),
    },
    "batch_stats": {
      "mean": rng.normal(size=shape[-1]).astype(np.float32),
      "var": rng.uniform(0.5, 2, shape[-1]).astype(np.float32),
    },
  }
  y, state = make(jnp.asarray(rows)).apply(variables, x, mutable=["batch_stats"])
  real_x = x[rows].astype(np.float64).reshape(-1, shape[-1])
  mean, var = real_x.mean(axis=0), real_x.var(axis=0)
  np.testing.assert_allclose(
    state["batch_stats"]["mean"], 0.9 * variables["batch_stats"]["mean"] + 0.1 * mean, rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(state["batch_stats"]["var"], 0.9 * variables["batch_stats"]["var"] + 0.1 * var, rtol=1e-5)
  expected = (x[rows] - mean) / np.sqrt(var + 1e-3) * variables["params"]["scale"] + variables["params"]["bias"]
  np.testing.assert_allclose(y[rows], expected, rtol=1e-4, atol=1e-5)
  alone, alone_state = make(None).apply(variables, x[rows], mutable=["batch_stats"])
  np.testing.assert_allclose(y[rows], alone, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), state, alone_state)


@pytest.mark.parametrize("train", [True, False])
def test_masked_batch_norm_equals_flax_batch_norm_with_its_mask(train):
  """Outputs, running statistics and input/parameter gradients equal Flax's BatchNorm (two-pass
  variance) given the broadcast row mask, whose counting this module replaces."""
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(1.0, 2.0, (6, 9, 8, 5)).astype(np.float32))
  rows = jnp.asarray([True, True, False, True, True, False])
  ours = model_lib.RowMaskedBatchNorm(use_running_average=not train, momentum=0.9, rows=rows)
  flax_bn = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-3, use_fast_variance=False)
  variables = flax_bn.init(jax.random.key(0), x, mask=rows[:, None, None, None])
  variables = jax.tree.map(lambda v: v + rng.uniform(0.1, 0.5, v.shape).astype(np.float32), variables)

  def apply(module, v, inputs, **kwargs):
    y, state = module.apply(v, inputs, mutable=["batch_stats"], **kwargs)
    return jnp.sum(jnp.sin(y)), (y, state)

  kwargs = {"mask": rows[:, None, None, None]} if train else {}
  (_, (y, state)), grads = jax.value_and_grad(apply, argnums=(1, 2), has_aux=True)(ours, variables, x)
  (_, (y_flax, state_flax)), grads_flax = jax.value_and_grad(
    lambda v, inputs: apply(flax_bn, v, inputs, **kwargs), argnums=(0, 1), has_aux=True
  )(variables, x)
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6)
  close(y, y_flax)
  jax.tree.map(close, (state, grads), (state_flax, grads_flax))


def test_a_padded_batch_trains_the_network_as_its_real_clips(variables, clips):
  """The mask reaches every BatchNorm: a padding row of other audio changes neither the real
  clips' embeddings nor any running statistic."""
  model = model_lib.FeatExNet()
  padded = np.concatenate([clips, np.random.default_rng(5).normal(0, 1, (1, SHORT)).astype(np.float32)])
  masked = jax.jit(lambda v, x, m: model.apply(v, x, train=True, mask=m, mutable=["batch_stats", "intermediates"]))
  (e1, e2), state = masked(variables, padded, np.array([True, True, False]))
  (f1, f2), expected = apply(model, variables, clips, None, True)
  for padded_embedding, embedding in ((e1, f1), (e2, f2)):  # within 1e-4 of the largest value
    np.testing.assert_allclose(padded_embedding[:2], embedding, rtol=0, atol=1e-4 * np.abs(embedding).max())
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state["batch_stats"], expected["batch_stats"]
  )


def test_spectrogram_argument_replaces_the_stft_of_the_spectrogram_branch_only(variables, clips):
  model = model_lib.FeatExNet()
  default = apply(model, variables, clips, None, False)
  explicit = apply(model, variables, clips, model.magnitude_spectrogram(clips), False)
  np.testing.assert_allclose(default, explicit, rtol=1e-6, atol=1e-6)
  other = np.random.default_rng(3).gamma(1.0, size=(2, 61, 513)).astype(np.float32)
  e1, e2 = apply(model, variables, clips, other, False)
  np.testing.assert_array_equal(e1, default[0])
  assert not np.allclose(e2, default[1], atol=1e-3)


def test_temporal_mean_normalisation_removes_a_constant_per_frequency_bin(variables, clips):
  spectrogram = np.asarray(features.magnitude_spectrogram(clips))
  shifted = spectrogram + np.linspace(0, 5, 513, dtype=np.float32)
  for tmn in (True, False):
    model = model_lib.FeatExNet(temporal_mean_normalisation=tmn)
    _, e2 = apply(model, variables, clips, spectrogram, False)
    _, e2_shifted = apply(model, variables, clips, shifted, False)
    assert np.allclose(e2, e2_shifted, rtol=1e-4, atol=1e-4) == tmn


def test_bfloat16_computes_in_bfloat16_and_returns_float32(variables, clips):
  model = model_lib.FeatExNet(dtype=jnp.bfloat16)
  (e1, e2), state = apply(model, variables, clips, None, True)
  assert e1.dtype == e2.dtype == jnp.float32
  assert state["intermediates"]["spectrogram"]["flat"][0].dtype == jnp.bfloat16
  assert state["intermediates"]["spectrum"]["flatten"][0].dtype == jnp.bfloat16
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state["batch_stats"]))
  (f1, f2), _ = apply(model_lib.FeatExNet(), variables, clips, None, True)
  for low, full in ((e1, f1), (e2, f2)):
    assert np.all(np.isfinite(low))
    assert np.max(np.abs(low - full)) < 0.3 * np.max(np.abs(full))


def test_any_clip_length_runs(clips):
  model = model_lib.FeatExNet()
  n_samples = 45_000
  shapes = variable_shapes(model, n_samples)["params"]
  # spectrum: 22,500 bins -> 352 -> 11 -> 3 positions x 128; spectrogram: always 16 x 128
  assert shapes["spectrum"]["dense_0"]["kernel"].shape == (3 * 128, 128)
  assert shapes["spectrogram"]["embedding"]["kernel"].shape == (16 * 128, 128)
  variables = numpy_variables(model, n_samples)
  waveforms = np.random.default_rng(4).normal(0, 0.1, (3, n_samples)).astype(np.float32)
  embeddings = jax.jit(functools.partial(model_lib.embed, model))(variables, waveforms)
  assert embeddings.shape == (3, 256) and embeddings.dtype == jnp.float32
  assert np.all(np.isfinite(embeddings))


def test_create_model_reads_the_config():
  config = dcase2023.get_config().model
  config.temporal_mean_normalisation = False
  config.dtype = "bfloat16"
  model = model_lib.create_model(config)
  assert model.temporal_mean_normalisation is False
  assert model.dtype == jnp.bfloat16
  assert (model.embedding_dim, model.se_ratio, model.bn_epsilon, model.bn_momentum) == (128, 16, 1e-3, 0.99)
  assert (model.frame_length, model.hop_length, model.spectrum_bins) == (1024, 512, config.spectrum_bins)
