"""Convolutions and max-pools in forms that XLA:CPU runs fast, with the same results.

XLA:CPU (JAX 0.10) runs a few of the network's ops at a small fraction of its matmul rate
(BENCHMARKS.md, "Where the training time goes"): strided convolutions on few input channels
(the 7x7/2 stem on the 1-channel spectrogram: forward, input and weight gradients) and the
max-pool backward pass (a select-and-scatter, lowered on CPU to an arg-max reduce-window
and a scatter). This module holds drop-in replacements that compute the same functions:

- `conv_general_dilated`: a strided convolution becomes a stride-1 convolution of the
  stride phases of its input (space-to-depth), which XLA runs, and differentiates, with
  its fast stride-1 kernels; anything else goes to `lax.conv_general_dilated` unchanged.
- `max_pool`: the maximum of the window's slices, with a gradient that goes to the FIRST
  maximum of each window in row-major window order (XLA's select-and-scatter tie rule),
  computed with masks instead of a scatter.
- `compiler_options`: for the training step and the embedding program, XLA's own (Eigen)
  convolution kernels instead of YNNPACK's (weight gradients 2-4x faster, forward 1.2x).

Pure functions, for any backend; model.py selects them with `model.cpu_kernels`, on the CPU
only by default (nothing was measured elsewhere).
"""

import functools
import itertools

import jax
import jax.numpy as jnp
from jax import lax

SETTINGS = ("auto", "xla", "custom")
# XLA:CPU's default YNNPACK fusions in JAX 0.10.2 (dots, reductions, single convolutions;
# elementwise ops stay XLA's) minus the single convolutions, which then run on Eigen.
EIGEN_CONVOLUTIONS = {
  "xla_cpu_experimental_ynn_fusion_type": ",".join(
    f"LIBRARY_FUSION_TYPE_{kind}" for kind in ("DOT", "REDUCE", "INDIVIDUAL_DOT")
  )
}
# Strided convolutions on at most this many input channels are phase-split: the 1-channel
# stem gains (BENCHMARKS.md), while the 16-64 channel stride-2 3x3 convs ran 2-6x slower so.
PHASE_SPLIT_MAX_CHANNELS = 4


def wanted(setting):
  """Whether `model.cpu_kernels` asks for these ops: "custom" always, "xla" never, "auto" on
  the CPU backend only (they were measured there, not on GPU or TPU)."""
  if setting not in SETTINGS:
    raise ValueError(f"model.cpu_kernels={setting!r}: choose one of {', '.join(SETTINGS)}")
  return setting == "custom" or (setting == "auto" and jax.default_backend() == "cpu")


def compiler_options(setting):
  """XLA compile options for a program of the model under `model.cpu_kernels`: EIGEN_CONVOLUTIONS
  where the custom ops are wanted on the CPU backend and this XLA knows the option, else none.

  With them the training step ran 1.6x and the embedding program 1.2x faster on the Intel
  benchmark CPU (BENCHMARKS.md): YNNPACK's convolution weight gradients are 2-4x slower there.
  """
  if not wanted(setting) or jax.default_backend() != "cpu":
    return {}
  return dict(EIGEN_CONVOLUTIONS) if _xla_accepts(tuple(EIGEN_CONVOLUTIONS.items())) else {}


@functools.cache
def _xla_accepts(options):
  """Whether XLA compiles with these (experimental, version-dependent) options."""
  try:
    jax.jit(lambda x: x + 1).lower(jnp.zeros(())).compile(compiler_options=dict(options))
  except jax.errors.JaxRuntimeError:
    return False
  return True


def conv_general_dilated(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  precision=None,
  **kwargs,
):
  """`lax.conv_general_dilated` (the signature nn.Conv calls): strided 2-D NHWC convolutions on
  few input channels computed by `phase_split_conv`; every other case passed to lax unchanged."""
  strides = tuple(window_strides)
  plain = (
    len(strides) != 2
    or max(strides) == 1
    or feature_group_count != 1
    or kwargs
    or lhs.shape[-1] > PHASE_SPLIT_MAX_CHANNELS
    or any(d not in (None, 1) and tuple(d) != (1,) * len(strides) for d in (lhs_dilation, rhs_dilation))
    or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    != lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
  )
  if plain:
    return lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
      precision=precision,
      **kwargs,
    )
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
  return lax.conv_general_dilated(
    phases, kp, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision
  )


def max_pool(inputs, window_shape, strides=None, padding="VALID"):
  """`flax.linen.max_pool` over [N, H, W, C] (-inf padding for 'SAME'), first-max gradient."""
  window = tuple(window_shape)
  strides = tuple(strides or (1,) * len(window))
  spatial = inputs.shape[1:-1]
  pads = lax.padtype_to_pads(spatial, window, strides, padding) if isinstance(padding, str) else padding
  geometry = tuple(
    (size, lo, hi, (size + lo + hi - k) // s + 1) for size, (lo, hi), k, s in zip(spatial, pads, window, strides)
  )
  return _max_pool(inputs, window, strides, geometry)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, geometry):
  """`geometry`: per spatial axis (input size, pad before, pad after, output size). Without a
  gradient (inference): the maximum of the window's slices, 3x faster than a reduce-window."""
  return functools.reduce(jnp.maximum, _window_slices(x, window, strides, geometry))


def _window_slices(x, window, strides, geometry):
  """The -inf padded x[:, offset + stride * i, ...] of every window offset, row-major."""
  fill = jnp.array(-jnp.inf, x.dtype)
  xp = lax.pad(x, fill, [(0, 0, 0), *((lo, hi, 0) for _, lo, hi, _ in geometry), (0, 0, 0)])
  for offset in itertools.product(*(range(k) for k in window)):
    limit = (xp.shape[0], *(o + s * (out - 1) + 1 for o, s, (*_, out) in zip(offset, strides, geometry)), xp.shape[-1])
    yield lax.slice(xp, (0, *offset, 0), limit, (1, *strides, 1))


def _max_pool_forward(x, window, strides, geometry):
  """With a gradient (training): XLA's reduce-window, whose result XLA stores; a maximum of
  slices would be fused into the backward pass and recomputed there for every mask."""
  pads = [(0, 0), *((lo, hi) for _, lo, hi, _ in geometry), (0, 0)]
  y = lax.reduce_window(x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1), pads)
  return y, (x, y)


def _max_pool_backward(window, strides, geometry, residuals, g):
  """Each window's gradient to its first maximum (row-major), found by comparing the window's
  slices with the maximum. Built per stride phase of the (padded) input: window offset a along
  an axis of stride s lands on phase a % s, shifted by a // s, so each phase is a sum of
  shifted masked copies of g; the phases are then interleaved and the padding cropped. No
  scatter, and no strided index arithmetic per element."""
  x, y = residuals
  pieces = list(_window_slices(x, window, strides, geometry))
  first = jnp.full(y.shape, len(pieces), jnp.int8 if len(pieces) < 128 else jnp.int32)  # none: NaN windows
  for k in reversed(range(len(pieces))):
    first = jnp.where(pieces[k] == y, jnp.array(k, first.dtype), first)
  zero = jnp.zeros((), g.dtype)
  outs = [out for *_, out in geometry]
  lengths = [out + (k - 1) // s for out, k, s in zip(outs, window, strides)]  # per phase
  offsets = {offset: k for k, offset in enumerate(itertools.product(*(range(w) for w in window)))}

  def phase(p, q):
    total = jnp.zeros((g.shape[0], *lengths, g.shape[-1]), g.dtype)
    for (a, b), k in offsets.items():
      if a % strides[0] == p and b % strides[1] == q:
        shifts = [(d // s, length - out - d // s, 0) for d, s, length, out in zip((a, b), strides, lengths, outs)]
        total = total + lax.pad(jnp.where(first == k, g, zero), zero, [(0, 0, 0), *shifts, (0, 0, 0)])
    return total

  (sh, sw), (lh, lw) = strides, lengths
  rows = [jnp.stack([phase(p, q) for q in range(sw)], 3) for p in range(sh)]  # [N, lh, lw, sw, C] each
  dxp = jnp.stack(rows, 2).reshape(g.shape[0], lh * sh, lw * sw, g.shape[-1])  # [N, lh, sh, lw, sw, C]
  crop = [(-lo, lo + size - length * s, 0) for (size, lo, _, _), length, s in zip(geometry, lengths, strides)]
  return (lax.pad(dxp, zero, [(0, 0, 0), *crop, (0, 0, 0)]),)


_max_pool.defvjp(_max_pool_forward, _max_pool_backward)
