"""Convolutions and max-pools in forms that XLA:CPU runs fast, with the same results.

XLA:CPU (JAX 0.10) runs a few of the network's ops at a small fraction of its matmul rate
(BENCHMARKS.md, "Where the training time goes"): strided convolutions on few input channels
(the 7x7/2 stem on the 1-channel spectrogram: forward, input and weight gradients) and the
max-pool backward pass (a select-and-scatter, lowered on CPU to an arg-max reduce-window
and a scatter). This module holds drop-in replacements that compute the same functions:

- `conv_general_dilated`: a strided convolution becomes a stride-1 convolution of the
  stride phases of its input (space-to-depth), which XLA runs, and differentiates, with
  its fast stride-1 kernels; anything else goes to `lax.conv_general_dilated` unchanged.
- `max_pool`: the maximum of the window's strided slices, whose gradient goes to the
  FIRST maximum of each window in row-major window order (XLA's select-and-scatter tie
  rule), computed with masks instead of a scatter.

Pure functions, for any backend; model.py selects them with `model.cpu_kernels`, on the CPU
only by default (nothing was measured elsewhere).
"""
import functools
import itertools

import jax
import jax.numpy as jnp
from jax import lax

SETTINGS = ("auto", "xla", "custom")
# Strided convolutions on at most this many input channels are phase-split: the 1-channel
# stem gains (BENCHMARKS.md), while the 16-64 channel stride-2 3x3 convs ran 2-6x slower so.
PHASE_SPLIT_MAX_CHANNELS = 4


def wanted(setting):
  """Whether `model.cpu_kernels` asks for these ops: "custom" always, "xla" never, "auto" on
  the CPU backend only (they were measured there, not on GPU or TPU)."""
  if setting not in SETTINGS:
    raise ValueError(f"model.cpu_kernels={setting!r}: choose one of {', '.join(SETTINGS)}")
  return setting == "custom" or (setting == "auto" and jax.default_backend() == "cpu")


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
  """`lax.conv_general_dilated` (the signature nn.Conv calls): strided 2-D NHWC convolutions on
  few input channels computed by `phase_split_conv`; every other case passed to lax unchanged."""
  strides = tuple(window_strides)
  plain = (len(strides) != 2 or max(strides) == 1 or feature_group_count != 1 or kwargs
           or lhs.shape[-1] > PHASE_SPLIT_MAX_CHANNELS
           or any(d not in (None, 1) and tuple(d) != (1,) * len(strides) for d in (lhs_dilation, rhs_dilation))
           or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
           != lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC")))
  if plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, precision=precision, **kwargs)
  return phase_split_conv(lhs, rhs, strides, padding, precision)


def phase_split_conv(x, kernel, strides, padding, precision=None):
  """A strided convolution as a stride-1 'VALID' convolution of the input's stride phases.

  With stride s, output (i, j) reads x[s*i + a, s*j + b]; writing a = s*a' + p, b = s*b' + q,
  the input splits into s*s phases x[p::s, q::s] stacked as channels, and the kernel into a
  ceil(k/s) x ceil(k/s) kernel over them (zero where a or b >= k). Same arithmetic (up to
  the zero taps), but XLA's stride-1 kernels and their gradients instead of its strided ones.

  Args:
    x: [N, H, W, C] input.
    kernel: [kh, kw, C, O].
    strides: (sh, sw).
    padding: 'SAME', 'VALID' or ((top, bottom), (left, right)), as lax.
  Returns:
    [N, H', W', O], equal to lax.conv_general_dilated(x, kernel, strides, padding) (NHWC/HWIO).
  """
  n, h, w, c = x.shape
  window = kernel.shape[:2]
  if isinstance(padding, str):
    padding = lax.padtype_to_pads((h, w), window, strides, padding)
  out = [(size + lo + hi - k) // s + 1 for size, (lo, hi), k, s in zip((h, w), padding, window, strides)]
  taps = [-(-k // s) for k, s in zip(window, strides)]  # phase-kernel size per axis
  # Pad (or crop) each axis to exactly s * (out + taps - 1): what the phase kernel reads.
  sizes = [s * (o + t - 1) for s, o, t in zip(strides, out, taps)]
  pads = [(lo, size - length - lo, 0) for (lo, _), size, length in zip(padding, sizes, (h, w))]
  xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), *pads, (0, 0, 0)])
  (sh, sw), (ph, pw) = strides, [size // s for size, s in zip(sizes, strides)]
  phases = xp.reshape(n, ph, sh, pw, sw, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, ph, pw, sh * sw * c)
  kp = jnp.pad(kernel, [(0, t * s - k) for t, s, k in zip(taps, strides, window)] + [(0, 0), (0, 0)])
  kp = kp.reshape(taps[0], sh, taps[1], sw, c, -1).transpose(0, 2, 1, 3, 4, 5).reshape(*taps, sh * sw * c, -1)
  return lax.conv_general_dilated(phases, kp, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  precision=precision)


def max_pool(inputs, window_shape, strides=None, padding="VALID"):
  """`flax.linen.max_pool` over [N, H, W, C] (-inf padding for 'SAME'), first-max gradient."""
  strides = tuple(strides or (1,) * len(window_shape))
  if not isinstance(padding, str):
    padding = tuple(map(tuple, padding))
  return _max_pool(inputs, tuple(window_shape), strides, padding)


def _pool_geometry(shape, window, strides, padding):
  """Per spatial axis: (pad before, pad after, output size), lax's 'SAME' convention."""
  spatial = shape[1:-1]
  pads = lax.padtype_to_pads(spatial, window, strides, padding) if isinstance(padding, str) else padding
  return [(lo, hi, (size + lo + hi - k) // s + 1)
          for size, (lo, hi), k, s in zip(spatial, pads, window, strides)]


def _window_slices(xp, window, strides, outs):
  """(offset, xp[:, offset + stride * i, ...]) for every window offset, row-major."""
  for offset in itertools.product(*(range(k) for k in window)):
    start = (0, *offset, 0)
    limit = (xp.shape[0], *(o + s * (m - 1) + 1 for o, s, m in zip(offset, strides, outs)), xp.shape[-1])
    yield offset, lax.slice(xp, start, limit, (1, *strides, 1))


def _padded(x, geometry):
  fill = jnp.array(-jnp.inf, x.dtype)
  return lax.pad(x, fill, [(0, 0, 0), *((lo, hi, 0) for lo, hi, _ in geometry), (0, 0, 0)])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, padding):
  geometry = _pool_geometry(x.shape, window, strides, padding)
  slices = [s for _, s in _window_slices(_padded(x, geometry), window, strides, [o for *_, o in geometry])]
  return functools.reduce(jnp.maximum, slices)


def _max_pool_forward(x, window, strides, padding):
  y = _max_pool(x, window, strides, padding)
  return y, (x, y)


def _max_pool_backward(window, strides, padding, residuals, g):
  """Each window's gradient to its first maximum: masks over the window's slices, each
  scattered back by an interior-padded `lax.pad` (a strided placement, no scatter op)."""
  x, y = residuals
  geometry = _pool_geometry(x.shape, window, strides, padding)
  xp = _padded(x, geometry)
  outs = [o for *_, o in geometry]
  taken = jnp.zeros(y.shape, bool)
  zero = jnp.zeros((), g.dtype)
  dxp = jnp.zeros(xp.shape, g.dtype)
  for offset, piece in _window_slices(xp, window, strides, outs):
    first = (piece == y) & ~taken
    taken = taken | first
    placement = [(o, size - o - s * (m - 1) - 1, s - 1)
                 for o, size, s, m in zip(offset, xp.shape[1:-1], strides, outs)]
    dxp = dxp + lax.pad(jnp.where(first, g, zero), zero, [(0, 0, 0), *placement, (0, 0, 0)])
  crop = tuple(slice(lo, lo + size) for (lo, _, _), size in zip(geometry, x.shape[1:-1]))
  return (dxp[(slice(None), *crop, slice(None))],)


_max_pool.defvjp(_max_pool_forward, _max_pool_backward)
