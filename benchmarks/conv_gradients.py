"""Where XLA:CPU loses time in the training step: the spectrogram branch's heaviest ops, alone.

Times the forward pass, the input gradient and the weight gradient of the stem (7x7 stride-2
conv on the 1-channel 561 x 513 spectrogram), of a stage-16 3x3 conv (16 -> 16 channels on
140 x 128) and the stem's 3x3 stride-2 max-pool, at the training batch, each as its own
jit'd program, and prints GFLOP/s against a large matmul's. docs/method.md (Speed) reports weight gradients
3-6x slower than the matching forward convs on an Intel machine; this measures it here.

  python benchmarks/conv_gradients.py
  python benchmarks/conv_gradients.py --batch 16 --dtype bfloat16
"""
import statistics
import sys

import harness


def parse_args(argv):
  p = harness.parser(__doc__)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--steps", type=int, default=3, help="timed calls (median reported)")
  return p.parse_args(argv)


def conv_cases(batch):
  """(name, input shape NHWC, kernel HWIO, stride) of the convs that dominate the step."""
  return [("stem 7x7/2, 1->16", (batch, 561, 513, 1), (7, 7, 1, 16), 2),
          ("stage16 3x3, 16->16", (batch, 140, 128, 16), (3, 3, 16, 16), 1)]


def main(argv=None):
  args = parse_args(argv)
  other_load = harness.OtherLoad()
  import jax
  import jax.numpy as jnp
  info = harness.machine()
  dtype = jnp.dtype(args.dtype)
  median = lambda fn: statistics.median(harness.timed(lambda: jax.block_until_ready(fn()), args.steps, 1))
  rows = []
  for name, x_shape, w_shape, stride in conv_cases(args.batch):
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, x_shape, jnp.float32).astype(dtype)
    w = jax.random.normal(kw, w_shape, jnp.float32).astype(dtype)
    conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y, vjp = jax.vjp(conv, x, w)
    flops = 2 * y.size * w_shape[0] * w_shape[1] * w_shape[2]
    forward = jax.jit(conv)
    input_grad = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
    weight_grad = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
    for part, fn in (("forward", lambda: forward(x, w)), ("input grad", lambda: input_grad(x, w, y)),
                     ("weight grad", lambda: weight_grad(x, w, y))):
      seconds = median(fn)
      rows.append({"op": name, "part": part, "ms": round(1e3 * seconds, 1), "gflops": round(flops / seconds / 1e9, 1)})
  x = jax.random.normal(jax.random.key(1), (args.batch, 281, 257, 16), jnp.float32).astype(dtype)
  pool = lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")
  y = pool(x)
  pool_grad = jax.jit(lambda x, g: jax.vjp(pool, x)[1](g)[0])
  rows.append({"op": "max-pool 3x3/2", "part": "forward", "ms": round(1e3 * median(lambda: jax.jit(pool)(x)), 1)})
  rows.append({"op": "max-pool 3x3/2", "part": "input grad", "ms": round(1e3 * median(lambda: pool_grad(x, y)), 1)})
  matmul = harness.matmul_gflops(dtype)
  for row in rows:
    if row.get("gflops"):
      row["of_matmul"] = round(row["gflops"] / matmul, 3)
  print(f"{info['cpu']} ({info['cpu_cores']} cores), jax {info['jax']}, batch {args.batch}, {args.dtype}, "
        f"2048^2 matmul {matmul:.1f} GFLOP/s")
  harness.print_table(rows, ["op", "part", "ms", "gflops", "of_matmul"])
  other = other_load.cores()
  print(f"other processes kept {other} cores busy meanwhile")
  harness.append_record(args.json, {"benchmark": "conv_gradients", "command": " ".join(sys.argv), **info,
                                    "note": args.note, "other_cores_busy": other, "batch": args.batch,
                                    "dtype": args.dtype, "matmul_gflops": round(matmul, 1), "rows": rows})


if __name__ == "__main__":
  main()
