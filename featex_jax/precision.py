"""The precision of the float32 model's matmuls and convolutions, one setting on every backend.

Left alone, JAX lets the backend choose: TPUs compute float32 dots and convolutions in one
bfloat16 pass, NVIDIA GPUs from Ampere on may use TensorFloat-32 (10-bit mantissa), CPUs
compute float32. The reference's numbers (tests/test_keras_parity.py) are float32, so the
default here asks for float32 everywhere; the cheaper modes are settings (`model.matmul_precision`):

  "float32"        float32 on CPU and GPU (no TF32); on TPU six bfloat16 passes (float32-equivalent)
  "tensorfloat32"  TF32 on Ampere+ GPUs; three bfloat16 passes on TPU; float32 on CPU
  "bfloat16"       one bfloat16 pass on TPU; on GPU the backend's default (TF32 on Ampere+); float32 on CPU
  "default"        whatever JAX would do (the backend's default, or JAX_DEFAULT_MATMUL_PRECISION)

`model.dtype = "bfloat16"` (the network's activations in bfloat16) is a separate, explicit choice.
"""

import functools

import jax

from featex_jax.errors import ConfigError

MATMUL_PRECISIONS = ("float32", "tensorfloat32", "bfloat16", "default")


def with_matmul_precision(fn, precision):
  """`fn` traced with every float32 dot and convolution at `precision` (one of MATMUL_PRECISIONS).

  The precision is fixed when jit traces `fn`, so the compiled program carries it whatever
  the caller's context.
  """
  if precision not in MATMUL_PRECISIONS:
    raise ConfigError(f"model.matmul_precision must be one of {MATMUL_PRECISIONS}, got {precision!r}")
  if precision == "default":
    return fn

  @functools.wraps(fn)
  def at_precision(*args, **kwargs):
    with jax.default_matmul_precision(precision):
      return fn(*args, **kwargs)

  return at_precision
