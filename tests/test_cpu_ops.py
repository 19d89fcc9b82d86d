"""featex_jax.cpu_ops: the same functions and gradients as XLA's own ops, and a float64 check."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from test_model import numpy_variables

from featex_jax import cpu_ops
from featex_jax import model as model_lib

NHWC = ("NHWC", "HWIO", "NHWC")
RTOL = 1e-5  # of the largest magnitude, what float32 arithmetic allows


def plain_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=NHWC, precision=lax.Precision.HIGHEST)


def phase_conv(x, kernel, strides, padding):
  return cpu_ops.conv_general_dilated(
    x, kernel, strides, padding, dimension_numbers=NHWC, precision=lax.Precision.HIGHEST
  )


def assert_close(actual, expected, rtol=RTOL):
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape
  scale = np.max(np.abs(expected))
  np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


def value_and_grads(fn, x, kernel, cotangent):
  y, vjp = jax.vjp(fn, x, kernel)
  return (y, *vjp(cotangent))


def conv_float64(x, kernel, strides, padding, cotangent):
  """The plain convolution and its gradients in float64: the reference both float32 paths approximate."""
  with jax.enable_x64(True):
    args = [np.asarray(a, np.float64) for a in (x, kernel, cotangent)]
    return [np.asarray(v) for v in value_and_grads(lambda x, k: plain_conv(x, k, strides, padding), *args)]


CONV_CASES = [  # (input shape, kernel shape, strides, padding): odd and even sizes
  ((2, 37, 30, 1), (7, 7, 1, 16), (2, 2), "SAME"),  # the stem's shape, small
  ((2, 36, 31, 1), (7, 7, 1, 16), (2, 2), "SAME"),
  ((3, 20, 21, 2), (3, 5, 2, 4), (2, 3), "VALID"),
  ((1, 9, 10, 3), (3, 3, 3, 5), (2, 2), ((0, 1), (2, 0))),
  ((2, 8, 8, 1), (2, 2, 1, 3), (2, 2), "SAME"),  # kernel no larger than the stride
]


@pytest.mark.parametrize("x_shape, kernel_shape, strides, padding", CONV_CASES)
def test_phase_split_conv_and_its_gradients_equal_the_plain_conv(x_shape, kernel_shape, strides, padding):
  rng = np.random.default_rng(0)
  x = rng.normal(size=x_shape).astype(np.float32)
  kernel = rng.normal(size=kernel_shape).astype(np.float32)
  cotangent = rng.normal(size=jax.eval_shape(lambda: plain_conv(x, kernel, strides, padding)).shape).astype(np.float32)
  ours = value_and_grads(lambda x, k: phase_conv(x, k, strides, padding), x, kernel, cotangent)
  xla = value_and_grads(lambda x, k: plain_conv(x, k, strides, padding), x, kernel, cotangent)
  exact = conv_float64(x, kernel, strides, padding, cotangent)
  for a, b, c in zip(ours, xla, exact):
    assert_close(a, b)
    assert_close(a, c)


def test_only_strided_convs_on_few_channels_are_rewritten():
  """Everything else must be lax's own op, bit for bit (same program)."""
  rng = np.random.default_rng(1)
  cases = [
    ((2, 12, 12, 16), (3, 3, 16, 8), (2, 2)),  # too many input channels
    ((2, 12, 12, 1), (3, 3, 1, 8), (1, 1)),
  ]  # stride 1
  for x_shape, kernel_shape, strides in cases:
    x = rng.normal(size=x_shape).astype(np.float32)
    kernel = rng.normal(size=kernel_shape).astype(np.float32)
    assert "transpose" not in str(jax.make_jaxpr(lambda x, k, s=strides: phase_conv(x, k, s, "SAME"))(x, kernel))
    np.testing.assert_array_equal(phase_conv(x, kernel, strides, "SAME"), plain_conv(x, kernel, strides, "SAME"))
  stem = jax.make_jaxpr(lambda x, k: phase_conv(x, k, (2, 2), "SAME"))(
    np.zeros((1, 16, 16, 1), np.float32), np.zeros((7, 7, 1, 16), np.float32)
  )
  assert "window_strides=(1, 1)" in str(stem)


def first_max_pool_numpy(x, window, strides, padding, cotangent):
  """float64 max-pool and its gradient, each window's gradient to its first maximum (row-major)."""
  x = np.asarray(x, np.float64)
  (top, bottom), (left, right) = lax.padtype_to_pads(x.shape[1:3], window, strides, padding)
  padded = np.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)], constant_values=-np.inf)
  out_h = (padded.shape[1] - window[0]) // strides[0] + 1
  out_w = (padded.shape[2] - window[1]) // strides[1] + 1
  y = np.empty((x.shape[0], out_h, out_w, x.shape[3]))
  grad = np.zeros(padded.shape)
  for n in range(x.shape[0]):
    for i in range(out_h):
      for j in range(out_w):
        for c in range(x.shape[3]):
          patch = padded[n, i * strides[0] : i * strides[0] + window[0], j * strides[1] : j * strides[1] + window[1], c]
          a, b = np.unravel_index(np.argmax(patch), patch.shape)  # argmax: the first maximum
          y[n, i, j, c] = patch[a, b]
          grad[n, i * strides[0] + a, j * strides[1] + b, c] += cotangent[n, i, j, c]
  return y, grad[:, top : top + x.shape[1], left : left + x.shape[2]]


POOL_CASES = [
  ((2, 13, 12, 3), (3, 3), (2, 2), "VALID"),  # the stem's pool
  ((2, 14, 11, 3), (3, 3), (2, 2), "VALID"),
  ((2, 13, 12, 3), (2, 2), (2, 2), "SAME"),  # the stride-2 shortcuts' pool
  ((1, 10, 9, 2), (3, 2), (1, 2), "SAME"),
]


@pytest.mark.parametrize("x_shape, window, strides, padding", POOL_CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_and_its_gradient_equal_xlas_with_the_first_maximum_taking_ties(
  x_shape, window, strides, padding, ties
):
  rng = np.random.default_rng(2)
  x = rng.normal(size=x_shape).astype(np.float32)
  if ties:  # few distinct values: most windows hold their maximum several times
    x = np.round(x).astype(np.float32)
  y, vjp = jax.vjp(lambda x: cpu_ops.max_pool(x, window, strides, padding), x)
  cotangent = rng.normal(size=y.shape).astype(np.float32)
  xla_y, xla_vjp = jax.vjp(lambda x: nn.max_pool(x, window, strides, padding), x)
  np.testing.assert_array_equal(y, xla_y)
  np.testing.assert_array_equal(cpu_ops.max_pool(x, window, strides, padding), xla_y)  # no gradient: other code
  assert_close(vjp(cotangent)[0], xla_vjp(cotangent)[0], rtol=1e-6)  # only the summation order differs
  exact_y, exact_grad = first_max_pool_numpy(x, window, strides, padding, cotangent)
  np.testing.assert_array_equal(y, exact_y)
  assert_close(vjp(cotangent)[0], exact_grad, rtol=1e-6)


def test_setting_chooses_the_ops():
  assert cpu_ops.wanted("custom") and not cpu_ops.wanted("xla")
  assert cpu_ops.wanted("auto") == (jax.default_backend() == "cpu")
  with pytest.raises(ValueError, match="model.cpu_kernels='fast'"):
    cpu_ops.wanted("fast")


def test_training_compiler_options_keep_convolutions_off_ynnpack_and_the_results():
  assert cpu_ops.compiler_options("xla") == {}
  options = cpu_ops.compiler_options("custom")
  assert options == cpu_ops.EIGEN_CONVOLUTIONS  # the CPU backend, and this XLA knows the option
  rng = np.random.default_rng(4)
  x, g = (rng.normal(size=(2, 9, 8, 32)).astype(np.float32) for _ in range(2))
  kernel = rng.normal(size=(3, 3, 32, 32)).astype(np.float32)
  weight_grad = lambda x, k, g: jax.vjp(lambda k: plain_conv(x, k, (1, 1), "SAME"), k)[1](g)[0]
  compiled = jax.jit(weight_grad, compiler_options=options).lower(x, kernel, g).compile()
  assert "__ynn_fusion" not in compiled.as_text()
  assert_close(compiled(x, kernel, g), jax.jit(weight_grad)(x, kernel, g))
  # elementwise ops stay XLA's, as by default (YNNPACK ran the pool's strided maximum 8x slower)
  pool = jax.jit(lambda x: cpu_ops.max_pool(x, (3, 3), (2, 2), "VALID"), compiler_options=options)
  assert "__ynn_fusion" not in pool.lower(x).compile().as_text()


def test_whole_model_loss_gradient_is_the_same_with_either_ops():
  """Training mode (batch statistics), gradients of a loss of both embeddings w.r.t. every
  parameter and the input spectrogram; compared with the plain ops run in float64 (the
  features themselves are float32 either way)."""
  n_samples = 16_000
  variables = numpy_variables(model_lib.FeatExNet(cpu_kernels="xla"), n_samples)
  rng = np.random.default_rng(3)
  waveforms = rng.normal(0, 0.1, (3, n_samples)).astype(np.float32)
  weights = rng.normal(size=(3, 256)).astype(np.float32)

  def loss_grads(kernels, dtype, variables, waveforms, weights):
    model = model_lib.FeatExNet(cpu_kernels=kernels, dtype=dtype)
    spectrogram = model.magnitude_spectrogram(waveforms).astype(dtype)

    def loss(params, spectrogram):
      (e1, e2), _ = model.apply(
        {"params": params, "batch_stats": variables["batch_stats"]},
        waveforms,
        spectrogram,
        train=True,
        mutable=["batch_stats"],
      )
      return jnp.sum(jnp.concatenate([e1, e2], -1) * weights)

    return jax.grad(loss, argnums=(0, 1))(variables["params"], spectrogram)

  with jax.default_matmul_precision("float32"):
    custom = jax.jit(loss_grads, static_argnums=(0, 1))("custom", jnp.float32, variables, waveforms, weights)
    xla = jax.jit(loss_grads, static_argnums=(0, 1))("xla", jnp.float32, variables, waveforms, weights)
  with jax.enable_x64(True):
    exact = jax.jit(loss_grads, static_argnums=(0, 1))(
      "xla",
      jnp.float64,
      jax.tree.map(lambda v: np.asarray(v, np.float64), variables),
      waveforms,
      weights.astype(np.float64),
    )
    exact = jax.tree.map(np.asarray, exact)  # NumPy float64: outside x64 JAX would truncate it
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(exact)]
  assert any("stem_conv" in p for p in paths)
  for path, a, b, c in zip(paths, jax.tree.leaves(custom), jax.tree.leaves(xla), jax.tree.leaves(exact)):
    assert c.dtype == np.float64
    scale = np.max(np.abs(c)) or 1.0  # a dead unit's gradient is exactly zero
    custom_error = np.max(np.abs(np.asarray(a, np.float64) - c)) / scale
    xla_error = np.max(np.abs(np.asarray(b, np.float64) - c)) / scale
    assert custom_error < max(2 * xla_error, 1e-5), (path, custom_error, xla_error)
