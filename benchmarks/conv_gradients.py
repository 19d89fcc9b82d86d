"""Where XLA:CPU loses time in the training step: the spectrogram branch's heaviest ops, alone.

Times the forward pass, the input gradient and the weight gradient of the stem (7x7 stride-2
conv on the 1-channel 561 x 513 spectrogram), of 3x3 convs of stage 16 (16 -> 16 channels on
140 x 128) and stage 64 (64 -> 64 on 35 x 32), and the forward and input gradient of the
stem's 3x3 stride-2 max-pool and of a shortcut's 2x2 'same' max-pool, at the training batch,
each as its own jit'd program, in two implementations:

  xla     lax.conv_general_dilated / nn.max_pool, XLA's default compile options (before)
  custom  featex_jax.cpu_ops' conv and max-pool, compiled with cpu_ops.compiler_options as
          the training step is (model.cpu_kernels = auto/custom on the CPU; after)

and prints GFLOP/s against a large matmul's.

  python benchmarks/conv_gradients.py
  python benchmarks/conv_gradients.py --batch 16 --impl xla
"""

import statistics
import sys

import harness

from featex_jax import host_memory


def parse_args(argv):
  p = harness.parser(__doc__)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--steps", type=int, default=3, help="timed calls (median reported)")
  p.add_argument("--impl", nargs="+", default=["xla", "custom"], choices=["xla", "custom"])
  return p.parse_args(argv)


def conv_cases(batch):
  """(name, input shape NHWC, kernel HWIO, stride) of the convs that dominate the step."""
  return [
    ("stem 7x7/2, 1->16", (batch, 561, 513, 1), (7, 7, 1, 16), 2),
    ("stage16 3x3, 16->16", (batch, 140, 128, 16), (3, 3, 16, 16), 1),
    ("stage64 3x3, 64->64", (batch, 35, 32, 64), (3, 3, 64, 64), 1),
  ]


def pool_cases(batch):
  """(name, input shape, window, padding) of the max-pools: stem, stride-2 shortcut."""
  return [
    ("max-pool 3x3/2 valid", (batch, 281, 257, 16), 3, "VALID"),
    ("max-pool 2x2/2 same", (batch, 140, 128, 16), 2, "SAME"),
  ]


def main(argv=None):
  args = parse_args(argv)
  other_load = harness.OtherLoad()
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from featex_jax import cpu_ops

  info = harness.machine()
  dtype = jnp.dtype(args.dtype)
  median = lambda fn: statistics.median(harness.timed(lambda: jax.block_until_ready(fn()), args.steps, 1))
  rows = []
  for impl in args.impl:
    options = cpu_ops.compiler_options("custom") if impl == "custom" else {}
    conv_op = cpu_ops.conv_general_dilated if impl == "custom" else jax.lax.conv_general_dilated
    pool_op = cpu_ops.max_pool if impl == "custom" else nn.max_pool
    jit = lambda fn: jax.jit(fn, compiler_options=options)
    for name, x_shape, w_shape, stride in conv_cases(args.batch):
      kx, kw = jax.random.split(jax.random.key(0))
      x = jax.random.normal(kx, x_shape, jnp.float32).astype(dtype)
      w = jax.random.normal(kw, w_shape, jnp.float32).astype(dtype)
      conv = lambda x, w: conv_op(x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
      y = jax.eval_shape(conv, x, w)
      g = jnp.ones(y.shape, dtype)
      flops = 2 * y.size * w_shape[0] * w_shape[1] * w_shape[2]
      forward = jit(conv)
      input_grad = jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
      weight_grad = jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
      for part, fn in (
        ("forward", lambda: forward(x, w)),
        ("input grad", lambda: input_grad(x, w, g)),
        ("weight grad", lambda: weight_grad(x, w, g)),
      ):
        seconds = median(fn)
        rows.append(
          {
            "op": name,
            "part": part,
            "impl": impl,
            "ms": round(1e3 * seconds, 1),
            "gflops": round(flops / seconds / 1e9, 1),
          }
        )
    for name, x_shape, window, padding in pool_cases(args.batch):
      x = jax.random.normal(jax.random.key(1), x_shape, jnp.float32).astype(dtype)
      pool = lambda x: pool_op(x, (window, window), strides=(2, 2), padding=padding)
      g = jnp.ones(jax.eval_shape(pool, x).shape, dtype)
      pool_forward = jit(pool)
      pool_grad = jit(lambda x, g: jax.vjp(pool, x)[1](g)[0])
      rows.append({"op": name, "part": "forward", "impl": impl, "ms": round(1e3 * median(lambda: pool_forward(x)), 1)})
      rows.append(
        {"op": name, "part": "input grad", "impl": impl, "ms": round(1e3 * median(lambda: pool_grad(x, g)), 1)}
      )
  matmul = harness.matmul_gflops(dtype)
  for row in rows:
    if row.get("gflops"):
      row["of_matmul"] = round(row["gflops"] / matmul, 3)
  print(
    f"{info['cpu']} ({info['cpu_cores']} cores), jax {info['jax']}, batch {args.batch}, {args.dtype}, "
    f"2048^2 matmul {matmul:.1f} GFLOP/s"
  )
  rows.sort(key=lambda row: (row["op"], row["part"]))  # the implementations of an op side by side
  harness.print_table(rows, ["op", "part", "impl", "ms", "gflops", "of_matmul"])
  other = other_load.cores()
  print(f"other processes kept {other} cores busy meanwhile")
  harness.append_record(
    args.json,
    {
      "benchmark": "conv_gradients",
      "command": " ".join(sys.argv),
      **info,
      "note": args.note,
      "other_cores_busy": other,
      "batch": args.batch,
      "dtype": args.dtype,
      "matmul_gflops": round(matmul, 1),
      "rows": rows,
    },
  )


if __name__ == "__main__":
  host_memory.run_with_allocator(main)  # as the command lines run: featex_jax/host_memory.py
